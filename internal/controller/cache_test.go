package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/metrics"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

func TestSlimDeploymentKeepsWhatTheControllersRead(t *testing.T) {
	rel := &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: "shop", UID: "uid-1"},
		Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: "production", Image: "registry.example.com/shop:v1"}}
	d := MakeDeployment(rel)
	d.Generation = 3
	d.Labels["team"] = "checkout"
	d.Annotations["deployment.kubernetes.io/revision"] = "3"
	t0 := metav1.NewTime(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	later := metav1.NewTime(t0.Add(time.Minute))
	d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: releaseFieldManager, Operation: metav1.ManagedFieldsOperationApply, Time: &t0},
		{Manager: "kubectl-set", Operation: metav1.ManagedFieldsOperationUpdate, Time: &later, FieldsV1: fieldsV1(`{"f:spec":{"f:template":{}}}`)}}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", Message: "long"},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "long"}}}
	out, err := slimDeployment(d)
	if err != nil {
		t.Fatal(err)
	}
	slim, ok := out.(*deploymentRecord)
	if !ok {
		t.Fatalf("the cache keeps a %T, want a *deploymentRecord", out)
	}
	// deploymentState is, by definition, all that the app controller reads.
	want := deploymentState{Owner: "uid-1", Finalized: true, SpecHash: d.Annotations[annotationSpecHash], Generation: 3,
		ObservedGeneration: 3, Replicas: 1, StatusReplicas: 2, Updated: 2, AvailableReplicas: 1, Available: true, Failed: true}
	if got := stateOf(slim); got != want {
		t.Errorf("the cached Deployment lost what the controllers read: %+v, want %+v", got, want)
	}
	if !runs(slim, rel) || slim.App != "shop" || slim.Release != "shop-v1" || slim.EditedBy != "kubectl-set" {
		t.Errorf("the record lost its app, release or editor: %+v", slim)
	}
	if slim.GetLabels() != nil || slim.GetAnnotations() != nil || slim.GetManagedFields() != nil || slim.GetOwnerReferences() != nil {
		t.Errorf("the record keeps labels, annotations, managed fields or owner references: %+v", slim.recordMeta)
	}
	if slim.GetName() != d.Name || slim.GetNamespace() != d.Namespace || slim.GetUID() != d.UID || slim.GetResourceVersion() != d.ResourceVersion ||
		slim.GetGeneration() != d.Generation || !slices.Equal(slim.GetFinalizers(), d.Finalizers) {
		t.Errorf("the record reads as another object: %+v", slim.recordMeta)
	}
	if size := unsafe.Sizeof(*slim); size > 224 {
		t.Errorf("a record takes %d bytes before its strings", size)
	}
	// client-go may pass an object through its transform twice.
	if again, _ := slimDeployment(slim); again != slim {
		t.Errorf("the transform is not idempotent")
	}
	copied := slim.DeepCopyObject().(*deploymentRecord)
	copied.Finalizers[0] = "other"
	if stateOf(slim) != want || copied.Release != "shop-v1" {
		t.Errorf("a deep copy differs, or shares its finalizers")
	}
	d.Status.Conditions = nil
	d.Generation = 4
	if stateOf(recordOf(d)).rolledOut(d.Annotations[annotationSpecHash]) {
		t.Errorf("a Deployment whose controller has not seen its generation reads as rolled out")
	}
}

