// Package controller holds Switchyard's two controllers: the release
// controller (one AppRelease: its finalizer and its Deployment) and the app
// controller (one app: the single writer of its Service, VirtualService and
// DestinationRule, and of its releases' status).
package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/metrics"
	"github.com/switchyard-dev/switchyard/internal/recorder"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

const (
	// LabelManagedBy marks every object Switchyard writes; the manager's cache
	// holds only objects carrying it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "switchyard"
	// LabelApp names the app an object belongs to.
	LabelApp = "switchyard.dev/app"
	// LabelRelease names the AppRelease a Deployment belongs to.
	LabelRelease = "switchyard.dev/release"
	// PodLabelApp is the conventional Istio "app" label the app's Service selects.
	PodLabelApp = "app"

	// Finalizer keeps a release until its routes and subset have left the app's objects.
	Finalizer = "delivery.switchyard.dev/drain"

	// appIndex indexes AppReleases by spec.app; hostIndex by each of
	// spec.hosts, lower case, across namespaces.
	appIndex  = ".spec.app"
	hostIndex = ".spec.hosts"

	releaseFieldManager = "switchyard-release"
	appFieldManager     = "switchyard-app"
)

// Config holds the operator's flags the controllers act on.
type Config struct {
	// PruneSuperseded deletes a superseded AppRelease once its routes, subset and
	// Deployment are gone; off when a GitOps repository owns the AppReleases.
	PruneSuperseded bool
	// SupersededGrace keeps a release superseded as an older build that long
	// before it is pruned, so the pipeline that applied it can read why.
	SupersededGrace time.Duration
	// MinWriteInterval turns the throttle on (0 writes every change at
	// once) and, with BurstMaxHold 0, paces a burst's writes that far apart.
	// A change that finds the app settled (its last rebuild wrote nothing),
	// or changes no more releases than a pipeline's step, goes out at once.
	MinWriteInterval time.Duration
	// BurstMaxHold shapes a burst (changes of several releases each still
	// coming after a few such rebuilds wrote, the app never settling): its changes
	// are held until they pause for 2 s (the burst is over), or at the
	// latest BurstMaxHold after the first held one, and written together.
	// 0 paces bursts by MinWriteInterval alone.
	BurstMaxHold time.Duration
	// Namespaces are the namespaces watched (--watch-namespaces; all when
	// empty), for the caches Setup makes itself (CacheOptions takes them too).
	Namespaces []string
	// AppConcurrency is how many apps are rebuilt at once (each app by one
	// worker at a time); 0 means 4. More suits an API server with cores to
	// spare: one app's slow writes then hold fewer others back.
	AppConcurrency int
	// DrainDelay keeps a subset defined (and its pods running) that long after
	// the last route to it left the VirtualService, so every proxy has the new
	// routes before the subset goes (Istio: "Avoid 503 errors while
	// reconfiguring service routes").
	DrainDelay time.Duration
}

// SetupIndexes registers the cache indexes the controllers list by: appIndex
// ("namespace/app": an app's releases are always listed in its namespace)
// and hostIndex ("__all_namespaces/host": a host's claimants are always
// listed across namespaces). They are registered on the AppRelease informer
// directly, under the names and key forms controller-runtime's cache reader
// looks up for client.MatchingFields (FieldIndexName, KeyToNamespacedKey in
// its pkg/cache/internal), because its IndexField stores both a namespaced
// and an all-namespaces key for every value: one of them is never read, and
// at 10,000 releases the unread keys' set entries are megabytes of heap. A
// List by these fields with the other scope finds nothing (the "AppRelease
// indexes" spec in hosts_test.go pins the key forms).
func SetupIndexes(ctx context.Context, mgr manager.Manager) error {
	inf, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.AppRelease{}, cache.BlockUntilSynced(false))
	if err != nil {
		return err
	}
	return inf.AddIndexers(toolscache.Indexers{
		fieldIndexName(appIndex): func(obj any) ([]string, error) {
			r, ok := obj.(*v1alpha1.AppRelease)
			if !ok {
				return nil, fmt.Errorf("index %s: %T is not an AppRelease", appIndex, obj)
			}
			return []string{r.Namespace + "/" + r.Spec.App}, nil
		},
		fieldIndexName(hostIndex): func(obj any) ([]string, error) {
			r, ok := obj.(*v1alpha1.AppRelease)
			if !ok {
				return nil, fmt.Errorf("index %s: %T is not an AppRelease", hostIndex, obj)
			}
			hosts := routing.NormalizeHosts(r.Spec.Hosts)
			for i, h := range hosts {
				hosts[i] = allNamespacesKey + h
			}
			return hosts, nil
		},
	})
}

