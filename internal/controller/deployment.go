package controller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

const (
	// containerName is the container that runs the release's image.
	containerName = "app"
	// portName is the container port the app's Service targets by name, so each
	// release may listen on its own port number.
	portName = "http"
	// annotationSpecHash records the desired Deployment a write carried, so an
	// unchanged release is never written again.
	annotationSpecHash = "switchyard.dev/spec-hash"
	// annotationReleaseUID names the uid of the AppRelease a Deployment runs:
	// with the LabelRelease label, what makes it that release's. (No owner
	// reference: a foreground delete of the release would make the garbage
	// collector cascade to the pods at once, while they still take traffic.)
	annotationReleaseUID = "switchyard.dev/release-uid"
	// annotationCachedSpecHash is set by the cache (never written) on a
	// VirtualService whose spec it compacted (compactVirtualService): the
	// whole spec's routing.SpecHash, so an unchanged one is never written
	// again.
	annotationCachedSpecHash = "switchyard.dev/cached-spec-hash"
	// annotationCachedRoutes is set by the cache (never written) on a
	// VirtualService it compacted: the compact spec, protobuf-encoded.
	annotationCachedRoutes = "switchyard.dev/cached-routes"
	// annotationCachedSpec is set by the cache (never written) on a
	// DestinationRule: its whole spec, protobuf-encoded.
	annotationCachedSpec = "switchyard.dev/cached-spec"
	// annotationCachedOwners is set by the cache (never written) on an
	// app's shared object whose owner references it dropped: their
	// ownersDigest (withoutOwners).
	annotationCachedOwners = "switchyard.dev/cached-owners"
	// renderVersion changes whenever MakeDeployment renders a release
	// differently, so an upgraded operator re-applies every Deployment once.
	renderVersion = "3"
)

// MakeDeployment is the desired Deployment of a release: its pod template is
// spec.template with the generated labels, image and port laid over it.
func MakeDeployment(r *v1alpha1.AppRelease) *appsv1.Deployment {
	subset := routing.SubsetName(r.Name)
	selector := map[string]string{PodLabelApp: r.Spec.App, routing.VersionLabel: subset}

	var tmpl corev1.PodTemplateSpec
	if r.Spec.Template != nil {
		r.Spec.Template.DeepCopyInto(&tmpl)
	}
	tmpl.CreationTimestamp = metav1.Time{}
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	for k, v := range selector {
		tmpl.Labels[k] = v
	}
	tmpl.Labels[LabelManagedBy] = ManagedByValue
	// The pods are callers of the app's environment and branch: other apps'
	// VirtualServices route their calls by these labels (Istio sourceLabels).
	delete(tmpl.Labels, routing.BranchLabel)
	for k, v := range routing.CallerLabels(r.Spec.Environment, r.Spec.Branch) {
		tmpl.Labels[k] = v
	}
	tmpl.Spec.Containers = withAppContainer(tmpl.Spec.Containers, r.Spec.Image, r.Spec.Port)

	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      r.Name,
			Namespace: r.Namespace,
			// The pods go only once their routes have drained, whoever
			// deletes the Deployment: the app controller removes it then. The
			// app controller also deletes it, once drained, when its release
			// is deleted or superseded (it has no owner reference: see
			// annotationReleaseUID).
			Finalizers: []string{Finalizer},
			Labels: map[string]string{
				LabelManagedBy: ManagedByValue, LabelApp: r.Spec.App, LabelRelease: r.Name,
			},
			Annotations: map[string]string{annotationReleaseUID: string(r.UID)},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(ptr.Deref(r.Spec.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: tmpl,
		},
	}
	d.Annotations[annotationSpecHash] = desiredHash(r)
	return d
}

