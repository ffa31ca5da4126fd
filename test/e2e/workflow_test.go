package e2e

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/localcluster"
)

var _ = Describe("CI workflows", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("routes a first release, splits a canary, promotes it, and rolls back", func() {
		By("v1: Ready and routed once its pods are up")
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		Expect(routes(ns)(Default)).To(Equal([]string{"mesh-production: shop-v1 100", "env-production: shop-v1 100"}))

		By("v2 as a 10% canary")
		mustApply(ns, "shop-v2", prod("shop:v2").with("canary", map[string]any{"weight": 10}))
		Eventually(state(ns, "shop-v2")).Should(Equal("Live 10 True/Routed"))
		Expect(routes(ns)(Default)).To(ContainElement("env-production: shop-v1 90, shop-v2 10"))

		By("setting the canary to 0 gives its share back to the stable")
		mustApply(ns, "shop-v2", prod("shop:v2").with("canary", map[string]any{"weight": 0}))
		Eventually(routes(ns)).Should(ContainElement("env-production: shop-v1 100"))

		By("promotion: the canary at 100 becomes stable, v1 stands by")
		mustApply(ns, "shop-v2", prod("shop:v2").with("canary", map[string]any{"weight": 100}))
		Eventually(state(ns, "shop-v1")).Should(Equal("Standby 0 True/Standby"))
		Eventually(routes(ns)).Should(ContainElement("env-production: shop-v2 100"))

		By("rollback: deleting the stable hands production back to the Standby at once")
		deleteRelease(ns, "shop-v2")
		Eventually(routes(ns)).Should(ContainElement("env-production: shop-v1 100"))
		Eventually(releaseGone(ns, "shop-v2")).Should(BeTrue())
		Eventually(gone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v2"}})).Should(BeTrue(),
			"the garbage collector removes the deleted release's Deployment")
		Expect(subsets(ns)(Default)).To(Equal([]string{"shop-v1"}))
	})

	It("routes feature branches by header ahead of host routes; a rebuild takes over once Available and the old build is collected", func() {
		mustApply(ns, "shop-v1", prod("shop:v1"))
		mustApply(ns, "shop-staging-1", staging("shop:s1"))
		mustApply(ns, "shop-jp12-a", staging("shop:jp12-a").with("branch", "feature-jp12"))
		Eventually(state(ns, "shop-jp12-a")).Should(Equal("Live 100 True/Routed"))
		Eventually(routes(ns)).Should(Equal([]string{
			"mesh-branch-staging.feature-jp12: shop-jp12-a 100",
			"mesh-staging: shop-staging-1 100",
			"mesh-production: shop-v1 100",
			"env-production: shop-v1 100",
			"branch-staging.feature-jp12: shop-jp12-a 100",
			"env-staging: shop-staging-1 100",
		}))

		By("a rebuild whose pods never become Ready stays off the route")
		mustApply(ns, "shop-jp12-b", staging("shop:jp12-b").with("branch", "feature-jp12").
			with("template", map[string]any{"metadata": map[string]any{"labels": map[string]any{localcluster.UnreadyLabel: "true"}}}))
		Eventually(state(ns, "shop-jp12-b")).Should(Equal("Progressing 0 False/Progressing"))
		Consistently(routes(ns), 3*time.Second).Should(ContainElement("branch-staging.feature-jp12: shop-jp12-a 100"))

		By("a rebuild that comes up takes over; the older builds are superseded, their Deployments collected")
		stop := make(chan struct{})
		watching := watchSnapshots(ns, stop)
		mustApply(ns, "shop-jp12-c", staging("shop:jp12-c").with("branch", "feature-jp12"))
		Eventually(routes(ns)).Should(ContainElement("branch-staging.feature-jp12: shop-jp12-c 100"))
		Eventually(releaseGone(ns, "shop-jp12-a")).Should(BeTrue())
		// The build that never came up is older than the live one and never took
		// traffic: it says so, and is kept for --superseded-grace.
		Eventually(state(ns, "shop-jp12-b")).Should(Equal("Superseded 0 False/OlderBuild"))
		for _, old := range []string{"shop-jp12-a", "shop-jp12-b"} {
			Eventually(gone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: old}})).Should(BeTrue())
		}
		Eventually(subsets(ns)).Should(Equal([]string{"shop-jp12-c", "shop-staging-1", "shop-v1"}))
		close(stop)
		Expect(<-watching).To(Succeed(), "a state with a route to a missing subset or an unavailable Deployment")
	})

	It("removes the app's Service, VirtualService and DestinationRule through the garbage collector with its last release", func() {
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		deleteRelease(ns, "shop-v1")
		for _, o := range []client.Object{
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app}},
			&networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app}},
			&networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app}},
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v1"}},
		} {
			Eventually(gone(o)).Should(BeTrue(), "%T is left behind", o)
		}
	})

	It("leaves a foreign VirtualService named like the app untouched and says why", func() {
		foreign := &networkingv1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
			Spec: networking.VirtualService{Hosts: []string{"shop.example.com"}, Http: []*networking.HTTPRoute{{
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "legacy"}}}}}},
		}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Failed 0 False/ForeignObject"))
		Consistently(func(g Gomega) string {
			vs := &networkingv1.VirtualService{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), vs)).To(Succeed())
			return vs.ResourceVersion
		}, 2*time.Second).Should(Equal(foreign.ResourceVersion))
	})

	It("routes every release of 50 concurrent pipelines, then deletes 25 concurrently, losing none", func() {
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		stop := make(chan struct{})
		watching := watchSnapshots(ns, stop)

		const n = 50
		burst(n, func(i int) error {
			return apply(ns, fmt.Sprintf("shop-b%02d", i), staging(fmt.Sprintf("shop:b%02d", i)).with("branch", fmt.Sprintf("b%02d", i)))
		})
		for i := range n {
			Eventually(state(ns, fmt.Sprintf("shop-b%02d", i))).Should(Equal("Live 100 True/Routed"))
		}
		// A branch: a rule at the gateway, one in the mesh; production's two;
		// staging's 503 for its callers (no stable).
		Eventually(func(g Gomega) int { return len(routes(ns)(g)) }).Should(Equal(2*n + 3))

		burst(n/2, func(i int) error {
			return client.IgnoreNotFound(k8s.Delete(ctx, releaseObj(ns, fmt.Sprintf("shop-b%02d", 2*i))))
		})
		for i := 0; i < n; i += 2 {
			Eventually(releaseGone(ns, fmt.Sprintf("shop-b%02d", i))).Should(BeTrue())
		}
		Eventually(func(g Gomega) int { return len(routes(ns)(g)) }).Should(Equal(n + 3))
		Eventually(subsets(ns)).Should(HaveLen(n/2 + 1))
		for i := 1; i < n; i += 2 {
			Expect(state(ns, fmt.Sprintf("shop-b%02d", i))(Default)).To(Equal("Live 100 True/Routed"))
		}
		close(stop)
		Expect(<-watching).To(Succeed())
	})

	It("converges with no lost release when the operator is killed mid-burst", func() {
		const n = 20
		var wg sync.WaitGroup
		wg.Go(func() {
			burst(n, func(i int) error {
				return apply(ns, fmt.Sprintf("shop-r%02d", i), staging(fmt.Sprintf("shop:r%02d", i)).with("branch", fmt.Sprintf("r%02d", i)))
			})
		})
		By("killing the operator once it has written part of the burst, and before it has routed all of it")
		Eventually(func() int { return len(writeTimes(operator)) }).Should(BeNumerically(">", 0))
		Eventually(func() int { return countReleases(ns) }).Should(BeNumerically(">=", n/4))
		routedAtKill := liveReleases(ns)
		operator.Kill()
		Expect(routedAtKill).To(BeNumerically("<", n), "the kill landed after the burst was over")
		writesBefore := len(writeTimes(operator)) // the log file is appended to by the restarted operator
		wg.Wait()
		startOperator()
		for i := range n {
			Eventually(state(ns, fmt.Sprintf("shop-r%02d", i))).Should(Equal("Live 100 True/Routed"))
		}
		// Two rules a branch, staging's 503 for its callers (no stable) and
		// the mesh's (no production release).
		Eventually(func(g Gomega) int { return len(routes(ns)(g)) }).Should(Equal(2*n + 2))
		Expect(len(writeTimes(operator))).To(BeNumerically(">", writesBefore),
			"the restarted operator wrote the rest of the burst")
	})
})

