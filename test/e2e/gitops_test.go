package e2e

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/localcluster"
)

var _ = Describe("GitOps", func() {
	It("reports status kstatus understands, and never writes a release's spec", func() {
		ns := newNamespace()
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(kstatusOf(ns, "shop-v1")).Should(Equal(status.CurrentStatus))

		By("a release that cannot come up is in progress, not current")
		mustApply(ns, "shop-v2", prod("shop:v2").with("canary", map[string]any{"weight": 10}).
			with("template", map[string]any{"metadata": map[string]any{"labels": map[string]any{localcluster.UnreadyLabel: "true"}}}))
		Eventually(state(ns, "shop-v2")).Should(Equal("Progressing 0 False/Progressing"))
		Expect(kstatusOf(ns, "shop-v2")(Default)).To(Equal(status.InProgressStatus))

		By("the canary at 0 is current again, routed as asked")
		mustApply(ns, "shop-v2b", prod("shop:v2b").with("canary", map[string]any{"weight": 0}))
		Eventually(kstatusOf(ns, "shop-v2b")).Should(Equal(status.CurrentStatus))
		expectSpecUntouched(ns)
	})
})

// kstatusOf is what kstatus (kubectl wait, Flux, Argo CD's kstatus mode) makes of a release.
func kstatusOf(ns, name string) func(Gomega) status.Status {
	return func(g Gomega) status.Status {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("AppRelease"))
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
		res, err := status.Compute(u)
		g.Expect(err).NotTo(HaveOccurred())
		return res.Status
	}
}

// expectSpecUntouched: only the pipeline's field manager owns spec fields, so
// a GitOps tool that owns the manifests sees no drift.
func expectSpecUntouched(ns string) {
	list := &v1alpha1.AppReleaseList{}
	Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	for _, r := range list.Items {
		for _, mf := range r.ManagedFields {
			if mf.Manager != "ci-pipeline" && mf.FieldsV1 != nil {
				Expect(strings.Contains(mf.FieldsV1.GetRawString(), `"f:spec"`)).To(BeFalse(),
					"%s: manager %s (%s) owns spec fields: %s", r.Name, mf.Manager, mf.Operation, mf.FieldsV1.GetRawString())
			}
		}
	}
}