// desiredHash identifies the Deployment MakeDeployment renders for a
// release, from the release's fields that feed it and its template's hash: a
// cached release (whose template the cache dropped, keeping its hash) and the
// full one read from the API server give the same.
func desiredHash(r *v1alpha1.AppRelease) string {
	b, _ := json.Marshal(struct {
		Render, Namespace, Name, App, Image, Template string
		UID                                           types.UID
		Port, Replicas                                int32
	}{renderVersion, r.Namespace, r.Name, r.Spec.App, r.Spec.Image, templateHashOf(r),
		r.UID, r.Spec.Port, ptr.Deref(r.Spec.Replicas, 1)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// templateHashOf is the hash of a release's spec.template: the cache's note of
// it on a cached release, else computed.
func templateHashOf(r *v1alpha1.AppRelease) string {
	if r.Spec.TemplateHash != "" && r.Spec.Template == nil {
		return r.Spec.TemplateHash
	}
	return templateHash(r.Spec.Template)
}

func templateHash(t *corev1.PodTemplateSpec) string {
	if t == nil {
		return ""
	}
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// withoutTemplate is the cache's transform of an AppRelease: its template
// (read only when its Deployment is written, then from the API server) is
// dropped and its hash noted in spec.TemplateHash (never serialized); its
// labels, annotations and managedFields go too (no code reads a release's
// labels or annotations from the cache; GitOps tools add several of each).
func withoutTemplate(obj any) (any, error) {
	r, ok := obj.(*v1alpha1.AppRelease)
	if !ok || (r.Spec.Template == nil && r.Spec.TemplateHash != "") {
		// Transformed already (an informer may pass an object through its
		// transform twice: client-go asks transforms to be idempotent).
		return obj, nil
	}
	r.ManagedFields = nil
	// No code reads a release's annotations: kubectl's
	// last-applied-configuration (the whole manifest, template included) and
	// every other go.
	r.Annotations = nil
	r.Labels = nil
	r.Spec.TemplateHash = templateHash(r.Spec.Template)
	r.Spec.Template = nil
	internRelease(r)
	return r, nil
}

// internRelease makes a cached release share the strings that releases of
// a namespace, an app or a state repeat (unique.Make): kind and API version,
// namespace, app, environment, hosts, finalizers, phase, and its conditions' type,
// status and reason. Names, images, branches and messages, mostly one
// release's own, are left alone (a message its conditions repeat is kept once).
func internRelease(r *v1alpha1.AppRelease) {
	in := func(s string) string { return unique.Make(s).Value() }
	r.Kind, r.APIVersion = in(r.Kind), in(r.APIVersion)
	r.Namespace = in(r.Namespace)
	if slices.Equal(r.Finalizers, ourFinalizers) {
		r.Finalizers = ourFinalizers
	}
	r.Spec.App, r.Spec.Environment = in(r.Spec.App), in(r.Spec.Environment)
	for i := range r.Spec.Hosts {
		r.Spec.Hosts[i] = in(r.Spec.Hosts[i])
	}
	r.Status.Phase = v1alpha1.Phase(in(string(r.Status.Phase)))
	switch conds := r.Status.Conditions; {
	case len(conds) == 0:
		r.Status.Conditions = nil
	case cap(conds) > len(conds):
		// The JSON decoder grows a slice by doubling: 3 conditions sit in
		// room for 4 (96 bytes each).
		r.Status.Conditions = append(make([]metav1.Condition, 0, len(conds)), conds...)
	}
	for i := range r.Status.Conditions {
		c := &r.Status.Conditions[i]
		c.Type, c.Reason = in(c.Type), in(c.Reason)
		c.Status = metav1.ConditionStatus(in(string(c.Status)))
		// Reconciling and Stalled repeat Ready's message (setStatus): one string.
		for _, before := range r.Status.Conditions[:i] {
			if before.Message == c.Message {
				c.Message = before.Message
				break
			}
		}
	}
}

// withAppContainer sets the image and named port of the "app" container,
// adding it first when the template has none.
func withAppContainer(cs []corev1.Container, image string, port int32) []corev1.Container {
	i := -1
	for j := range cs {
		if cs[j].Name == containerName {
			i = j
		}
	}
	if i < 0 {
		cs = append([]corev1.Container{{Name: containerName}}, cs...)
		i = 0
	}
	c := &cs[i]
	c.Image = image
	ports := []corev1.ContainerPort{{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	for _, p := range c.Ports {
		if p.Name != portName && p.ContainerPort != port {
			ports = append(ports, p)
		}
	}
	c.Ports = ports
	return cs
}

// deploymentState is everything the app controller reads of a Deployment:
// the routing decision, the status and the watch predicate all derive from
// it, so no input can change without a rebuild (a predicate that passed fewer
// fields once left a release routed after its last pod was gone).
type deploymentState struct {
	// Owner is the uid of the AppRelease it runs (annotationReleaseUID).
	Owner types.UID
	// Deleting: the Deployment has a deletion timestamp.
	Deleting bool
	// Finalized: it still carries Switchyard's drain finalizer.
	Finalized bool
	// SpecHash is the annotationSpecHash of the desired Deployment it runs.
	SpecHash string
	// Generation, ObservedGeneration and the replica counts tell a finished
	// rollout; Available and Failed are its conditions.
	Generation, ObservedGeneration                       int64
	Replicas, StatusReplicas, Updated, AvailableReplicas int32
	Available, Failed                                    bool
}

// stateOf reads a Deployment's deploymentState.
func stateOf(d *deploymentRecord) deploymentState {
	return deploymentState{
		Owner:              d.Owner,
		Deleting:           !d.DeletionTimestamp.IsZero(),
		Finalized:          slices.Contains(d.Finalizers, Finalizer),
		SpecHash:           d.SpecHash,
		Generation:         d.Generation,
		ObservedGeneration: d.ObservedGeneration,
		Replicas:           d.Replicas,
		StatusReplicas:     d.StatusReplicas,
		Updated:            d.UpdatedReplicas,
		AvailableReplicas:  d.AvailableReplicas,
		Available:          d.Available,
		Failed:             d.Failed,
	}
}

// deploymentRecord is what the operator's Deployment cache
// (deploymentCache) keeps of a Deployment, in place of the Deployment
// (recordOf makes it; the informers' transform slimDeployment calls it):
// its name, namespace, uid, resource version, generation, deletion and
// finalizers, what Switchyard's labels and annotations say, its replica
// count and the status deploymentState reads; no maps (a small Go map is
// some 300 bytes). A typed Deployment is 1,232 bytes before any field is
// set (its pod template is a value); a record is 224 bytes (recordMeta in
// place of an ObjectMeta), about 350 with its strings: at 10,000 releases 20 MB
// less of the operator's heap.
// It is a client.Object for the informers' event handlers (without labels
// or annotations: map it by its fields), but not in the scheme: read it
// through deploymentCache, and write its Deployment through object().
type deploymentRecord struct {
	recordMeta
	// App and Release are its LabelApp and LabelRelease labels.
	App, Release string
	// Owner is the uid of the AppRelease it runs (releaseUID); "" for a
	// Deployment that is no release's.
	Owner types.UID
	// SpecHash is its annotationSpecHash; EditedBy who else changed its
	// spec since Switchyard's last apply (editedBy, from managedFields).
	SpecHash, EditedBy string
	// Replicas is spec.replicas (1 when unset).
	Replicas int32
	// ObservedGeneration and the replica counts are the status's.
	ObservedGeneration                                 int64
	StatusReplicas, UpdatedReplicas, AvailableReplicas int32
	// Available: the Available condition is True. Failed: the Progressing
	// condition is False for ProgressDeadlineExceeded.
	Available, Failed bool
}

// GetObjectKind: a record carries no type metadata.
func (d *deploymentRecord) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject copies the record.
func (d *deploymentRecord) DeepCopyObject() runtime.Object {
	c := *d
	c.recordMeta = d.deepCopy()
	return &c
}

// object is a Deployment of the record's name, namespace, uid, resource
// version and finalizers, for a delete, a patch of its finalizers or an
// event's reference.
func (d *deploymentRecord) object() *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, UID: d.UID,
		ResourceVersion: d.ResourceVersion, Finalizers: slices.Clone(d.Finalizers)}}
}

// ourFinalizers is the finalizers of a Deployment that carries
// Switchyard's alone, shared by the records of all such (never changed).
var ourFinalizers = []string{Finalizer}

// recordOf is a Deployment's record. Strings every record of a namespace or
// an app repeats are interned (unique.Make).
func recordOf(d *appsv1.Deployment) *deploymentRecord {
	r := &deploymentRecord{
		recordMeta: recordMeta{Name: d.Name, Namespace: unique.Make(d.Namespace).Value(), UID: d.UID,
			ResourceVersion: d.ResourceVersion, Generation: d.Generation, DeletionTimestamp: d.DeletionTimestamp,
			Finalizers: d.Finalizers},
		App:                unique.Make(d.Labels[LabelApp]).Value(),
		Release:            d.Labels[LabelRelease],
		Owner:              releaseUID(d),
		SpecHash:           d.Annotations[annotationSpecHash],
		EditedBy:           editedBy(d),
		Replicas:           ptr.Deref(d.Spec.Replicas, 1),
		ObservedGeneration: d.Status.ObservedGeneration,
		StatusReplicas:     d.Status.Replicas,
		UpdatedReplicas:    d.Status.UpdatedReplicas,
		AvailableReplicas:  d.Status.AvailableReplicas,
	}
	if r.Release == r.Name {
		r.Release = r.Name // one string, not two
	}
	if slices.Equal(r.Finalizers, ourFinalizers) {
		r.Finalizers = ourFinalizers
	}
	for _, c := range d.Status.Conditions {
		switch c.Type {
		case appsv1.DeploymentAvailable:
			r.Available = c.Status == corev1.ConditionTrue
		case appsv1.DeploymentProgressing:
			r.Failed = c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded"
		}
	}
	return r
}

// available: the Deployment reports Available for its current spec and has a
// pod up, and is not being deleted. It admits a release to routing; once
// routed, a release stays routable while any of its pods is up (a Deployment
// reports itself unavailable as soon as one pod too many is down, and during
// every rollout).
func (st deploymentState) available() bool {
	return !st.Deleting && st.ObservedGeneration >= st.Generation && st.AvailableReplicas >= 1 && st.Available
}

// podsUp: at least one pod is available and the Deployment is not being deleted.
func (st deploymentState) podsUp() bool {
	return !st.Deleting && st.AvailableReplicas > 0
}

// runs tells whether a Deployment is the one Switchyard runs for release rel.
func runs(d *deploymentRecord, rel *v1alpha1.AppRelease) bool {
	return d.Release == rel.Name && d.Owner != "" && d.Owner == rel.UID
}

// releaseUID is the uid of the AppRelease a Switchyard Deployment runs: its
// annotation, or, for a Deployment written before it had one, its controller
// owner reference (the release controller then applies the annotation, the
// finalizer and no owner reference). "" for any other Deployment.
func releaseUID(d *appsv1.Deployment) types.UID {
	if d.Labels[LabelManagedBy] != ManagedByValue {
		return ""
	}
	if uid := d.Annotations[annotationReleaseUID]; uid != "" {
		return types.UID(uid)
	}
	if ref := metav1.GetControllerOf(d); ref != nil && ref.Kind == "AppRelease" && ref.APIVersion == v1alpha1.GroupVersion.String() {
		return ref.UID
	}
	return ""
}

// rolledOut: the Deployment runs the release's current spec (wantHash) on
// all its replicas, so Ready can say the release is as asked.
func (st deploymentState) rolledOut(wantHash string) bool {
	return st.SpecHash == wantHash && st.ObservedGeneration >= st.Generation &&
		st.Updated == st.Replicas && st.StatusReplicas == st.Updated
}

// onlyRestart: the fields are kubectl rollout restart's template annotation
// alone, a restart of the pods and no change of what they run.
func onlyRestart(fields []byte) bool {
	var f map[string]any
	if json.Unmarshal(fields, &f) != nil {
		return false
	}
	var leaves []string
	var walk func(path string, m map[string]any)
	walk = func(path string, m map[string]any) {
		for k, v := range m {
			if k == "." {
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && (len(sub) != 1 || sub["."] == nil) {
				walk(path+"/"+k, sub)
				continue
			}
			leaves = append(leaves, path+"/"+k)
		}
	}
	walk("", f)
	return len(leaves) == 1 && leaves[0] == "/f:spec/f:template/f:metadata/f:annotations/f:kubectl.kubernetes.io/restartedAt"
}

// editedBy names the field managers that changed the Deployment's spec (or
// its scale) after Switchyard's own last apply, from its managedFields; ""
// when none did. The deployment controller writes only status and
// annotations, so it never counts.
func editedBy(d *appsv1.Deployment) string {
	var ours time.Time
	for _, m := range d.ManagedFields {
		if m.Manager == releaseFieldManager && m.Time != nil && m.Time.After(ours) {
			ours = m.Time.Time
		}
	}
	var who []string
	for _, m := range d.ManagedFields {
		// kube-controller-manager writes a Deployment's scale for a
		// HorizontalPodAutoscaler: an autoscaler is no hand edit.
		if m.Manager == releaseFieldManager || m.Manager == "kube-controller-manager" || (m.Subresource != "" && m.Subresource != "scale") ||
			m.FieldsV1 == nil || !bytes.Contains(m.FieldsV1.GetRawBytes(), []byte(`"f:spec"`)) || onlyRestart(m.FieldsV1.GetRawBytes()) {
			continue
		}
		if m.Time == nil || !m.Time.Time.Before(ours) {
			who = append(who, m.Manager)
		}
	}
	slices.Sort(who)
	return strings.Join(slices.Compact(who), ",")
}
