package controller_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// The CRD's schema and CEL rules, as the real API server applies them.
var _ = Describe("AppRelease validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	spec := func(overrides map[string]any) map[string]any {
		s := map[string]any{"app": "shop", "environment": "staging", "image": "registry.example.com/shop:1",
			"hosts": []any{"staging.shop.example.com"}}
		for k, v := range overrides {
			if v == nil {
				delete(s, k)
			} else {
				s[k] = v
			}
		}
		return s
	}
	create := func(name string, s map[string]any) error {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AppRelease",
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": s,
		}}
		return k8s.Create(ctx, u)
	}

	DescribeTable("refuses at apply time, with a message",
		func(s map[string]any, message string) {
			err := create("bad", spec(s))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("an app that is not a DNS label", map[string]any{"app": "Shop_1"}, "spec.app"),
		Entry("a missing app", map[string]any{"app": nil}, "spec.app: Required"),
		Entry("an environment that is not a DNS label", map[string]any{"environment": "Staging!"}, "spec.environment"),
		Entry("a branch that is not a DNS label", map[string]any{"branch": "feature/jp12"}, "spec.branch"),
		Entry("a host that is not a hostname", map[string]any{"hosts": []any{"https://shop.example.com"}}, "spec.hosts[0]"),
		Entry("an empty image", map[string]any{"image": ""}, "spec.image"),
		Entry("a blank image", map[string]any{"image": "   "}, "image must not be blank"),
		Entry("a weight over 100", map[string]any{"canary": map[string]any{"weight": 150}}, "spec.canary.weight"),
		Entry("a negative weight", map[string]any{"canary": map[string]any{"weight": -1}}, "spec.canary.weight"),
		Entry("a canary together with a branch", map[string]any{"branch": "feature-jp12", "canary": map[string]any{"weight": 10}},
			"canary is not allowed together with branch"),
		Entry("a port out of range", map[string]any{"port": 70000}, "spec.port"),
		Entry("zero replicas", map[string]any{"replicas": 0}, "spec.replicas"),
		Entry("an app that is not a Service name (a DNS-1035 label)", map[string]any{"app": "9shop"}, "spec.app"),
		Entry("another namespace's Service in another cluster domain", map[string]any{"hosts": []any{"payments.victim.svc.corp.internal"}},
			"hosts must be public hostnames"),
		Entry("another namespace's Service as a host", map[string]any{"hosts": []any{"payments.victim.svc.cluster.local"}},
			"hosts must be public hostnames"),
		Entry("a Service's short name as a host", map[string]any{"hosts": []any{"payments.victim.svc"}}, "hosts must be public hostnames"),
		Entry("a single label as a host", map[string]any{"hosts": []any{"payments"}}, "hosts must be public hostnames"),
		Entry("a host under .local", map[string]any{"hosts": []any{"shop.cluster.local"}}, "hosts must be public hostnames"),
		Entry("an image with surrounding white space", map[string]any{"image": " registry.example.com/shop:1 "},
			"image must not contain white space"),
		Entry("an image with white space inside", map[string]any{"image": "registry.example.com/shop :1"},
			"image must not contain white space"),
		Entry("an image with a tab", map[string]any{"image": "registry.example.com/shop:1\t"}, "image must not contain white space"),
		Entry("a template annotation that is not a string", map[string]any{"template": map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{"sidecar.istio.io/inject": true}}}},
			"spec.template.metadata.annotations.sidecar.istio.io/inject"),
		Entry("a runaway template (a list past its bound)", map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "app", "env": manyEnv(300)}}}}},
			"spec.template.spec.containers[0].env: Too many"),
		Entry("a malformed quantity in the template", map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "app", "resources": map[string]any{"limits": map[string]any{"cpu": "lots"}}}}}}},
			"spec.template.spec.containers[0].resources.limits.cpu"),
	)

	It("refuses a name longer than its Deployment's labels can carry", func() {
		long := "shop-staging-feature-jp12-0123456789abcdef0123456789abcdef012345"
		Expect(len(long)).To(BeNumerically(">", 63))
		Expect(create(long, spec(nil))).To(MatchError(ContainSubstring("metadata.name must be at most 63 characters")))
		Expect(create(long[:63], spec(nil))).To(Succeed())
	})

	DescribeTable("refuses changing what identifies a release",
		func(initial, change map[string]any, message string) {
			Expect(create("r", spec(initial))).To(Succeed())
			// Retried only while the operator's own writes (its finalizer) conflict.
			Eventually(func() error {
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("AppRelease"))
				Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "r"}, u)).To(Succeed())
				s := u.Object["spec"].(map[string]any)
				for k, v := range change {
					if v == nil {
						delete(s, k)
					} else {
						s[k] = v
					}
				}
				return k8s.Update(ctx, u)
			}).Should(MatchError(ContainSubstring(message)))
		},
		Entry("app", nil, map[string]any{"app": "other"}, "app is immutable"),
		Entry("environment", nil, map[string]any{"environment": "production"}, "environment is immutable"),
		Entry("branch", map[string]any{"branch": "feature-jp12"}, map[string]any{"branch": "feature-dp34"}, "branch is immutable"),
		Entry("adding a branch", nil, map[string]any{"branch": "feature-jp12"}, "branch is immutable"),
		Entry("removing a branch", map[string]any{"branch": "feature-jp12"}, map[string]any{"branch": nil}, "branch is immutable"),
	)

	It("accepts public hosts that merely contain svc", func() {
		Expect(create("svc-host", spec(map[string]any{"hosts": []any{"payments.svc.example.com", "svc.example.com"}}))).To(Succeed())
	})

	It("accepts a full spec and fills in the defaults", func() {
		Expect(create("good", spec(map[string]any{"branch": "feature-jp12", "template": map[string]any{
			"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "env": []any{
				map[string]any{"name": "MODE", "value": "test"}}}}}}}))).To(Succeed())
		r := &v1alpha1.AppRelease{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good"}, r)).To(Succeed())
		Expect(r.Spec.Port).To(BeEquivalentTo(8080))
		Expect(*r.Spec.Replicas).To(BeEquivalentTo(1))
		Expect(r.Spec.Template.Spec.Containers[0].Env[0].Value).To(Equal("test"))
		Expect(r.ObjectMeta.CreationTimestamp).NotTo(Equal(metav1.Time{}))
	})
})

// manyEnv is n environment variables, as a template would list them.
func manyEnv(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"name": fmt.Sprintf("V%d", i), "value": "x"}
	}
	return out
}