// fieldIndexName is the informer index controller-runtime's cache reader
// uses for a client.MatchingFields on field (its FieldIndexName).
func fieldIndexName(field string) string { return "field:" + field }

// allNamespacesKey prefixes an index value listed across namespaces
// (controller-runtime's KeyToNamespacedKey with no namespace).
const allNamespacesKey = "__all_namespaces/"

// managedLabels are the labels of every shared object of an app.
func managedLabels(app string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelApp: app}
}

// Setup registers the indexes and both controllers with a manager.
func Setup(ctx context.Context, mgr manager.Manager, opts routing.Options, cfg Config) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return fmt.Errorf("index AppReleases: %w", err)
	}
	refused := newRefusals()
	deployments, err := newDeploymentCache(mgr.GetConfig(), mgr.GetHTTPClient(), cfg.Namespaces)
	if err != nil {
		return fmt.Errorf("cache Deployments: %w", err)
	}
	if err := mgr.Add(deployments); err != nil {
		return fmt.Errorf("cache Deployments: %w", err)
	}
	// Events through bounded recorders, not the manager's (client-go's
	// broadcaster holds every event for 6 minutes): see package recorder.
	releaseEvents := recorder.New(mgr.GetClient(), mgr.GetScheme(), "switchyard-release", 0, 0)
	appEvents := recorder.New(mgr.GetClient(), mgr.GetScheme(), "switchyard-app", 0, 0)
	for _, r := range []*recorder.Recorder{releaseEvents, appEvents} {
		if err := mgr.Add(r); err != nil {
			return fmt.Errorf("add an event recorder: %w", err)
		}
	}
	if err := (&ReleaseReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), refusals: refused,
		Recorder: releaseEvents, deployments: deployments}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the release controller: %w", err)
	}
	app := &AppReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), refusals: refused,
		Recorder: appEvents, Routing: opts, Config: cfg, deployments: deployments}
	if err := app.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the app controller: %w", err)
	}
	return nil
}

// CacheOptions make the manager's cache hold AppReleases (without their pod
// templates, which any author may make large) and, of everything else, only
// the objects Switchyard wrote: the operator's memory grows with what it
// manages, not with the cluster or with what authors write. Cached copies carry no managedFields
// (the operator writes by server-side apply and patches, never from a cached
// copy's field ownership): a third or more of every object's size.
// With cfg.Namespaces, it holds only theirs (--watch-namespaces), as does
// the Deployment cache Setup makes from the same Config: the operator then
// needs Roles in those namespaces alone.
func CacheOptions(cfg Config) cache.Options {
	namespaces := cfg.Namespaces
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue})}
	virtualServices := managed
	virtualServices.Transform = compactVirtualService
	shared := managed
	shared.Transform = slimShared
	var watched map[string]cache.Config
	if len(namespaces) > 0 {
		watched = map[string]cache.Config{}
		for _, ns := range namespaces {
			watched[ns] = cache.Config{}
		}
	}
	// Namespaces only when labelled with an environment, and only that label.
	environment, _ := labels.NewRequirement(routing.EnvironmentLabel, selection.Exists, nil)
	labelled := cache.ByObject{Label: labels.NewSelector().Add(*environment), Transform: namespaceLabelOnly}
	return cache.Options{DefaultNamespaces: watched, DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
		&corev1.Namespace{}:             labelled,
		&v1alpha1.AppRelease{}:          {Transform: withoutTemplate},
		&corev1.Service{}:               shared,
		&networkingv1.VirtualService{}:  virtualServices,
		&networkingv1.DestinationRule{}: shared,
	}}
}

// namespaceLabelOnly keeps of a cached Namespace its name and the
// environment its label names.
func namespaceLabelOnly(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, ResourceVersion: ns.ResourceVersion,
		Labels: map[string]string{routing.EnvironmentLabel: ns.Labels[routing.EnvironmentLabel]}}}, nil
}

// slimDeployment is the cache's transform of a Deployment: its
// deploymentRecord (what the controllers read of it). Idempotent: client-go
// may pass an object through its transform twice.
func slimDeployment(obj any) (any, error) {
	if d, ok := obj.(*appsv1.Deployment); ok {
		return recordOf(d), nil
	}
	return obj, nil
}

// compactVirtualService is the cache's transform of a VirtualService (see
// compact).
func compactVirtualService(obj any) (any, error) {
	if vs, ok := obj.(*networkingv1.VirtualService); ok && !compacted(vs) {
		compact(vs)
		withoutOwners(vs)
	}
	return obj, nil
}

