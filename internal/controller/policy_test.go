package controller_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// The admission policy the chart ships, as the real API server enforces it:
// writing an AppRelease is writing a workload.
var _ = Describe("AppRelease workload rights", Ordered, func() {
	var ns string
	BeforeAll(func() {
		raw, err := os.ReadFile(filepath.Join(testenv.Root(), "config", "policy", "apprelease-workload-rights.yaml"))
		Expect(err).NotTo(HaveOccurred())
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
			Expect(k8s.Create(ctx, u)).To(Succeed())
			DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(ctx, u))).To(Succeed()) })
		}
	})
	BeforeEach(func() { ns = newNamespace() })

	// as is a client acting as user, who may do verbs on resources in ns.
	as := func(user string, rules ...rbacv1.PolicyRule) client.Client {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns}, Rules: rules}
		Expect(k8s.Create(ctx, role)).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})).To(Succeed())
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: user}
		cl, err := client.New(c, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		return cl
	}
	appReleases := rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"appreleases"},
		Verbs: []string{"get", "create", "update", "patch", "delete"}}
	release := func(name string) *v1alpha1.AppRelease {
		return &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: "staging", Hosts: []string{nsHost(ns, "staging.shop.example.com")},
				Image: "registry.example.com/shop:1"}}
	}

	It("refuses an AppRelease to a user who may create AppReleases but not Deployments, and says why", func() {
		limited := as("only-appreleases", appReleases)
		// Dry runs until the policy is in force, then for real.
		Eventually(func() error { return limited.Create(ctx, release("shop-1"), client.DryRunAll) }).Should(HaveOccurred())
		Expect(limited.Create(ctx, release("shop-1"))).To(MatchError(And(
			ContainSubstring("writing one needs the right to create Deployments in namespace "+ns),
			ContainSubstring("only-appreleases does not have"))))
	})

	It("accepts it from a CI identity that may create Deployments itself, and lets the operator take it in", func() {
		ci := as("ci-deployer", appReleases, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"},
			Verbs: []string{"create", "update", "patch"}})
		Expect(ci.Create(ctx, release("shop-1"))).To(Succeed())
		Eventually(phaseOf(ns, "shop-1")).Should(Equal("Progressing 0 False/Progressing"),
			"the operator's own writes (its finalizer) pass the policy")
	})

	It("refuses a change of the spec to a user who may not update Deployments", func() {
		Expect(k8s.Create(ctx, release("shop-1"))).To(Succeed())
		createOnly := as("create-only", appReleases, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"},
			Verbs: []string{"create"}})
		Eventually(func() error {
			r := &v1alpha1.AppRelease{}
			if err := createOnly.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-1"}, r); err != nil {
				return err
			}
			r.Spec.Image = "registry.example.com/shop:2"
			return createOnly.Update(ctx, r)
		}).Should(MatchError(ContainSubstring("update Deployments in namespace " + ns)))
	})

	It("refuses a delete to a user who may not delete Deployments: the operator would take the pods down for them", func() {
		Expect(k8s.Create(ctx, release("shop-1"))).To(Succeed())
		noDelete := as("no-delete", appReleases)
		Expect(noDelete.Delete(ctx, release("shop-1"))).To(MatchError(ContainSubstring("delete Deployments in namespace " + ns)))
		deleter := as("deleter", appReleases, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"},
			Verbs: []string{"delete"}})
		Expect(deleter.Delete(ctx, release("shop-1"))).To(Succeed())
	})
})