var _ = Describe("Pruning", Ordered, func() {
	AfterAll(func() { restartOperator() })

	It("keeps superseded AppReleases with --prune-superseded=false, and still removes their routes, subsets and Deployments", func() {
		restartOperator("--prune-superseded=false")
		ns := newNamespace()
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		mustApply(ns, "shop-v2", prod("shop:v2"))
		Eventually(state(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))
		mustApply(ns, "shop-v3", prod("shop:v3"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Superseded 0 False/Superseded"))
		Eventually(gone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v1"}})).Should(BeTrue())
		Eventually(subsets(ns)).Should(Equal([]string{"shop-v2", "shop-v3"}))
		Consistently(releaseGone(ns, "shop-v1"), 2*time.Second).Should(BeFalse())
		Expect(kstatusOf(ns, "shop-v1")(Default)).To(Equal(status.FailedStatus), "waiting tools stop at a superseded release")
		expectSpecUntouched(ns)
	})
})

// burst runs n pipelines at once and waits for them all.
func burst(n int, pipeline func(i int) error) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer GinkgoRecover()
			Eventually(func() error { return pipeline(i) }).Should(Succeed())
		})
	}
	wg.Wait()
}

// liveReleases counts the releases of a namespace whose status says Live.
func liveReleases(ns string) int {
	list := &v1alpha1.AppReleaseList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	n := 0
	for _, r := range list.Items {
		if r.Status.Phase == v1alpha1.PhaseLive {
			n++
		}
	}
	return n
}
