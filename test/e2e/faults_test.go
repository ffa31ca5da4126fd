package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/localcluster"
	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// Faults that every production cluster sees, played on the real
// controllers: kwok fails pods on demand (localcluster.FailLabel), the
// garbage collector deletes in both propagation modes, the operator is killed
// or upgraded. A snapshot watcher checks every state the app passes through.
var _ = Describe("Faults", func() {
	var (
		ns       string
		stop     chan struct{}
		watching <-chan error
	)
	BeforeEach(func() {
		ns = newNamespace()
		stop = make(chan struct{})
		watching = nil
	})
	watch := func() { watching = watchSnapshots(ns, stop) }
	AfterEach(func() {
		close(stop)
		if watching != nil {
			Expect(<-watching).To(Succeed(), "a state the app passed through broke a promise")
		}
	})

	It("moves traffic off a stable whose pods fail in waves, and back when they recover", func() {
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		mustApply(ns, "shop-v2", prod("shop:v2").with("replicas", 3))
		Eventually(state(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Standby 0 True/Standby"))
		watch()

		By("its pods failing one by one: routed while one is up")
		pods := podsOf(ns, "shop-v2")
		Expect(pods).To(HaveLen(3))
		for _, p := range pods[:2] {
			setFailing(p, true)
		}
		Eventually(availablePods(ns, "shop-v2")).Should(BeEquivalentTo(1))
		Consistently(routes(ns), 2*time.Second).Should(ContainElement("env-production: shop-v2 100"))

		By("the last one failing: the Standby takes the environment within seconds, and the release leaves Ready")
		setFailing(pods[2], true)
		Eventually(routes(ns)).Should(ContainElement("env-production: shop-v1 100"))
		Eventually(state(ns, "shop-v2")).Should(Equal("Progressing 0 False/Progressing"))

		By("its pods recovering: it takes the environment back")
		for _, p := range pods {
			setFailing(p, false)
		}
		Eventually(routes(ns)).Should(ContainElement("env-production: shop-v2 100"))
		Eventually(state(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))
	})

	It("never sends traffic to a crash-looping canary, and survives evictions of the stable's pods", func() {
		mustApply(ns, "shop-v1", prod("shop:v1").with("replicas", 2))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		watch()

		By("a canary whose pods crash-loop")
		mustApply(ns, "shop-v2", prod("shop:v2").with("canary", map[string]any{"weight": 20}).
			with("template", map[string]any{"metadata": map[string]any{"labels": map[string]any{localcluster.FailLabel: "true"}}}))
		Eventually(state(ns, "shop-v2")).Should(Equal("Progressing 0 False/Progressing"))
		Consistently(routes(ns), 3*time.Second).Should(ContainElement("env-production: shop-v1 100"))

		By("evicting the stable's pods one at a time, as a node drain does")
		for _, p := range podsOf(ns, "shop-v1") {
			Expect(k8s.SubResource("eviction").Create(ctx, &p, &policyv1.Eviction{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})).To(Succeed())
			Eventually(availablePods(ns, "shop-v1")).Should(BeEquivalentTo(2))
		}
		Expect(routes(ns)(Default)).To(ContainElement("env-production: shop-v1 100"))

		By("the canary's pods recovering: it takes its share")
		for _, p := range podsOf(ns, "shop-v2") {
			setFailing(p, false)
		}
		Eventually(routes(ns)).Should(ContainElement("env-production: shop-v1 80, shop-v2 20"))
	})

	DescribeTable("a foreground delete (Argo CD's prune) keeps the pods until their routes have drained",
		func(operatorDown bool) {
			mustApply(ns, "shop-v1", prod("shop:v1"))
			Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
			mustApply(ns, "shop-v2", prod("shop:v2"))
			Eventually(state(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))
			watch()
			if operatorDown {
				operator.Stop()
				DeferCleanup(func() {
					if !operator.Running() {
						startOperator()
					}
				})
			}

			policy := metav1.DeletePropagationForeground
			Expect(k8s.Delete(ctx, &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v2"}},
				&client.DeleteOptions{PropagationPolicy: &policy})).To(Succeed())
			Eventually(func(g Gomega) []string {
				r := &v1alpha1.AppRelease{}
				err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-v2"}, r)
				if apierrors.IsNotFound(err) {
					return nil // drained and gone already
				}
				g.Expect(err).NotTo(HaveOccurred())
				return r.Finalizers
			}).ShouldNot(ContainElement(metav1.FinalizerDeleteDependents), "the garbage collector has processed the foreground delete")
			if operatorDown {
				By("with the operator down, the route and the pods stay together")
				Consistently(func(g Gomega) {
					g.Expect(routes(ns)(g)).To(ContainElement("env-production: shop-v2 100"))
					g.Expect(availablePods(ns, "shop-v2")(g)).To(BeEquivalentTo(1))
				}, 5*time.Second).Should(Succeed())
				startOperator()
			}
			Eventually(routes(ns)).Should(ContainElement("env-production: shop-v1 100"))
			Eventually(releaseGone(ns, "shop-v2")).Should(BeTrue())
			Eventually(gone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v2"}})).Should(BeTrue())
			Eventually(subsets(ns)).Should(Equal([]string{"shop-v1"}))
		},
		Entry("with the operator up", false),
		Entry("with the operator down", true),
	)

	It("finishes a drain begun before the operator was killed, never sooner than the drain delay", func() {
		mustApply(ns, "shop-v1", prod("shop:v1"))
		mustApply(ns, "shop-jp12", prod("shop:jp12").with("branch", "feature-jp12"))
		Eventually(state(ns, "shop-jp12")).Should(Equal("Live 100 True/Routed"))
		watch()
		deleteRelease(ns, "shop-jp12")
		Eventually(func(g Gomega) *metav1.Time {
			r := &v1alpha1.AppRelease{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-jp12"}, r)).To(Succeed())
			return r.Status.DrainingSince
		}).ShouldNot(BeNil())
		operator.Kill()
		startOperator()
		Eventually(releaseGone(ns, "shop-jp12")).Should(BeTrue())
		Eventually(subsets(ns)).Should(Equal([]string{"shop-v1"}))
	})

	It("keeps one writer while the chart is upgraded in the middle of a burst", func() {
		By("the running operator, and the upgrade's new one, both electing as the chart runs them")
		operator.Stop()
		args := []string{"--leader-elect", "--leader-election-namespace=" + chartNamespace}
		old, _ := runOperator("upgrade-old.log", args...)
		DeferCleanup(func() {
			old.Stop()
			if operator != nil {
				operator.Stop()
			}
			startOperator()
		})
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		watch()

		const n = 16
		var wg sync.WaitGroup
		wg.Go(func() {
			defer GinkgoRecover()
			burst(n, func(i int) error {
				return apply(ns, fmt.Sprintf("shop-u%02d", i), staging(fmt.Sprintf("shop:u%02d", i)).with("branch", fmt.Sprintf("u%02d", i)))
			})
		})
		Eventually(func() int { return countReleases(ns) }).Should(BeNumerically(">=", 4))
		// The suite scrapes metricsURL later: it names the operator that runs.
		operator, metricsURL = runOperator("upgrade-new.log", args...)
		old.Stop() // the rolling update ends the old pod: it releases the Lease
		wg.Wait()
		for i := range n {
			Eventually(state(ns, fmt.Sprintf("shop-u%02d", i))).Should(Equal("Live 100 True/Routed"))
		}
		Expect(wrote(old)).To(BeTrue(), "the old operator wrote before the upgrade")
		Expect(wrote(operator)).To(BeTrue(), "the new operator took over")
		Expect(overlaps(old, operator)).To(BeFalse(), "the two operators wrote at the same time")
		By("deleting half of them after the upgrade")
		for i := 0; i < n; i += 2 {
			deleteRelease(ns, fmt.Sprintf("shop-u%02d", i))
		}
		// Two rules a branch, production's two, staging's 503 (no stable).
		Eventually(func(g Gomega) int { return len(routes(ns)(g)) }).Should(Equal(n + 3))
	})
})

// podsOf lists a release's pods, by its subset's version label.
func podsOf(ns, release string) []corev1.Pod {
	list := &corev1.PodList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{routing.VersionLabel: routing.SubsetName(release)})).To(Succeed())
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() {
			out = append(out, p)
		}
	}
	return out
}

// availablePods is the release's Deployment's available replicas.
func availablePods(ns, release string) func(Gomega) int32 {
	return func(g Gomega) int32 {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: release}, d)).To(Succeed())
		return d.Status.AvailableReplicas
	}
}

// setFailing makes kwok crash-loop a pod (or recover it).
func setFailing(p corev1.Pod, failing bool) {
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, localcluster.FailLabel)
	if !failing {
		patch = fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, localcluster.FailLabel)
	}
	ExpectWithOffset(1, k8s.Patch(ctx, &p, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

// overlaps tells whether the second operator wrote before the first one's
// last write (to the second, as their logs stamp time): two writers at once.
func overlaps(first, second *testenv.Operator) bool {
	firstWrites, secondWrites := writeTimes(first), writeTimes(second)
	return len(firstWrites) > 0 && len(secondWrites) > 0 && secondWrites[0] < firstWrites[len(firstWrites)-1]
}

// writeTimes are the times ("ts") of an operator's log lines that report a write, in order.
func writeTimes(o *testenv.Operator) []string {
	raw, err := os.ReadFile(o.Log)
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"Applied`)) {
			continue
		}
		var entry struct {
			TS string `json:"ts"`
		}
		if json.Unmarshal(line, &entry) == nil {
			out = append(out, entry.TS)
		}
	}
	return out
}

// countReleases counts the AppReleases of a namespace.
func countReleases(ns string) int {
	list := &v1alpha1.AppReleaseList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	return len(list.Items)
}
