package controller_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// A host is served by one app in the whole cluster: a later claimant, in any
// app or namespace, is told who holds it and never takes it.
var _ = Describe("Hosts across apps and namespaces", func() {
	withApp := func(app string) relOpt { return func(r *v1alpha1.AppRelease) { r.Spec.App = app } }
	// shared is a public host each test shares between its namespaces, and no
	// other test claims (nsHost leaves example.org as it is).
	var shared string
	BeforeEach(func() { shared = "shop-" + rand.String(6) + ".example.org" })
	sharedHost := func(r *v1alpha1.AppRelease) { r.Spec.Hosts = []string{shared} }
	vsHosts := func(ns, app string) func(Gomega) []string {
		return func(g Gomega) []string {
			vs := &networkingv1.VirtualService{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, vs)).To(Succeed())
			return vs.Spec.Hosts
		}
	}

	It("keeps a host with the app that serves it, tells a later claimant in another namespace, and hands it over when freed", func() {
		team, other := newNamespace(), newNamespace()
		newRelease(team, "shop-v1", sharedHost)
		makeAvailable(team, "shop-v1")
		Eventually(phaseOf(team, "shop-v1")).Should(Equal("Live 100 True/Routed"))

		By("another team's app claiming the same public host")
		newRelease(other, "evil-v1", withApp("evil"), sharedHost)
		makeAvailable(other, "evil-v1")
		Eventually(phaseOf(other, "evil-v1")).Should(Equal("Live 100 False/HostsConflict"))
		r := getRelease(other, "evil-v1")(Default)
		Expect(meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady).Message).
			To(ContainSubstring("belongs to app shop in namespace " + team))
		Eventually(vsHosts(other, "evil")).ShouldNot(ContainElement(shared))
		Consistently(phaseOf(team, "shop-v1"), "2s").Should(Equal("Live 100 True/Routed"))
		Expect(vsHosts(team, "shop")(Default)).To(ContainElement(shared))

		By("a second app in the same namespace claiming it")
		newRelease(team, "cart-v1", withApp("cart"), sharedHost)
		makeAvailable(team, "cart-v1")
		Eventually(phaseOf(team, "cart-v1")).Should(Equal("Live 100 False/HostsConflict"))

		By("the holder retiring: the host goes to the earliest remaining claimant")
		Expect(k8s.Delete(ctx, getRelease(team, "shop-v1")(Default))).To(Succeed())
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "shop-v1"}})).Should(BeTrue())
		Eventually(phaseOf(other, "evil-v1")).Should(Equal("Live 100 True/Routed"))
		Eventually(vsHosts(other, "evil")).Should(ContainElement(shared))
		Eventually(phaseOf(team, "cart-v1")).Should(Equal("Live 100 False/HostsConflict"))
	})

	It("never hands a host to an older claimant that lost it, not even through the holder's outage", func() {
		team, other := newNamespace(), newNamespace()
		newRelease(team, "shop-v1", sharedHost)
		makeAvailable(team, "shop-v1")
		Eventually(phaseOf(team, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		newRelease(other, "evil-v1", withApp("evil"), sharedHost)
		makeAvailable(other, "evil-v1")
		Eventually(phaseOf(other, "evil-v1")).Should(Equal("Live 100 False/HostsConflict"))

		By("the holder's later builds replace its first: its oldest claim is now newer than the loser's")
		newRelease(team, "shop-v2", sharedHost)
		makeAvailable(team, "shop-v2")
		Eventually(phaseOf(team, "shop-v2")).Should(Equal("Live 100 True/Routed"))
		Expect(k8s.Delete(ctx, getRelease(team, "shop-v1")(Default))).To(Succeed())
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "shop-v1"}})).Should(BeTrue())

		By("an outage of the holder: no pod up")
		setAvailable(team, "shop-v2", 0, false)
		Eventually(phaseOf(team, "shop-v2")).Should(Equal("Progressing 0 False/Progressing"))
		Consistently(func(g Gomega) string { return phaseOf(other, "evil-v1")(g) }, "3s").Should(Equal("Live 100 False/HostsConflict"))
		Expect(vsHosts(other, "evil")(Default)).NotTo(ContainElement(shared))

		By("the holder's pods back: it serves its host again")
		setAvailable(team, "shop-v2", 1, true)
		Eventually(phaseOf(team, "shop-v2")).Should(Equal("Live 100 True/Routed"))
		Eventually(vsHosts(team, "shop")).Should(ContainElement(shared))
	})
})

// The AppRelease indexes hold one key per value, in the scope it is listed
// in: an app's releases within its namespace, a host's claimants across
// namespaces (controller-runtime's IndexField would store both scopes for
// each, one of them never read).
var _ = Describe("AppRelease indexes", func() {
	It("list an app's releases in its namespace and a host's claimants across namespaces, one key per value", func() {
		team, other := newNamespace(), newNamespace()
		host := "idx-" + rand.String(6) + ".example.org"
		withHost := func(r *v1alpha1.AppRelease) { r.Spec.Hosts = []string{host} }
		newRelease(team, "shop-v1", withHost)
		newRelease(other, "shop-v1")

		inTeam := func(g Gomega) []string {
			list := &v1alpha1.AppReleaseList{}
			g.Expect(cached.List(ctx, list, client.InNamespace(team), client.MatchingFields{".spec.app": "shop"})).To(Succeed())
			return releaseKeys(list)
		}
		Eventually(inTeam).Should(ConsistOf(team + "/shop-v1"))
		claimants := &v1alpha1.AppReleaseList{}
		Expect(cached.List(ctx, claimants, client.MatchingFields{".spec.hosts": host})).To(Succeed())
		Expect(releaseKeys(claimants)).To(ConsistOf(team + "/shop-v1"))
		Eventually(func(g Gomega) []string {
			list := &v1alpha1.AppReleaseList{}
			g.Expect(cached.List(ctx, list, client.InNamespace(other), client.MatchingFields{".spec.app": "shop"})).To(Succeed())
			return releaseKeys(list)
		}).Should(ConsistOf(other + "/shop-v1"))

		inf, err := operatorCache.GetInformer(ctx, &v1alpha1.AppRelease{})
		Expect(err).NotTo(HaveOccurred())
		indexer := inf.(toolscache.SharedIndexInformer).GetIndexer()
		Expect(indexer.ListIndexFuncValues("field:.spec.app")).To(ContainElement(team + "/shop"))
		Expect(indexer.ListIndexFuncValues("field:.spec.app")).NotTo(ContainElement(HavePrefix("__all_namespaces/")),
			"an app's releases are never listed across namespaces: an all-namespaces key per release is heap for nothing")
		Expect(indexer.ListIndexFuncValues("field:.spec.hosts")).To(ContainElement("__all_namespaces/" + host))
		Expect(indexer.ListIndexFuncValues("field:.spec.hosts")).To(HaveEach(HavePrefix("__all_namespaces/")),
			"a host's claimants are never listed within one namespace")
	})
})

func releaseKeys(list *v1alpha1.AppReleaseList) []string {
	var out []string
	for _, r := range list.Items {
		out = append(out, r.Namespace+"/"+r.Name)
	}
	return out
}
