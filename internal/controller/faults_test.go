package controller_test

import (
	"errors"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/controller"
)

// What real clusters do to an app every day, played against the real API
// server: pods that fail, rollouts, hand edits, refused writes, a malformed
// object, a Deployment deleted under a routed release.
var _ = Describe("AppRelease under cluster events", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("moves a routed release's traffic once none of its pods is available, and back when they return", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		newRelease(ns, "shop-v2", func(r *v1alpha1.AppRelease) { r.Spec.Replicas = ptr.To[int32](3) })
		makeAvailable(ns, "shop-v2")
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v2 100"))
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Standby 0 True/Standby"))

		By("pods failing one after another: routed while one is up")
		setAvailable(ns, "shop-v2", 1, false)
		Consistently(routesOf(ns), "1s").Should(ContainElement("env-production: shop-v2 100"))

		By("the last pod gone: the Standby takes the environment, and the release leaves Ready")
		setAvailable(ns, "shop-v2", 0, false)
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v1 100"))
		Eventually(phaseOf(ns, "shop-v2")).Should(Equal("Progressing 0 False/Progressing"))
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))

		By("its pods back: it takes the environment again")
		setAvailable(ns, "shop-v2", 3, true)
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v2 100"))
		Eventually(phaseOf(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))
	})

	It("turns Ready within seconds of the end of a rollout of a changed spec", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))

		By("a GitOps edit of the image")
		Eventually(func(g Gomega) {
			r := getRelease(ns, "shop-v1")(g)
			r.Spec.Image = "registry.example.com/shop:v1-patched"
			g.Expect(k8s.Update(ctx, r)).To(Succeed())
		}).Should(Succeed())
		var gen int64
		Eventually(func(g Gomega) string {
			d := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-v1"}, d)).To(Succeed())
			gen = d.Generation
			return d.Spec.Template.Spec.Containers[0].Image
		}).Should(Equal("registry.example.com/shop:v1-patched"))

		By("the deployment controller sees the new spec and rolls pods, Available throughout")
		setStatus(ns, "shop-v1", func(st *appsv1.DeploymentStatus) {
			st.ObservedGeneration, st.Replicas, st.UpdatedReplicas = gen, 2, 0
		})
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 False/RollingOut"))

		By("the rollout done")
		setStatus(ns, "shop-v1", func(st *appsv1.DeploymentStatus) { st.Replicas, st.UpdatedReplicas = 1, 1 })
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
	})

	It("puts back a Deployment and a VirtualService changed by hand", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		key := client.ObjectKey{Namespace: ns, Name: "shop-v1"}

		By("kubectl scale")
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, key, d)).To(Succeed())
		scale := &autoscalingv1.Scale{}
		Expect(k8s.SubResource("scale").Patch(ctx, d, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":5}}`)),
			client.FieldOwner("kubectl"), client.WithSubResourceBody(scale))).To(Succeed())
		Eventually(func(g Gomega) int32 {
			g.Expect(k8s.Get(ctx, key, d)).To(Succeed())
			return *d.Spec.Replicas
		}).Should(BeEquivalentTo(1))

		By("kubectl set image")
		Expect(k8s.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType,
			[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:latest"}]}}}}`)),
			client.FieldOwner("kubectl-set"))).To(Succeed())
		Eventually(func(g Gomega) string {
			g.Expect(k8s.Get(ctx, key, d)).To(Succeed())
			return d.Spec.Template.Spec.Containers[0].Image
		}).Should(Equal("registry.example.com/shop:shop-v1"))
		Eventually(eventReasons(ns, "shop-v1")).Should(ContainElement("DeploymentReverted"))

		By("an edit of the VirtualService")
		vs := &networkingv1.VirtualService{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs)).To(Succeed())
		vs.Spec.Http = vs.Spec.Http[:1]
		vs.Spec.Http[0].Route = []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "elsewhere"}}}
		Expect(k8s.Update(ctx, vs)).To(Succeed())
		Eventually(routesOf(ns)).Should(Equal([]string{"mesh-production: shop-v1 100", "env-production: shop-v1 100"}))
	})

	It("says so when its Deployment is changed in fields it does not set, and recovers when the Deployment is made anew", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		key := client.ObjectKey{Namespace: ns, Name: "shop-v1"}
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, key, d)).To(Succeed())
		oldUID := d.UID

		By("kubectl set env adds a variable the release does not have")
		Expect(k8s.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType,
			[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"FOO","value":"bar"}]}]}}}}`)),
			client.FieldOwner("kubectl-set"))).To(Succeed())
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 False/DeploymentDrift"))
		r := getRelease(ns, "shop-v1")(Default)
		Expect(meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady).Message).To(ContainSubstring("kubectl-set"))

		By("deleting the Deployment, as the message says: it drains and is made anew as the release asks")
		Expect(k8s.Delete(ctx, d)).To(Succeed())
		Eventually(func(g Gomega) types.UID {
			g.Expect(k8s.Get(ctx, key, d)).To(Succeed())
			return d.UID
		}).ShouldNot(Equal(oldUID))
		Expect(d.Spec.Template.Spec.Containers[0].Env).To(BeEmpty())
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
	})

	It("says at once why the API server refuses a release's Deployment, and recovers when the release is fixed", func() {
		newRelease(ns, "shop-v1", func(r *v1alpha1.AppRelease) {
			// The CRD's schema takes it; only the Deployment API knows a
			// Deployment's pods must restart.
			r.Spec.Template = &corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "app"}}}}
		})
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Failed 0 False/DeploymentRefused"))
		r := getRelease(ns, "shop-v1")(Default)
		Expect(meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionStalled)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady).Message).To(ContainSubstring("restartPolicy"))
		Eventually(eventReasons(ns, "shop-v1")).Should(ContainElement("DeploymentRefused"))

		By("a corrected release")
		Eventually(func(g Gomega) {
			r := getRelease(ns, "shop-v1")(g)
			r.Spec.Template = nil
			g.Expect(k8s.Update(ctx, r)).To(Succeed())
		}).Should(Succeed())
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Progressing 0 False/Progressing"))
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
	})

	DescribeTable("never takes over or deletes a Deployment it did not create, labelled or not, and says so", func(labels map[string]string) {
		foreign := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"run": "x"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"run": "x"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "theirs:1"}}}}},
		}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		newRelease(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Failed 0 False/DeploymentConflict"))
		Consistently(func(g Gomega) {
			d := &appsv1.Deployment{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), d)).To(Succeed())
			g.Expect(d.OwnerReferences).To(BeEmpty())
			g.Expect(d.DeletionTimestamp).To(BeNil())
			g.Expect(d.Spec.Template.Spec.Containers).To(ConsistOf(HaveField("Image", "theirs:1")))
		}, "2s").Should(Succeed())
	},
		Entry("unlabelled", nil),
		Entry("labelled as Switchyard's for this release", map[string]string{
			controller.LabelManagedBy: controller.ManagedByValue, controller.LabelRelease: "shop-v1", controller.LabelApp: "shop"}),
	)

	It("keeps routing everyone else while one release's template cannot be decoded", Serial, func() {
		By("storing a malformed template, as a CRD without a schema for it once accepted")
		crd := &apiextensionsv1.CustomResourceDefinition{}
		crdKey := client.ObjectKey{Name: "appreleases.delivery.switchyard.dev"}
		Expect(k8s.Get(ctx, crdKey, crd)).To(Succeed())
		original := crd.DeepCopy()
		restore := func() {
			Eventually(func(g Gomega) {
				cur := &apiextensionsv1.CustomResourceDefinition{}
				g.Expect(k8s.Get(ctx, crdKey, cur)).To(Succeed())
				cur.Spec.Versions = original.Spec.Versions
				g.Expect(k8s.Update(ctx, cur)).To(Succeed())
			}).Should(Succeed())
		}
		DeferCleanup(restore)
		spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
		spec.Properties["template"] = apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
		crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
		Expect(k8s.Update(ctx, crd)).To(Succeed())
		bad := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AppRelease",
			"metadata": map[string]any{"name": "broken-v1", "namespace": ns},
			"spec": map[string]any{"app": "broken", "environment": "production", "image": "registry.example.com/broken:1",
				"template": map[string]any{"metadata": map[string]any{"annotations": map[string]any{"sidecar.istio.io/inject": true}}}},
		}}
		Eventually(func() error { return k8s.Create(ctx, bad) }).Should(Succeed())

		By("the CRD back as it ships: the object stays stored")
		restore()

		By("everyone else is still taken in and routed, and the broken release says why")
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		Eventually(phaseOf(ns, "broken-v1")).Should(Equal("Failed 0 False/InvalidTemplate"))

		By("and it can still be deleted")
		Expect(k8s.Delete(ctx, bad)).To(Succeed())
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken-v1"}})).Should(BeTrue())
	})

	It("reports a refused write of the app's objects on the releases it holds back, and drains what it can", func() {
		By("an admission policy that refuses a VirtualService of more than two routes in this namespace")
		denyLargeVirtualServices(ns, 2)
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		newRelease(ns, "shop-v2")
		makeAvailable(ns, "shop-v2")
		Eventually(phaseOf(ns, "shop-v1")).Should(Equal("Standby 0 True/Standby"))
		Eventually(phaseOf(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))

		By("a branch whose routes the policy refuses")
		newRelease(ns, "shop-jp12", withBranch("feature-jp12"))
		makeAvailable(ns, "shop-jp12")
		Eventually(phaseOf(ns, "shop-jp12")).Should(Equal("Progressing 0 False/WriteRefused"))
		r := getRelease(ns, "shop-jp12")(Default)
		Expect(meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady).Message).To(ContainSubstring("at most 2 routes"))
		Expect(meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionStalled)).To(BeTrue())
		Eventually(eventReasons(ns, "shop-jp12")).Should(ContainElement("WriteRefused"))
		Expect(phaseOf(ns, "shop-v2")(Default)).To(Equal("Live 100 True/Routed"), "what is served is untouched")

		By("deleting the Standby still drains it: its subset leaves and it goes")
		Expect(k8s.Delete(ctx, getRelease(ns, "shop-v1")(Default))).To(Succeed())
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-v1"}})).Should(BeTrue())
		Expect(subsetsOf(ns)(Default)).NotTo(ContainElement("shop-v1"))
	})

	It("keeps a deleted Deployment's pods until its routes have drained, then runs the release again", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		newRelease(ns, "shop-v2")
		makeAvailable(ns, "shop-v2")
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v2 100"))
		key := client.ObjectKey{Namespace: ns, Name: "shop-v2"}
		d := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, key, d)).To(Succeed())
		Expect(d.Finalizers).To(ContainElement(controller.Finalizer))
		oldUID := d.UID

		By("someone deletes the routed release's Deployment")
		Expect(k8s.Delete(ctx, d)).To(Succeed())
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v1 100"))
		routeLeft := time.Now()
		Expect(k8s.Get(ctx, key, d)).To(Succeed(), "its pods stay while the route drains")
		Expect(d.UID).To(Equal(oldUID))
		Eventually(func(g Gomega) *metav1.Time { return getRelease(ns, "shop-v2")(g).Status.DrainingSince }).ShouldNot(BeNil())

		By("after the drain delay it goes, and the release runs a new one")
		Eventually(func(g Gomega) types.UID {
			g.Expect(k8s.Get(ctx, key, d)).To(Succeed())
			return d.UID
		}).ShouldNot(Equal(oldUID))
		Expect(time.Since(routeLeft)).To(BeNumerically(">=", drainDelay-200*time.Millisecond),
			"the Deployment went before its route had drained")
		makeAvailable(ns, "shop-v2")
		Eventually(routesOf(ns)).Should(ContainElement("env-production: shop-v2 100"))
		Eventually(func(g Gomega) *metav1.Time { return getRelease(ns, "shop-v2")(g).Status.DrainingSince }).Should(BeNil())
	})

	It("drains each retiring release on its own clock, keeping the drain in its status", func() {
		newRelease(ns, "shop-v1")
		makeAvailable(ns, "shop-v1")
		newRelease(ns, "shop-jp12", withBranch("feature-jp12"))
		makeAvailable(ns, "shop-jp12")
		Eventually(routesOf(ns)).Should(ContainElement("branch-production.feature-jp12: shop-jp12 100"))

		Expect(k8s.Delete(ctx, getRelease(ns, "shop-jp12")(Default))).To(Succeed())
		var since *metav1.Time
		Eventually(func(g Gomega) *metav1.Time {
			since = getRelease(ns, "shop-jp12")(g).Status.DrainingSince
			return since
		}).ShouldNot(BeNil())
		Expect(routesOf(ns)(Default)).NotTo(ContainElement(ContainSubstring("jp12")))
		Expect(subsetsOf(ns)(Default)).To(ContainElement("shop-jp12"), "the subset stays while its route drains")

		By("churn in the app does not hold the drain")
		newRelease(ns, "shop-dp34", withBranch("bugfix-dp34"))
		makeAvailable(ns, "shop-dp34")
		Eventually(gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-jp12"}})).Should(BeTrue())
		Expect(time.Now()).To(BeTemporally(">=", since.Add(drainDelay)), "its subset left before its drain ended")
	})
})

// setAvailable plays the deployment controller: n pods available, and the
// Available condition as given.
func setAvailable(ns, name string, n int32, available bool) {
	setStatus(ns, name, func(st *appsv1.DeploymentStatus) {
		st.AvailableReplicas, st.ReadyReplicas = n, n
		cond := corev1.ConditionFalse
		if available {
			cond = corev1.ConditionTrue
		}
		st.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: cond,
			Reason: "MinimumReplicas", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	})
}

// setStatus changes a release's Deployment's status as the deployment controller would.
func setStatus(ns, name string, change func(*appsv1.DeploymentStatus)) {
	Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
		change(&d.Status)
		g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
	}).Should(Succeed())
}

// eventReasons are the reasons of the events about a release.
func eventReasons(ns, name string) func(Gomega) []string {
	return func(g Gomega) []string {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Name == name {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

// denyLargeVirtualServices installs a ValidatingAdmissionPolicy, Kubernetes'
// own CEL admission, refusing VirtualServices of more than max routes in ns.
func denyLargeVirtualServices(ns string, max int) {
	name := "max-routes-" + ns
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{"networking.istio.io"}, APIVersions: []string{"*"},
						Resources: []string{"virtualservices"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: "!has(object.spec.http) || size(object.spec.http) <= " + strconv.Itoa(max),
				Message:    "a VirtualService here may have at most " + strconv.Itoa(max) + " routes",
			}},
		},
	}
	Expect(k8s.Create(ctx, policy)).To(Succeed())
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}},
	}
	Expect(k8s.Create(ctx, binding)).To(Succeed())
	DeferCleanup(func() {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, binding))).To(Succeed())
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, policy))).To(Succeed())
	})
	By("waiting for the policy to be in force")
	Eventually(func() error {
		probe := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}}
		for range max + 1 {
			probe.Spec.Http = append(probe.Spec.Http, &networking.HTTPRoute{Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: "probe"}}}})
		}
		err := k8s.Create(ctx, probe, client.DryRunAll)
		if err == nil {
			return errors.New("the policy is not in force yet")
		}
		return nil
	}).Should(Succeed())
}
