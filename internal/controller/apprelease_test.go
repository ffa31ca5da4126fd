package controller_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/controller"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

var _ = Describe("AppRelease", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("runs a release's Deployment and routes it only once the Deployment is Available", func() {
		rel := newRelease(ns, "shop-v1")

		By("adding the drain finalizer and a Deployment that runs the release")
		Eventually(getRelease(ns, "shop-v1")).Should(HaveField("Finalizers", ContainElement(controller.Finalizer)))
		d := &appsv1.Deployment{}
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-v1"}, d) }).Should(Succeed())
		Expect(d.Labels).To(HaveKeyWithValue(controller.LabelRelease, "shop-v1"))
		Expect(d.Annotations).To(HaveKeyWithValue("switchyard.dev/release-uid", string(getRelease(ns, "shop-v1")(Default).UID)))
		Expect(d.Finalizers).To(ContainElement(controller.Finalizer), "its pods go only once their routes have drained")
		Expect(d.OwnerReferences).To(BeEmpty(), "no owner reference: a foreground delete of the release must not cascade to the pods")
		Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("app", "shop"))
		Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("version", "shop-v1"))
		Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal(rel.Spec.Image))
		Expect(d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort).To(BeEquivalentTo(8080))

		By("keeping traffic away while the Deployment is not Available")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Progressing 0 False/Progressing"))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, &networkingv1.VirtualService{})).
			To(MatchError(ContainSubstring("not found")))
		Eventually(subsetsOf(ns)).Should(Equal([]string{"shop-v1"}), "the subset is defined before any route names it")

		By("routing it once Available")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		Expect(routesOf(ns)(Default)).To(Equal([]string{"mesh-production: shop-v1 100", "env-production: shop-v1 100"}))

		By("owning the shared objects through non-controller references to its releases")
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, svc)).To(Succeed())
		Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(80))
		Expect(svc.OwnerReferences).To(HaveLen(1))
		Expect(svc.OwnerReferences[0].Controller).To(BeNil())
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs)).To(Succeed())
		Expect(vs.OwnerReferences).To(ConsistOf(HaveField("UID", rel.UID)))
		Expect(vs.Spec.Gateways).To(Equal([]string{"istio-system/ingressgateway", "mesh"}))
	})

	It("runs the release's template, which the operator reads from the API server (its cache holds none)", func() {
		withMode := func(mode string) relOpt {
			return func(r *v1alpha1.AppRelease) {
				r.Spec.Template = &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app",
					Env: []corev1.EnvVar{{Name: "MODE", Value: mode}}}}}}
			}
		}
		newRelease(ns, "shop-v1", withMode("a"))
		env := func(g Gomega) []corev1.EnvVar {
			d := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-v1"}, d)).To(Succeed())
			return d.Spec.Template.Spec.Containers[0].Env
		}
		Eventually(env).Should(ConsistOf(corev1.EnvVar{Name: "MODE", Value: "a"}))

		By("a change of the template alone reaches the Deployment")
		Eventually(func(g Gomega) {
			r := getRelease(ns, "shop-v1")(g)
			withMode("b")(r)
			g.Expect(k8s.Update(ctx, r)).To(Succeed())
		}).Should(Succeed())
		Eventually(env).Should(ConsistOf(corev1.EnvVar{Name: "MODE", Value: "b"}))
		r := &v1alpha1.AppRelease{}
		Expect(cached.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-v1"}, r)).To(Succeed())
		Expect(r.Spec.Template).To(BeNil(), "the operator's cache holds no template")
	})

	It("splits traffic with a canary, promotes it, and rolls back by deleting the stable", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))

		By("a canary at 10%")
		newRelease(ns, "shop-v2", withCanary(10))
		makeAvailable(ns, "shop-v2")
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v1 90, shop-v2 10"))
		Eventually(phaseOf(ns, "shop-v2")).Should(Equal("Live 10 True/Routed"))

		By("setting the canary's weight to 0 gives its share back")
		setCanary(ns, "shop-v2", 0)
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v1 100"))

		By("promoting the canary at 100: the previous stable stands by")
		setCanary(ns, "shop-v2", 100)
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v2 100"))
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Standby 0 True/Standby"))
		Expect(subsetsOf(ns)(Default)).To(Equal([]string{"shop-v1", "shop-v2"}))
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs)).To(Succeed())
		Expect(vs.OwnerReferences).To(ConsistOf(HaveField("Name", "shop-v1"), HaveField("Name", "shop-v2")),
			"the Standby stays an owner: a foreground deletion of the stable must not take the VirtualService")

		By("deleting the stable hands the environment back to the Standby")
		Expect(k8s.Delete(ctx, getRelease(ns, "shop-v2")(Default))).To(Succeed())
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v1 100"))
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v2"}})).Should(BeTrue())
		Expect(subsetsOf(ns)(Default)).To(Equal([]string{"shop-v1"}), "the deleted release's subset left before it went")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
	})

	It("supersedes stables beyond keep-previous, removes their route and Deployment, and prunes them", func() {
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("shop-v%d", i)
			newRelease(ns, name)
			makeAvailable(ns, name)
			Eventually(phaseOf(ns, name)).Should(Equal("Live 100 True/Routed"))
		}
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v1"}})).Should(BeTrue())
		Eventually(phaseOf(ns, "shop-v2")).Should(Equal("Standby 0 True/Standby"))
		Eventually(subsetsOf(ns)).Should(Equal([]string{"shop-v2", "shop-v3"}))
	})

	It("routes feature branches by header ahead of host routes, and a rebuild takes over once Available", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		newRelease(ns, "shop-staging-1", withEnv("staging", "staging.shop.example.com"))
		makeAvailable(ns, "shop-staging-1")
		newRelease(ns, "shop-jp12-a", withEnv("staging", "staging.shop.example.com"), withBranch("feature-jp12"))
		makeAvailable(ns, "shop-jp12-a")
		Eventually(routesOf(ns)).Should(Equal([]string{
			"mesh-branch-staging.feature-jp12: shop-jp12-a 100",
			"mesh-staging: shop-staging-1 100",
			"mesh-production: shop-v1 100",
			"env-production: shop-v1 100",
			"branch-staging.feature-jp12: shop-jp12-a 100",
			"env-staging: shop-staging-1 100",
		}))
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs)).To(Succeed())
		branchRule := vs.Spec.Http[4]
		Expect(branchRule.Match).To(HaveLen(2)) // by header, by baggage
		Expect(branchRule.Match[0].Headers).To(HaveKey("x-branch"))
		Expect(branchRule.Match[1].Headers).To(HaveKey("baggage"))
		Expect(routing.AuthorityHosts(branchRule.Match[0].Authority)).To(Equal([]string{nsHost(ns, "staging.shop.example.com")}))

		By("its pods are callers of staging's feature-jp12, its stable's of staging")
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-jp12-a"}, d)).To(Succeed())
		Expect(d.Spec.Template.Labels).To(And(HaveKeyWithValue(routing.EnvironmentLabel, "staging"),
			HaveKeyWithValue(routing.BranchLabel, "feature-jp12")))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-staging-1"}, d)).To(Succeed())
		Expect(d.Spec.Template.Labels).To(And(HaveKeyWithValue(routing.EnvironmentLabel, "staging"), Not(HaveKey(routing.BranchLabel))))

		By("a rebuild of the branch stays off the route until Available")
		Eventually(phaseOf(ns, "shop-jp12-a")).Should(Equal("Live 100 True/Routed"))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs)).To(Succeed())
		newRelease(ns, "shop-jp12-b", withEnv("staging", "staging.shop.example.com"), withBranch("feature-jp12"))
		Eventually(phaseOf(ns, "shop-jp12-b")).Should(Equal("Progressing 0 False/Progressing"))
		Eventually(subsetsOf(ns)).Should(ContainElement("shop-jp12-b"))
		Expect(routesOf(ns)(Default)).To(ContainElement("branch-staging.feature-jp12: shop-jp12-a 100"))
		unchanged := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, unchanged)).To(Succeed())
		Expect(unchanged.ResourceVersion).To(Equal(vs.ResourceVersion),
			"a release coming up defines its subset; the VirtualService is written once, when it is routed")
		Expect(unchanged.OwnerReferences).NotTo(ContainElement(HaveField("Name", "shop-jp12-b")))

		By("then takes over, and the old build is superseded and pruned")
		makeAvailable(ns, "shop-jp12-b")
		Eventually(routesOf(ns)).Should(ContainElement("branch-staging.feature-jp12: shop-jp12-b 100"))
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-jp12-a"}})).Should(BeTrue())
		Eventually(subsetsOf(ns)).ShouldNot(ContainElement("shop-jp12-a"))
	})

	It("never routes a late, older build, says why, and keeps it for the grace period", func() {
		newRelease(ns, "shop-b7", withBuild(7))
		makeAvailable(ns, "shop-b7")
		Eventually(phaseOf(ns, "shop-b7")).Should(Equal("Live 100 True/Routed"))
		newRelease(ns, "shop-b6", withBuild(6))
		Eventually(phaseOf(ns, "shop-b6")).Should(Equal("Superseded 0 False/OlderBuild"))
		r := getRelease(ns, "shop-b6")(Default)
		Expect(r.Status.Conditions).To(ContainElement(And(HaveField("Type", "Stalled"), HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", ContainSubstring("shop-b7")))))
		Expect(routesOf(ns)(Default)).To(ContainElement("env-production: shop-b7 100"))
		Eventually(func(g Gomega) []string {
			list := &eventsv1.EventList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range list.Items {
				if e.Regarding.Name == "shop-b6" {
					reasons = append(reasons, e.Type+"/"+e.Reason)
				}
			}
			return reasons
		}).Should(ContainElement("Warning/OlderBuild"))
		Consistently(gone(r), 2*time.Second).Should(BeFalse(), "pruned within the grace period")
	})

	It("leaves a foreign VirtualService named like the app untouched and says why", func() {
		foreign := &networkingv1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
			Spec: networking.VirtualService{Hosts: []string{"shop.example.com"}, Http: []*networking.HTTPRoute{{
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "legacy"}}}}}},
		}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Failed 0 False/ForeignObject"))
		r := getRelease(ns, "shop-v1")(Default)
		Expect(r.Status.Conditions).To(ContainElement(And(HaveField("Type", "Stalled"), HaveField("Status", metav1.ConditionTrue))))
		after := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), after)).To(Succeed())
		Expect(after.ResourceVersion).To(Equal(foreign.ResourceVersion), "the foreign VirtualService was written")

		By("deleting the release is not held up by the foreign object")
		Expect(k8s.Delete(ctx, r)).To(Succeed())
		Eventually(gone(r)).Should(BeTrue())
	})

	It("writes nothing when a resync finds nothing changed", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		newRelease(ns, "shop-v2", withCanary(20))
		makeAvailable(ns, "shop-v2")
		Eventually(phaseOf(ns, "shop-v2")).Should(Equal("Live 20 True/Routed"))
		before := versions(ns)

		var writes []string
		rec := &controller.AppReconciler{Client: writeCounter{Client: cached, writes: &writes}, APIReader: k8s, Recorder: events.NewFakeRecorder(10), Routing: routeOpts,
			Config: controller.Config{PruneSuperseded: true}}
		cacheCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		Expect(controller.StartDeploymentCache(cacheCtx, rec, cfg)).To(Succeed())
		for range 3 {
			_, err := rec.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "shop"}})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(writes).To(BeEmpty())
		Expect(versions(ns)).To(Equal(before))

		By("while the same reconciler does write when the routing it is asked for differs")
		rec.Routing.Gateway = "istio-system/other-gateway"
		_, err := rec.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "shop"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(writes).To(ContainElement(ContainSubstring("apply")))
	})

	It("holds a branch beyond the route budget, its subset defined, says why, and routes it once another retires", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		// The suite's budget is 80 routes: production's two and two per branch.
		const n = 39
		availableBranches(ns, n)
		Eventually(func(g Gomega) int { return len(routesOf(ns)(g)) }).Should(Equal(2*n + 2))

		By("the next branch waits, Stalled, its subset defined for when room is made")
		newRelease(ns, "shop-late", withBranch("late"))
		makeAvailable(ns, "shop-late")
		Eventually(phaseOf(ns, "shop-late")).Should(Equal("Failed 0 False/RouteBudgetExceeded"))
		rel := getRelease(ns, "shop-late")(Default)
		Expect(meta.IsStatusConditionTrue(rel.Status.Conditions, v1alpha1.ConditionStalled)).To(BeTrue())
		Expect(meta.FindStatusCondition(rel.Status.Conditions, v1alpha1.ConditionReady).Message).To(ContainSubstring("--max-routes"))
		Eventually(subsetsOf(ns)).Should(ContainElement("shop-late"))
		Expect(routesOf(ns)(Default)).NotTo(ContainElement(ContainSubstring("shop-late")))
		Expect(eventReasons(ns, "shop-late")(Default)).To(ContainElement(v1alpha1.ReasonRouteBudgetExceeded))

		By("a branch retires: the waiting one gets its subset and its route")
		Expect(k8s.Delete(ctx, getRelease(ns, "shop-b00")(Default))).To(Succeed())
		Eventually(phaseOf(ns, "shop-late")).Should(Equal("Live 100 True/Routed"))
		Expect(routesOf(ns)(Default)).To(ContainElement("branch-production.late: shop-late 100"))
	})

	It("routes every release of a burst of concurrent pipelines, and loses none", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		const n = 20
		availableBranches(ns, n)
		var wg sync.WaitGroup
		Eventually(func(g Gomega) int {
			routes := routesOf(ns)(g)
			return len(routes)
		}).Should(Equal(2*n + 2)) // a branch: a rule at the gateway, one in the mesh
		for i := range n {
			Eventually(phaseOf(ns, fmt.Sprintf("shop-b%02d", i))).Should(Equal("Live 100 True/Routed"))
		}

		By("deleting half of them at once")
		for i := 0; i < n; i += 2 {
			wg.Go(func() {
				defer GinkgoRecover()
				Expect(k8s.Delete(ctx, getRelease(ns, fmt.Sprintf("shop-b%02d", i))(Default))).To(Succeed())
			})
		}
		wg.Wait()
		Eventually(func(g Gomega) int { return len(routesOf(ns)(g)) }).Should(Equal(n + 2))
		Eventually(subsetsOf(ns)).Should(HaveLen(n/2 + 1))
	})
})

// availableBranches applies n branch releases shop-b00... at once, as n
// pipelines would, and makes their Deployments Available.
func availableBranches(ns string, n int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer GinkgoRecover()
			name := fmt.Sprintf("shop-b%02d", i)
			newRelease(ns, name, withBranch(fmt.Sprintf("b%02d", i)))
			makeAvailable(ns, name)
		})
	}
	wg.Wait()
}

func setCanary(ns, name string, w int32) {
	Eventually(func(g Gomega) {
		r := getRelease(ns, name)(g)
		r.Spec.Canary = &v1alpha1.Canary{Weight: w}
		g.Expect(k8s.Update(ctx, r)).To(Succeed())
	}).Should(Succeed())
}

// versions are the resourceVersions of the app's shared objects and releases.
func versions(ns string) map[string]string {
	out := map[string]string{}
	for _, o := range []client.Object{&corev1.Service{}, &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}} {
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, o)).To(Succeed())
		out[fmt.Sprintf("%T", o)] = o.GetResourceVersion()
	}
	list := &v1alpha1.AppReleaseList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	for _, r := range list.Items {
		out[r.Name] = r.ResourceVersion
	}
	return out
}