// slimShared is the cache's transform of the app's Service and
// DestinationRule: no managedFields, and owner references as their digest
// (withoutOwners); a DestinationRule's spec whole but protobuf-encoded in
// annotationCachedSpec and deflated (pack; a Go Subset with its labels map is
// some 450 bytes, encoded about 60, deflated about 8), which drSpec decodes.
func slimShared(obj any) (any, error) {
	o, ok := obj.(client.Object)
	if !ok {
		return obj, nil
	}
	o.SetManagedFields(nil)
	withoutOwners(o)
	// A DestinationRule as the API server holds it has a host (Istio
	// refuses one without): an encoded one has none.
	if dr, ok := obj.(*networkingv1.DestinationRule); ok && dr.Spec.Host != "" {
		if spec, err := (proto.MarshalOptions{Deterministic: true}).Marshal(&dr.Spec); err == nil {
			dr.Annotations[annotationCachedSpec] = pack(spec) // withoutOwners made the map
			proto.Reset(&dr.Spec)
		}
	}
	return obj, nil
}

// withoutOwners replaces an object's owner references (one per live
// release on each of an app's three shared objects: 6 MB at 10,000
// releases) with their ownersDigest in annotationCachedOwners, which
// sameMeta compares. Idempotent: an object with the annotation and no
// references is left as it is.
func withoutOwners(o metav1.Object) {
	ann := o.GetAnnotations()
	if _, ok := ann[annotationCachedOwners]; ok && len(o.GetOwnerReferences()) == 0 {
		return
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[annotationCachedOwners] = ownersDigest(o.GetOwnerReferences())
	o.SetAnnotations(ann)
	o.SetOwnerReferences(nil)
}

// ownersDigest identifies a set of owner references by what sameMeta
// compares of each (uid, name, kind, apiVersion, controller), whatever
// their order: 32 hexadecimal digits (SHA-256, truncated).
func ownersDigest(refs []metav1.OwnerReference) string {
	keys := make([]string, len(refs))
	for i, r := range refs {
		controller := "-"
		if r.Controller != nil {
			controller = strconv.FormatBool(*r.Controller)
		}
		keys[i] = strings.Join([]string{string(r.UID), r.Name, r.Kind, r.APIVersion, controller}, "\x00")
	}
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(sum[:16])
}

// compacted: compact made vs so already (an informer may pass an object
// through its transform twice: client-go asks transforms to be idempotent).
// A VirtualService as the API server holds it has hosts (Istio refuses one
// without): the compact form has none.
func compacted(vs *networkingv1.VirtualService) bool {
	_, ok := vs.Annotations[annotationCachedSpecHash]
	return ok && len(vs.Spec.Hosts) == 0
}

// compact keeps of a VirtualService's spec only what the app controller
// reads of it (routing.CompactVirtualService: rule names, subsets, the
// environments' hosts), protobuf-encoded and deflated in annotationCachedRoutes (the
// spec itself left empty; vsSpec decodes it), notes the whole spec's hash in
// annotationCachedSpecHash (sameSpec compares by it, so it must be the
// hash of the spec as the API server holds it: compact a VirtualService once,
// as read) and drops its managedFields. The cache holds VirtualServices so, and
// loadShared and applyVirtualService make those they read or write so. A
// 1,000-rule VirtualService's copy is then about a tenth of its size. An
// annotation of that name the object carries itself is overwritten.
func compact(vs *networkingv1.VirtualService) {
	hash := routing.SpecHash(&vs.Spec)
	size := 0
	if b, err := json.Marshal(&vs.Spec); err == nil {
		size = len(b)
	}
	// Encoded, the compact form is a seventh of its decoded size (a Go
	// HTTPRoute is 224 bytes before its fields), deflated a ninth of that
	// (pack): vsSpec decodes it.
	routes, err := proto.MarshalOptions{Deterministic: true}.Marshal(routing.CompactVirtualService(&vs.Spec))
	if err != nil {
		return // kept whole: vsSpec reads it as it is
	}
	proto.Reset(&vs.Spec)
	vs.ManagedFields = nil
	if vs.Annotations == nil {
		vs.Annotations = map[string]string{}
	}
	vs.Annotations[annotationCachedRoutes] = pack(routes)
	vs.Annotations[annotationCachedSpecHash] = hash
	vs.Annotations[metrics.SpecBytesAnnotation] = strconv.Itoa(size)
}

// sameSpec: a VirtualService made so by compact has the spec whose
// routing.SpecHash is desired.
func sameSpec(vs *networkingv1.VirtualService, desired string) bool {
	h := vs.Annotations[annotationCachedSpecHash]
	return h != "" && h == desired
}