func TestEditedBy(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	later := metav1.NewTime(t0.Add(time.Minute))
	ours := metav1.ManagedFieldsEntry{Manager: releaseFieldManager, Operation: metav1.ManagedFieldsOperationApply, Time: &t0,
		FieldsV1: fieldsV1(`{"f:spec":{"f:replicas":{}}}`)}
	entry := func(manager, subresource string, at *metav1.Time, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, Subresource: subresource,
			Time: at, FieldsV1: fieldsV1(fields)}
	}
	cases := []struct {
		name    string
		entries []metav1.ManagedFieldsEntry
		want    string
	}{
		{"only Switchyard wrote it", []metav1.ManagedFieldsEntry{ours}, ""},
		{"the deployment controller writes status and annotations, never the spec",
			[]metav1.ManagedFieldsEntry{ours, entry("kube-controller-manager", "status", &later, `{"f:status":{}}`),
				entry("kube-controller-manager", "", &later, `{"f:metadata":{"f:annotations":{}}}`)}, ""},
		{"kubectl set image after Switchyard's apply",
			[]metav1.ManagedFieldsEntry{ours, entry("kubectl-set", "", &later, `{"f:spec":{"f:template":{}}}`)}, "kubectl-set"},
		{"kubectl scale through the scale subresource",
			[]metav1.ManagedFieldsEntry{ours, entry("kubectl", "scale", &later, `{"f:spec":{"f:replicas":{}}}`)}, "kubectl"},
		{"an edit in the same second as the apply still counts",
			[]metav1.ManagedFieldsEntry{ours, entry("kubectl-edit", "", &t0, `{"f:spec":{"f:template":{}}}`)}, "kubectl-edit"},
		{"a HorizontalPodAutoscaler's scale (kube-controller-manager) is no hand edit",
			[]metav1.ManagedFieldsEntry{ours, entry("kube-controller-manager", "scale", &later, `{"f:spec":{"f:replicas":{}}}`)}, ""},
		{"kubectl rollout restart alone is no change of what the pods run",
			[]metav1.ManagedFieldsEntry{ours, entry("kubectl-rollout", "", &later,
				`{"f:spec":{"f:template":{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/restartedAt":{}}}}}}`)}, ""},
		{"an edit that Switchyard's later update put back no longer counts",
			[]metav1.ManagedFieldsEntry{{Manager: releaseFieldManager, Operation: metav1.ManagedFieldsOperationUpdate, Time: &later},
				entry("kubectl-edit", "", &t0, `{"f:spec":{"f:paused":{}}}`)}, ""},
		{"an edit that Switchyard's later apply put back no longer counts",
			[]metav1.ManagedFieldsEntry{{Manager: releaseFieldManager, Operation: metav1.ManagedFieldsOperationApply, Time: &later},
				entry("kubectl-edit", "", &t0, `{"f:spec":{"f:minReadySeconds":{}}}`)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := editedBy(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{ManagedFields: tc.entries}}); got != tc.want {
				t.Errorf("editedBy = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReleaseUID(t *testing.T) {
	rel := &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: "shop", UID: "uid-1"},
		Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: "production", Image: "registry.example.com/shop:v1"}}
	current := MakeDeployment(rel)
	// Written by the version before: an owner reference, no annotation, no finalizer.
	before := current.DeepCopy()
	delete(before.Annotations, annotationReleaseUID)
	before.Finalizers = nil
	before.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AppRelease",
		Name: "shop-v1", UID: "uid-1", Controller: ptr.To(true)}}
	foreign := current.DeepCopy()
	delete(foreign.Labels, LabelManagedBy)
	other := &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: "shop", UID: "uid-2"}}
	for _, tc := range []struct {
		name string
		d    *appsv1.Deployment
		rel  *v1alpha1.AppRelease
		want bool
	}{
		{"its own Deployment", current, rel, true},
		{"a Deployment written by the previous version, owned by reference", before, rel, true},
		{"a Deployment of an earlier release of the same name", current, other, false},
		{"a Deployment Switchyard did not write", foreign, rel, false},
	} {
		if got := runs(recordOf(tc.d), tc.rel); got != tc.want {
			t.Errorf("%s: runs = %v, want %v", tc.name, got, tc.want)
		}
	}
	if stateOf(recordOf(before)).Owner != "uid-1" {
		t.Errorf("a Deployment of the previous version reads as no release's: routing would drop it on upgrade")
	}
}

