package e2e

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/test/istio"
)

var _ = Describe("Environments across services", func() {
	It("serves each call inside the mesh by the calling pod's environment and branch, as Istio builds that pod's sidecar", func() {
		ns := newNamespace()
		release := func(svc, env, branch string, hosts ...any) spec {
			s := spec{"app": svc, "environment": env, "image": svc + ":" + env + branch}
			if branch != "" {
				s["branch"] = branch
			}
			if len(hosts) > 0 {
				s["hosts"] = hosts
			}
			return s
		}
		By("a three-service app, frontend → orders → payments, in production, staging and a staging branch")
		releases := map[string]spec{
			"frontend-v1": release("frontend", "production", "", "shop.example.com"),
			"frontend-s1": release("frontend", "staging", "", "staging.shop.example.com"),
			"frontend-x":  release("frontend", "staging", "feature-x"),
			"orders-v1":   release("orders", "production", ""),
			"orders-s1":   release("orders", "staging", ""),
			"payments-v1": release("payments", "production", ""),
			"payments-s1": release("payments", "staging", ""),
			"payments-x":  release("payments", "staging", "feature-x"),
		}
		for name, s := range releases {
			mustApply(ns, name, s)
		}
		for name := range releases {
			Eventually(state(ns, name)).Should(Equal("Live 100 True/Routed"), name)
		}

		By("the pods the operator runs, with the labels they carry")
		pods := &corev1.PodList{}
		Expect(k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
		labelsOf := map[string]map[string]string{}
		for _, p := range pods.Items {
			labelsOf[p.Labels[routing.VersionLabel]] = p.Labels
		}
		var callers []istio.Caller
		for name := range releases {
			Expect(labelsOf).To(HaveKey(name), "a pod of %s", name)
			callers = append(callers, istio.Caller{Labels: labelsOf[name]})
		}

		judge := func(svc string) *istio.Judge {
			vs, dr := &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: svc}, vs)).To(Succeed())
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: svc}, dr)).To(Succeed())
			Expect(istio.Validate(ns, svc, &vs.Spec, &dr.Spec)).To(Succeed())
			j, err := istio.NewJudge(ns, svc, &vs.Spec, &dr.Spec, callers...)
			Expect(err).NotTo(HaveOccurred())
			return j
		}
		orders, payments := judge("orders"), judge("payments")
		feature := map[string]string{"x-branch": "feature-x"}
		baggage := map[string]string{"baggage": "x-branch=feature-x"}
		for _, tc := range []struct {
			callee  *istio.Judge
			name    string
			from    string // release whose pod calls; "" an unlabelled pod
			headers map[string]string
			want    string
		}{
			{orders, "orders", "frontend-v1", nil, "orders-v1"},
			{orders, "orders", "frontend-s1", nil, "orders-s1"},
			{orders, "orders", "frontend-x", nil, "orders-s1"}, // orders has no feature-x: staging's
			{orders, "orders", "frontend-x", feature, "orders-s1"},
			{orders, "orders", "", nil, "orders-v1"},
			{payments, "payments", "frontend-x", nil, "payments-x"},
			{payments, "payments", "orders-s1", nil, "payments-s1"},
			{payments, "payments", "orders-s1", feature, "payments-x"},
			{payments, "payments", "orders-s1", baggage, "payments-x"},
			{payments, "payments", "orders-v1", feature, "payments-v1"}, // a header never moves production to staging
			{payments, "payments", "", feature, "payments-v1"},
		} {
			c := istio.Caller{Labels: labelsOf[tc.from]}
			got, err := tc.callee.ServeFrom(c, tc.name, tc.headers)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(map[string]int32{tc.want: 100}), "a pod of %q calls %s with %v", tc.from, tc.name, tc.headers)
		}

		By("kubectl switchyard explains a call from a release's pod, and routes shows whom each mesh rule is for")
		out, code := plugin("explain", "payments", "-n", ns, "--from-release", "orders-s1", "-H", "x-branch: feature-x")
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("from a pod labelled switchyard.dev/environment=staging"))
		Expect(out).To(ContainSubstring("Served by rule mesh-branch-staging.feature-x"))
		Expect(out).To(MatchRegexp(`100%\s+payments-x`))
		out, code = plugin("explain", "payments", "-n", ns, "--from-labels", "switchyard.dev/environment=production", "-H", "x-branch: feature-x")
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("Served by rule mesh-production"))
		out, code = plugin("routes", "payments", "-n", ns)
		Expect(code).To(Equal(0), out)
		Expect(out).To(MatchRegexp(`mesh\s+\(the app's Service\)\s+staging/feature-x\s+-\s+payments-x\s+Live\s+100%`))
		Expect(out).To(MatchRegexp(`\s+staging\s+-\s+payments-s1\s+Live\s+100%`))

		By("a namespace labelled staging makes its pods staging's callers; unlabelled, production's again")
		jobs := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns + "-jobs", Labels: map[string]string{routing.EnvironmentLabel: "staging"}}}
		Expect(k8s.Create(ctx, jobs)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, jobs))).To(Succeed()) })
		job := istio.Caller{Namespace: jobs.Name}
		servedToJob := func(g Gomega) map[string]int32 {
			vs, dr := &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders"}, vs)).To(Succeed())
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders"}, dr)).To(Succeed())
			j, err := istio.NewJudge(ns, "orders", &vs.Spec, &dr.Spec, job)
			g.Expect(err).NotTo(HaveOccurred())
			got, err := j.ServeFrom(job, "orders."+ns, nil)
			g.Expect(err).NotTo(HaveOccurred())
			return got
		}
		Eventually(servedToJob).Should(Equal(map[string]int32{"orders-s1": 100}))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(jobs), jobs)).To(Succeed())
		delete(jobs.Labels, routing.EnvironmentLabel)
		Expect(k8s.Update(ctx, jobs)).To(Succeed())
		Eventually(servedToJob).Should(Equal(map[string]int32{"orders-v1": 100}))
	})
})
