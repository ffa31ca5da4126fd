package controller

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/metrics"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// AppReconciler is the single writer of an app's shared objects. It is keyed
// by namespace/app: every change to one of the app's releases, their
// Deployments or its shared objects requeues the app, so a burst of pipelines
// coalesces into one rebuild, and each rebuild starts from all live releases.
type AppReconciler struct {
	client.Client
	// APIReader reads past the cache, which holds only Switchyard's own
	// objects: it tells a foreign object named like the app from none at all.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Routing   routing.Options
	Config    Config
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	// writesMu guards what the controller remembers of its own writes: each
	// app's write allowance, the versions it wrote, and when routes changed.
	writesMu sync.Mutex
	buckets  map[client.ObjectKey]*bucket
	written  map[string]string
	routedAt map[client.ObjectKey]time.Time
}

func (r *AppReconciler) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// appScope is what one rebuild of an app knows.
type appScope struct {
	// key is the app's namespace and name.
	key client.ObjectKey
	// releases are all of the app's AppReleases, by name.
	releases map[string]*v1alpha1.AppRelease
	// deployments are the releases' Deployments, by name.
	deployments map[string]*appsv1.Deployment
	// service, vs and dr are the app's shared objects as they are now: nil when
	// absent; foreign names the ones that exist but are not Switchyard's.
	service *corev1.Service
	vs      *networkingv1.VirtualService
	dr      *networkingv1.DestinationRule
	foreign []string
	// decision is the routing the releases call for; owners, desiredDR and
	// desiredVS are the shared objects it makes (desiredVS nil: no route).
	decision  routing.Decision
	owners    []metav1.OwnerReference
	desiredDR *networking.DestinationRule
	desiredVS *networking.VirtualService
	// fp memoizes fingerprint.
	fp uint64
	// writing: this rebuild has begun writing; throttled: it was held back
	// to coalesce a burst, and will run again.
	writing, throttled bool
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;patch;delete

// Reconcile rebuilds one app's routing from all of its releases.
func (r *AppReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("app", req.Name))
	s := &appScope{key: req.NamespacedName}
	for _, load := range []func(context.Context, *appScope) error{r.loadReleases, r.loadDeployments, r.loadShared} {
		if err := load(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if len(s.releases) == 0 {
		// The app is gone (its objects go with its last release, by owner
		// reference): so is what the controller remembered of it.
		r.forget(s.key)
		return ctrl.Result{}, nil
	}
	s.decision = routing.Decide(routingInputs(s), r.Routing)
	s.owners = ownerReferences(s.decision)
	s.desiredDR = routing.MakeDestinationRule(s.key.Namespace, s.key.Name, s.decision)
	s.desiredVS = routing.MakeVirtualService(s.key.Namespace, s.key.Name, s.decision, r.Routing)
	start := time.Now()
	defer func() {
		result := "success"
		if retErr != nil {
			result = "error"
		}
		metrics.Rebuilds.WithLabelValues(result).Inc()
		metrics.RebuildDuration.Observe(time.Since(start).Seconds())
	}()
	defer func() {
		// Statuses say what was written; a failed write leaves them as they were
		// (still true of the objects) and the rebuild is retried.
		if retErr == nil && !s.throttled {
			retErr = r.patchStatuses(ctx, s)
		}
	}()

	var errs []error
	for _, phase := range []func(context.Context, *appScope) (ctrl.Result, error){
		r.reconcileService,
		r.reconcileRouting,
		r.releaseDrained,
		r.pruneSuperseded,
	} {
		res, err := phase(ctx, s)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if !res.IsZero() {
			return res, nil
		}
	}
	if !s.writing && !s.throttled {
		// Nothing left to write: no change is held any more.
		r.settled(s.key)
	}
	if len(s.foreign) > 0 {
		// A foreign object does not notify us when it goes: look again later.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, kerrors.NewAggregate(errs)
	}
	return ctrl.Result{}, kerrors.NewAggregate(errs)
}

// fingerprint identifies the desired shared objects: a burst's changes are
// told apart from rebuilds that find nothing new.
func (s *appScope) fingerprint() uint64 {
	if s.fp != 0 {
		return s.fp
	}
	h := fnv.New64a()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, m := range []proto.Message{s.desiredDR, s.desiredVS} {
		if b, err := opts.Marshal(m); err == nil {
			_, _ = h.Write(b)
		}
		_, _ = h.Write([]byte{0})
	}
	for _, o := range s.owners {
		_, _ = h.Write([]byte(o.UID))
	}
	s.fp = h.Sum64() | 1
	return s.fp
}

// routingInputs is what the routing decision needs of each release.
func routingInputs(s *appScope) []routing.Release {
	in := make([]routing.Release, 0, len(s.releases))
	for _, rel := range s.releases {
		d := s.deployments[rel.Name]
		owned := d != nil && metav1.IsControlledBy(d, rel)
		wasRouted := rel.Status.Phase == v1alpha1.PhaseLive || rel.Status.Phase == v1alpha1.PhaseStandby
		in = append(in, routing.Release{
			Name:          rel.Name,
			UID:           rel.UID,
			Created:       rel.CreationTimestamp.Time,
			Environment:   rel.Spec.Environment,
			Branch:        rel.Spec.Branch,
			Hosts:         rel.Spec.Hosts,
			Canary:        canaryWeight(rel),
			Accepted:      controllerutil.ContainsFinalizer(rel, Finalizer),
			HasDeployment: owned,
			Available:     owned && (deploymentAvailable(d) || wasRouted && d.Status.AvailableReplicas > 0),
			Failed:        owned && deploymentFailed(d),
			Deleting:      !rel.DeletionTimestamp.IsZero(),
			Superseded:    rel.Status.Phase == v1alpha1.PhaseSuperseded,
			WasRouted:     wasRouted,
			Build:         ptr.Deref(rel.Spec.Build, 0),
		})
	}
	return in
}

func canaryWeight(r *v1alpha1.AppRelease) *int32 {
	if r.Spec.Canary == nil {
		return nil
	}
	w := r.Spec.Canary.Weight
	return &w
}

// SetupWithManager registers the app controller: AppReleases, their
// Deployments and the app's shared objects all map to the app's key.
func (r *AppReconciler) SetupWithManager(mgr ctrl.Manager) error {
	byApp := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		app := o.GetLabels()[LabelApp]
		if app == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: app}}}
	})
	releaseToApp := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		rel := o.(*v1alpha1.AppRelease)
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: rel.Namespace, Name: rel.Spec.App}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("app").
		Watches(&v1alpha1.AppRelease{}, releaseToApp, builder.WithPredicates(releaseRoutingChanged)).
		Watches(&appsv1.Deployment{}, byApp, builder.WithPredicates(deploymentAvailabilityChanged)).
		Watches(&corev1.Service{}, byApp).
		Watches(&networkingv1.VirtualService{}, byApp, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&networkingv1.DestinationRule{}, byApp, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// releaseRoutingChanged passes the release changes that can change routing:
// its spec, its deletion, its finalizers; not its status, which this
// controller writes itself.
var releaseRoutingChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			!e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp()) ||
			len(e.ObjectOld.GetFinalizers()) != len(e.ObjectNew.GetFinalizers())
	},
}

// deploymentAvailabilityChanged passes the Deployment changes the routing depends on.
var deploymentAvailabilityChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld.(*appsv1.Deployment), e.ObjectNew.(*appsv1.Deployment)
		return deploymentAvailable(o) != deploymentAvailable(n) || deploymentFailed(o) != deploymentFailed(n) ||
			!o.DeletionTimestamp.Equal(n.DeletionTimestamp)
	},
}