func TestCachedReleaseKeepsTheDeploymentHash(t *testing.T) {
	full := &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: "shop", UID: "uid-1",
		// Argo CD's tracking label; kubectl apply's copy of the whole
		// manifest, template included.
		Labels:      map[string]string{"app.kubernetes.io/instance": "shop"},
		Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"spec":{"template":{}}}`}},
		Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: "production", Image: "registry.example.com/shop:v1",
			Template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app",
				Env: []corev1.EnvVar{{Name: "MODE", Value: "a"}}}}}}}}
	want := MakeDeployment(full).Annotations[annotationSpecHash]
	out, err := withoutTemplate(full.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	cached := out.(*v1alpha1.AppRelease)
	if cached.Spec.Template != nil || cached.Annotations != nil || cached.Labels != nil {
		t.Fatalf("the cached release keeps its template, annotations or labels")
	}
	if got := desiredHash(cached); got != want {
		t.Errorf("desired hash from the cached release %s, from the full one %s", got, want)
	}
	// An informer may transform an object twice (a restart's full list).
	if out, _ := withoutTemplate(cached); desiredHash(out.(*v1alpha1.AppRelease)) != want {
		t.Errorf("transformed twice, the cached release's desired hash changed")
	}
	changed := full.DeepCopy()
	changed.Spec.Template.Spec.Containers[0].Env[0].Value = "b"
	out, _ = withoutTemplate(changed)
	if desiredHash(out.(*v1alpha1.AppRelease)) == want {
		t.Errorf("a changed template does not change the desired hash")
	}
}

func fieldsV1(raw string) *metav1.FieldsV1 {
	f := &metav1.FieldsV1{}
	f.SetRawString(raw)
	return f
}

func TestCachedVirtualServiceComparesByTheWholeSpec(t *testing.T) {
	opts := routing.Options{BranchHeader: "x-branch", Gateway: "istio-system/ingressgateway", MeshEnvironment: "production"}
	rels := []routing.Release{
		{Name: "shop-v1", UID: "u1", Environment: "production", Hosts: []string{"shop.example.com"}, Accepted: true, HasDeployment: true, Available: true},
		{Name: "shop-jp12", UID: "u2", Environment: "staging", Branch: "feature-jp12", Hosts: []string{"staging.example.com"}, Accepted: true, HasDeployment: true, Available: true},
	}
	d := routing.Decide(rels, opts)
	spec := routing.MakeVirtualService("shop", "shop", d, opts)
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop",
		// An author's own annotation of the cache's name changes nothing.
		Annotations:   map[string]string{annotationCachedSpecHash: routing.SpecHash(spec)},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: appFieldManager}}}}
	proto.Merge(&vs.Spec, spec)
	vs.Spec.Http[0].Match = nil // another writer's change
	if _, err := compactVirtualService(vs); err != nil {
		t.Fatal(err)
	}
	if sameSpec(vs, routing.SpecHash(spec)) {
		t.Errorf("a VirtualService changed by someone else compares as the desired one")
	}
	proto.Reset(&vs.Spec)
	proto.Merge(&vs.Spec, spec)
	compact(vs)
	if !sameSpec(vs, routing.SpecHash(spec)) {
		t.Errorf("the cached copy of the desired VirtualService compares as another")
	}
	if whole, _ := json.Marshal(spec); vs.Annotations[metrics.SpecBytesAnnotation] != strconv.Itoa(len(whole)) {
		t.Errorf("the cached VirtualService notes %s bytes, the whole spec has %d", vs.Annotations[metrics.SpecBytesAnnotation], len(whole))
	}
	// An informer may transform an object twice (a restart's full list).
	if _, err := compactVirtualService(vs); err != nil || !sameSpec(vs, routing.SpecHash(spec)) {
		t.Errorf("compacted twice, the desired VirtualService compares as another (%v)", err)
	}
	cached := vsSpec(vs)
	if vs.ManagedFields != nil || len(vs.Spec.Http) > 0 || len(cached.Hosts) > 0 || len(cached.Http[0].Match) > 0 && cached.Http[0].Match[0].Headers != nil {
		t.Errorf("the cached VirtualService keeps what no code reads: %v", vs)
	}
	if !reflect.DeepEqual(routing.CurrentOf(cached), routing.CurrentOf(spec)) ||
		!reflect.DeepEqual(routing.RoutedSubsets(cached), routing.RoutedSubsets(spec)) {
		t.Errorf("the cached VirtualService reads otherwise than the whole")
	}
	if b, a := proto.Size(spec), len(vs.Annotations[annotationCachedRoutes]); a*3 > b {
		t.Errorf("the cached spec is %d bytes encoded, the whole %d: not compact", a, b)
	}
}

func TestControllersWaitForTheDeploymentCache(t *testing.T) {
	// An API server that never answers: the informers never list.
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	c, err := newDeploymentCache(cfg, http.DefaultClient, []string{"shop", "pay"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Start(ctx) }()
	srcs := c.sources(func(d *deploymentRecord) (client.ObjectKey, bool) { return client.ObjectKeyFromObject(d), true })
	if len(srcs) != 2 {
		t.Fatalf("%d sources for 2 namespaces", len(srcs))
	}
	for _, src := range srcs {
		syncing, ok := src.(source.SyncingSource)
		if !ok {
			t.Fatalf("%T does not make a controller wait for the Deployments' list: its first rebuilds would find none and unroute every release", src)
		}
		// A controller gives its sources CacheSyncTimeout; here a short one.
		waitCtx, stop := context.WithTimeout(ctx, 200*time.Millisecond)
		err := syncing.WaitForSync(waitCtx)
		stop()
		if err == nil {
			t.Fatalf("WaitForSync returned without a list")
		}
	}
	if c.get(types.NamespacedName{Namespace: "shop", Name: "shop-v1"}) != nil || len(c.ofApp(types.NamespacedName{Namespace: "other", Name: "shop"})) != 0 {
		t.Fatalf("records from nowhere")
	}
}

func TestCachedSharedObjectsCompareOwnersByDigest(t *testing.T) {
	ref := func(name, uid string) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AppRelease", Name: name, UID: types.UID(uid)}
	}
	owners := []metav1.OwnerReference{ref("shop-v1", "uid-1"), ref("shop-v2", "uid-2")}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop", Labels: managedLabels("shop"),
		OwnerReferences: []metav1.OwnerReference{owners[1], owners[0]},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: appFieldManager}}}}
	out, err := slimShared(svc.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	cached := out.(*corev1.Service)
	if cached.OwnerReferences != nil || cached.ManagedFields != nil {
		t.Fatalf("the cached Service keeps its owner references or managed fields")
	}
	// client-go may pass an object through its transform twice.
	again, _ := slimShared(cached.DeepCopy())
	if again.(*corev1.Service).Annotations[annotationCachedOwners] != cached.Annotations[annotationCachedOwners] {
		t.Fatalf("the transform is not idempotent")
	}
	controller := ref("shop-v1", "uid-1")
	controller.Controller = ptr.To(true)
	for _, tc := range []struct {
		name   string
		owners []metav1.OwnerReference
		want   bool
	}{
		{"the same owners, in any order", owners, true},
		{"one owner more", append(slices.Clone(owners), ref("shop-v3", "uid-3")), false},
		{"one owner less", owners[:1], false},
		{"an owner renamed (a release of the same uid? never; but compared)", []metav1.OwnerReference{ref("shop-v9", "uid-1"), owners[1]}, false},
	} {
		if got := sameMeta(cached, "shop", tc.owners); got != tc.want {
			t.Errorf("%s: sameMeta = %v, want %v", tc.name, got, tc.want)
		}
		// A copy as the API server returns it (references, no digest)
		// compares the same.
		if got := sameMeta(svc, "shop", tc.owners); got != tc.want {
			t.Errorf("%s, uncached: sameMeta = %v, want %v", tc.name, got, tc.want)
		}
	}
	// An owner made controller by someone else is no longer as asked.
	taken := svc.DeepCopy()
	taken.OwnerReferences = []metav1.OwnerReference{controller, owners[1]}
	if sameMeta(taken, "shop", owners) {
		t.Errorf("uncached: an owner made controller compares the same")
	}
	if out, _ := slimShared(taken); sameMeta(out.(*corev1.Service), "shop", owners) {
		t.Errorf("cached: an owner made controller compares the same")
	}
}

func TestCachedDestinationRuleReadsAsTheWhole(t *testing.T) {
	opts := routing.Options{BranchHeader: "x-branch", Gateway: "istio-system/ingressgateway", MeshEnvironment: "production"}
	rels := []routing.Release{
		{Name: "shop-v1", UID: "u1", Environment: "production", Hosts: []string{"shop.example.com"}, Accepted: true, HasDeployment: true, Available: true},
		{Name: "shop-jp12", UID: "u2", Environment: "staging", Branch: "feature-jp12", Hosts: []string{"staging.example.com"}, Accepted: true, HasDeployment: true, Available: true},
	}
	spec := routing.MakeDestinationRule("shop", "shop", routing.Decide(rels, opts))
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop", Labels: managedLabels("shop")}}
	proto.Merge(&dr.Spec, spec)
	whole := dr.DeepCopy()
	if _, err := slimShared(dr); err != nil {
		t.Fatal(err)
	}
	if len(dr.Spec.Subsets) != 0 || !proto.Equal(drSpec(dr), spec) {
		t.Fatalf("the cached DestinationRule holds its subsets decoded, or reads otherwise than the whole")
	}
	// client-go may pass an object through its transform twice.
	if _, err := slimShared(dr); err != nil || !proto.Equal(drSpec(dr), spec) {
		t.Fatalf("transformed twice, it reads otherwise (%v)", err)
	}
	if !proto.Equal(drSpec(whole), spec) {
		t.Fatalf("an uncached DestinationRule reads otherwise than its spec")
	}
	if b, err := unpack(dr.Annotations[annotationCachedSpec]); err != nil || len(b) != proto.Size(spec) {
		t.Fatalf("encoded in %d bytes (%v), the spec is %d", len(b), err, proto.Size(spec))
	}
}

// The cached forms of a 100-branch app's VirtualService and DestinationRule
// are deflated: their repeated hosts, header names and labels cost once.
func TestCachedSpecsAreDeflated(t *testing.T) {
	opts := routing.Options{BranchHeader: "x-branch", Gateway: "istio-system/ingressgateway", MeshEnvironment: "production", MaxRoutes: 1000}
	rels := []routing.Release{{Name: "shop-v1", UID: "u1", Environment: "production", Hosts: []string{"shop.example.com"},
		Accepted: true, HasDeployment: true, Available: true}}
	for i := range 100 {
		rels = append(rels, routing.Release{Name: fmt.Sprintf("shop-b%04d", i), UID: types.UID(fmt.Sprint("u-", i)), Environment: "staging",
			Branch: fmt.Sprintf("feature-%04d", i), Hosts: []string{"staging.example.com"}, Accepted: true, HasDeployment: true, Available: true})
	}
	d := routing.Decide(rels, opts)
	vsWhole := routing.MakeVirtualService("shop", "shop", d, opts)
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop"}}
	proto.Merge(&vs.Spec, vsWhole)
	compact(vs)
	encoded := proto.Size(routing.CompactVirtualService(vsWhole))
	if cached := len(vs.Annotations[annotationCachedRoutes]); cached*5 > encoded {
		t.Errorf("the cached routes take %d bytes, encoded %d: not deflated", cached, encoded)
	}
	if !proto.Equal(vsSpec(vs), routing.CompactVirtualService(vsWhole)) {
		t.Errorf("the cached routes read otherwise than the compact form")
	}
	drWhole := routing.MakeDestinationRule("shop", "shop", d)
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop"}}
	proto.Merge(&dr.Spec, drWhole)
	if _, err := slimShared(dr); err != nil {
		t.Fatal(err)
	}
	if cached := len(dr.Annotations[annotationCachedSpec]); cached*5 > proto.Size(drWhole) {
		t.Errorf("the cached DestinationRule takes %d bytes, encoded %d: not deflated", cached, proto.Size(drWhole))
	}
	if !proto.Equal(drSpec(dr), drWhole) {
		t.Errorf("the cached DestinationRule reads otherwise than the whole")
	}
	if _, err := unpack("not deflated"); err == nil {
		t.Errorf("unpack of data pack did not make: no error")
	}
	// A cached form that does not decode never reads as the emptied spec
	// (no routes, no subsets): loadShared refuses it.
	vs.Annotations[annotationCachedRoutes] = "not deflated"
	dr.Annotations[annotationCachedSpec] = "not deflated"
	if vsSpec(vs) != nil || drSpec(dr) != nil {
		t.Errorf("a cached form that does not decode reads as a spec")
	}
}
