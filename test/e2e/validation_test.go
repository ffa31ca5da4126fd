package e2e

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func releaseObj(ns, name string) *v1alpha1.AppRelease {
	return &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

var _ = Describe("Bad input", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("is refused at apply time with a message",
		func(s spec, message string) {
			err := apply(ns, "bad", s)
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("an app that is not a DNS label", prod("shop:1").with("app", "Shop_1"), "spec.app"),
		Entry("a host that is not a hostname", prod("shop:1").with("hosts", []any{"shop.example.com/path"}), "spec.hosts[0]"),
		Entry("an empty image", prod("shop:1").with("image", ""), "spec.image"),
		Entry("a weight over 100", prod("shop:1").with("canary", map[string]any{"weight": 150}), "spec.canary.weight"),
		Entry("a canary with a branch", staging("shop:1").with("branch", "feature-jp12").with("canary", map[string]any{"weight": 10}),
			"canary is not allowed together with branch"),
	)

	It("refuses changing a release's environment", func() {
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Expect(apply(ns, "shop-v1", prod("shop:v1").with("environment", "staging"))).To(MatchError(ContainSubstring("environment is immutable")))
	})
})
