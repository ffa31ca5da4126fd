package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

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

	// refusals are the releases whose Deployment the API server refused,
	// from the release controller.
	refusals *refusals
	// deployments are the records of Switchyard's Deployments.
	deployments *deploymentCache

	// writesMu guards what the controller remembers of its own writes: each
	// app's throttle state (bucket) and the versions it wrote. (Drains are not
	// remembered here: they live in the releases' status.)
	writesMu  sync.Mutex
	buckets   map[client.ObjectKey]*bucket
	written   map[string]string
	writtenAt map[string]time.Time
}

func (r *AppReconciler) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// appScope is what one rebuild of an app knows.
type appScope struct {
	// key is the app's namespace and name; now the rebuild's time.
	key client.ObjectKey
	now time.Time
	// releases are all of the app's AppReleases, by name.
	releases map[string]*v1alpha1.AppRelease
	// deployments are the releases' Deployments, by name.
	deployments map[string]*deploymentRecord
	// service, vs and dr are the app's shared objects as they are now: nil when
	// absent; foreign names the ones that exist but are not Switchyard's.
	service *corev1.Service
	vs      *networkingv1.VirtualService
	dr      *networkingv1.DestinationRule
	foreign []string
	// vsRead and drRead are the specs of vsReadOf and drReadOf (vsSpec,
	// drSpec): a cached object's spec is decoded once per rebuild, not per read.
	vsRead   *networking.VirtualService
	vsReadOf *networkingv1.VirtualService
	drRead   *networking.DestinationRule
	drReadOf *networkingv1.DestinationRule
	// current is what the VirtualService serves now (incumbency); decision
	// is the routing the releases call for; owners, desiredDR and desiredVS
	// are the shared objects it makes (desiredVS nil: no route).
	current   routing.Current
	decision  routing.Decision
	owners    []metav1.OwnerReference
	desiredDR *networking.DestinationRule
	desiredVS *networking.VirtualService
	// drains is when each draining subset's last route left (from the
	// releases' status.drainingSince, updated by this rebuild's writes).
	drains map[string]time.Time
	// writeErr is the first write of a shared object the API server refused
	// for good (see persistent); transientErr the first that failed otherwise.
	// routingHeld: the failed write held back the routing itself (the
	// VirtualService, the DestinationRule it needs first, or a Service that
	// does not exist): releases whose routing waits for it say so.
	writeErr, transientErr error
	routingHeld            bool
	// fp memoizes fingerprint, vsHash the desired VirtualService's
	// routing.SpecHash (one encoding of a large spec per rebuild, not two).
	fp     uint64
	vsHash string
	// writing: this rebuild has begun writing; throttled: it was held back
	// to coalesce a burst, and will run again.
	writing, throttled bool
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.istio.io,resources=virtualservices;destinationrules,verbs=get;list;watch;create;patch;delete

// Reconcile rebuilds one app's routing from all of its releases.
func (r *AppReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("app", req.Name))
	s := &appScope{key: req.NamespacedName, now: r.now()}
	for _, load := range []func(context.Context, *appScope) error{r.loadReleases, r.loadDeployments, r.loadShared} {
		if err := load(ctx, s); errors.Is(err, errCacheBehind) {
			ctrl.LoggerFrom(ctx).V(1).Info("The cache is behind the app's own last write; rebuilding again shortly", "retryIn", cacheRetry)
			return ctrl.Result{RequeueAfter: cacheRetry}, nil
		} else if err != nil {
			return ctrl.Result{}, err
		}
	}
	if len(s.releases) == 0 {
		// The app is gone (its objects go with its last release, by owner
		// reference): its Deployments' pods may go once no route names them,
		// and what the controller remembered of it goes too.
		res, err := r.releaseDrained(ctx, s)
		if len(s.deployments) == 0 {
			r.forget(s.key)
		}
		return res, err
	}
	s.current = routing.CurrentOf(s.currentVS())
	held, err := r.heldElsewhere(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.current.HeldElsewhere = held
	opts := r.Routing
	opts.App, opts.Namespace = s.key.Name, s.key.Namespace
	if opts.NamespaceEnvironments, err = r.namespaceEnvironments(ctx); err != nil {
		return ctrl.Result{}, err
	}
	s.decision = routing.DecideFrom(routingInputs(s), s.current, opts)
	s.owners = ownerReferences(s.decision)
	s.desiredDR = routing.MakeDestinationRule(s.key.Namespace, s.key.Name, s.decision)
	s.desiredVS = routing.MakeVirtualService(s.key.Namespace, s.key.Name, s.decision, opts)
	s.drains = loadDrains(s)
	start := time.Now()
	defer func() {
		result := "success"
		if retErr != nil {
			result = "error"
		}
		metrics.Rebuilds.WithLabelValues(result).Inc()
		metrics.RebuildDuration.Observe(time.Since(start).Seconds())
		ctrl.LoggerFrom(ctx).V(1).Info("Rebuilt", "releases", len(s.releases), "wrote", s.writing, "throttled", s.throttled, "took", time.Since(start))
	}()
	defer func() {
		// Statuses say what was written, and why what was not written was
		// not; a rebuild held back to coalesce a burst runs again soon.
		if !s.throttled {
			retErr = kerrors.NewAggregate([]error{retErr, r.patchStatuses(ctx, s)})
		}
	}()

	// Every phase runs even when another failed: a refused VirtualService
	// must not keep a release that can be drained from draining.
	var errs []error
	var res ctrl.Result
	for _, phase := range []func(context.Context, *appScope) (ctrl.Result, error){
		r.reconcileService,
		r.reconcileRouting,
		r.releaseDrained,
		r.pruneSuperseded,
	} {
		pr, err := phase(ctx, s)
		if err != nil {
			errs = append(errs, err)
		}
		if pr.RequeueAfter > 0 {
			res.RequeueAfter = minRequeue(res.RequeueAfter, pr.RequeueAfter)
		}
	}
	if !s.writing && !s.throttled {
		// Nothing left to write: no change is held any more.
		r.settled(s.key)
	}
	if len(s.foreign) > 0 {
		// A foreign object does not notify us when it goes: look again later.
		res.RequeueAfter = minRequeue(res.RequeueAfter, 30*time.Second)
	}
	if err := kerrors.NewAggregate(errs); err != nil {
		if !slices.ContainsFunc(errs, func(err error) bool { return !persistent(err) }) {
			// Refused for good, and said so in the releases' status and
			// events: retry at leisure, and keep the drains' own timers
			// (an error's backoff would hold them for minutes).
			ctrl.LoggerFrom(ctx).Info("Writes refused by the API server; retrying", "error", err.Error())
			return ctrl.Result{RequeueAfter: minRequeue(res.RequeueAfter, refusedRetry)}, nil
		}
		return ctrl.Result{}, err
	}
	return res, nil
}

// defaultAppConcurrency is how many apps are rebuilt at once when
// Config.AppConcurrency is not set.
const defaultAppConcurrency = 4

// refusedRetry is how often a rebuild whose writes the API server refused
// for good tries again (what refused them may change: a quota, a policy).
const refusedRetry = 30 * time.Second

// noteWriteError records a refused write of a shared object for the
// statuses; held: it holds back the routing itself.
func (s *appScope) noteWriteError(err error, held bool) {
	s.routingHeld = s.routingHeld || held
	switch {
	case persistent(err):
		if s.writeErr == nil {
			s.writeErr = err
		}
	case s.transientErr == nil:
		s.transientErr = err
	}
}

// heldElsewhere finds the hosts this app's releases ask for that another
// app in the cluster (any namespace) holds: a host is served by one app only.
//
// Each app claiming a host has a claim: since when (its oldest live release
// asking for it; a tie goes to the lower namespace/name), whether it serves
// the host now (one of those releases Live and not in conflict; for this app,
// its VirtualService routes the host), and whether it lost it (all of those
// releases say HostsConflict). An app that serves a host keeps it unless
// another that also serves it claimed it earlier (both serving happens only
// in a race); an app that does not serve it goes without while another
// serves it, or while another that has not lost it claimed it earlier, or,
// having lost it, while any other has not. So an app that lost a host never
// takes it back by age while the holder still asks for it, not even through
// the holder's outage; a host whose holder retires goes to the next claimant.
func (r *AppReconciler) heldElsewhere(ctx context.Context, s *appScope) (map[string]string, error) {
	type claim struct {
		key          string
		since        time.Time
		serves, lost bool
	}
	precedes := func(a, b *claim) bool {
		if !a.since.Equal(b.since) {
			return a.since.Before(b.since)
		}
		return a.key < b.key
	}
	// add counts a live release's claim on a host into c.
	add := func(c *claim, rel *v1alpha1.AppRelease) {
		if c.since.IsZero() || rel.CreationTimestamp.Time.Before(c.since) {
			c.since = rel.CreationTimestamp.Time
		}
		reason := readyReason(&rel.Status)
		c.serves = c.serves || (rel.Status.Phase == v1alpha1.PhaseLive && reason != v1alpha1.ReasonHostsConflict)
		c.lost = c.lost && reason == v1alpha1.ReasonHostsConflict
	}
	live := func(rel *v1alpha1.AppRelease) bool {
		return rel.DeletionTimestamp.IsZero() && rel.Status.Phase != v1alpha1.PhaseSuperseded
	}
	ours := map[string]*claim{}
	for _, name := range sortedNames(s.releases) {
		rel := s.releases[name]
		if !live(rel) {
			continue
		}
		for _, h := range routing.NormalizeHosts(rel.Spec.Hosts) {
			if ours[h] == nil {
				ours[h] = &claim{key: s.key.String(), lost: true}
			}
			add(ours[h], rel)
		}
	}
	held := map[string]string{}
	for _, h := range sortedNames(ours) {
		us := ours[h]
		us.serves = s.current.HostEnvironments[h] != ""
		list := &v1alpha1.AppReleaseList{}
		// Read only: the cache's own copies (an app's host is claimed by each of
		// its releases, up to thousands).
		if err := r.List(ctx, list, client.MatchingFields{hostIndex: h}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("list AppReleases claiming host %s: %w", h, err)
		}
		others := map[string]*claim{}
		for i := range list.Items {
			rel := &list.Items[i]
			if (rel.Namespace == s.key.Namespace && rel.Spec.App == s.key.Name) || !live(rel) {
				continue
			}
			key := rel.Namespace + "/" + rel.Spec.App
			if others[key] == nil {
				others[key] = &claim{key: key, lost: true}
			}
			add(others[key], rel)
		}
		for _, key := range sortedNames(others) {
			x := others[key]
			if (x.serves && (!us.serves || precedes(x, us))) ||
				(!us.serves && !x.lost && (us.lost || precedes(x, us))) {
				ns, app, _ := strings.Cut(key, "/")
				held[h] = fmt.Sprintf("app %s in namespace %s", app, ns)
				break
			}
		}
	}
	return held, nil
}

// loadDrains reads when each draining subset's last route left from its
// release's status. A subset that is still defined, no longer routed and
// whose release last said it was routed, without a drain start (the
// operator stopped between the write and the status), drains from now.
func loadDrains(s *appScope) map[string]time.Time {
	routed := routing.RoutedSubsets(s.currentVS())
	defined := routing.DefinedSubsets(s.currentDR())
	drains := map[string]time.Time{}
	for _, rel := range s.releases {
		subset := routing.SubsetName(rel.Name)
		if !defined[subset] || routed[subset] {
			continue
		}
		switch {
		case rel.Status.DrainingSince != nil:
			drains[subset] = rel.Status.DrainingSince.Time
		case rel.Status.Phase == v1alpha1.PhaseLive && rel.Status.Weight > 0:
			drains[subset] = drainStart(s.now)
		}
	}
	return drains
}

// vsSpec is the spec of a VirtualService as read or written: the compact
// form (decoded from annotationCachedRoutes) of one compact made so, the
// spec itself of any other. nil for none, and for a compact form that does not
// decode (loadShared refuses to rebuild from one).
func vsSpec(vs *networkingv1.VirtualService) *networking.VirtualService {
	if vs == nil {
		return nil
	}
	if routes, ok := vs.Annotations[annotationCachedRoutes]; ok && len(vs.Spec.Http) == 0 {
		out := &networking.VirtualService{}
		if b, err := unpack(routes); err == nil && proto.Unmarshal(b, out) == nil {
			return out
		}
		return nil // the spec itself was emptied: never read it as the routes
	}
	return &vs.Spec
}

// currentVS is the spec of the app's VirtualService as it is now (vsSpec
// of s.vs, decoded once per version read or written); nil for none.
func (s *appScope) currentVS() *networking.VirtualService {
	if s.vsReadOf != s.vs || s.vs == nil {
		s.vsRead, s.vsReadOf = vsSpec(s.vs), s.vs
	}
	return s.vsRead
}

// currentDR is the spec of the app's DestinationRule as it is now (drSpec
// of s.dr, decoded once per version read or written); nil for none.
func (s *appScope) currentDR() *networking.DestinationRule {
	if s.drReadOf != s.dr || s.dr == nil {
		s.drRead, s.drReadOf = drSpec(s.dr), s.dr
	}
	return s.drRead
}

// drSpec is the spec of a DestinationRule as read or written: decoded from
// annotationCachedSpec for one the cache holds (slimShared), the spec
// itself of any other. nil for none, and for a cached form that does not
// decode (loadShared refuses to rebuild from one).
func drSpec(dr *networkingv1.DestinationRule) *networking.DestinationRule {
	if dr == nil {
		return nil
	}
	if spec, ok := dr.Annotations[annotationCachedSpec]; ok && dr.Spec.Host == "" {
		out := &networking.DestinationRule{}
		if b, err := unpack(spec); err == nil && proto.Unmarshal(b, out) == nil {
			return out
		}
		return nil // the spec itself was emptied: never read it as the subsets
	}
	return &dr.Spec
}

// fingerprint identifies the desired shared objects: a burst's changes are
// told apart from rebuilds that find nothing new.
func (s *appScope) fingerprint() uint64 {
	if s.fp != 0 {
		return s.fp
	}
	h := fnv.New64a()
	for _, part := range []string{routing.SpecHash(s.desiredDR), s.vsHashOf(s.desiredVS)} {
		_, _ = h.Write([]byte(part))
		_, _ = h.Write([]byte{0})
	}
	for _, o := range s.owners {
		_, _ = h.Write([]byte(o.UID))
	}
	s.fp = h.Sum64() | 1
	return s.fp
}

// vsHashOf is routing.SpecHash of a VirtualService spec ("" for none),
// computed once per rebuild for the desired one.
func (s *appScope) vsHashOf(spec *networking.VirtualService) string {
	switch {
	case spec == nil:
		return ""
	case spec != s.desiredVS:
		return routing.SpecHash(spec)
	case s.vsHash == "":
		s.vsHash = routing.SpecHash(spec)
	}
	return s.vsHash
}

// routingInputs is what the routing decision needs of each release.
func routingInputs(s *appScope) []routing.Release {
	in := make([]routing.Release, 0, len(s.releases))
	for _, rel := range s.releases {
		var st deploymentState
		if d := s.deployments[rel.Name]; d != nil {
			st = stateOf(d)
		}
		owned := st.Owner != "" && st.Owner == rel.UID
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
			Available:     owned && (st.available() || wasRouted && st.podsUp()),
			Failed:        owned && st.Failed,
			Deleting:      !rel.DeletionTimestamp.IsZero(),
			Superseded:    rel.Status.Phase == v1alpha1.PhaseSuperseded,
			WasRouted:     wasRouted,
			Build:         ptr.Deref(rel.Spec.Build, 0),
		})
	}
	return in
}

// releaseState is everything the app controller reads of an AppRelease
// beyond its spec (its generation stands for the spec): routingInputs,
// loadDrains and the statuses read these, and the watch predicate passes a
// change of any of them.
type releaseState struct {
	Generation    int64
	Deleting      bool
	Accepted      bool
	Phase         v1alpha1.Phase
	Weight        int32
	DrainingSince time.Time
	// ReadyReason tells, for other apps claiming its hosts, whether it holds them.
	ReadyReason string
}

func releaseStateOf(rel *v1alpha1.AppRelease) releaseState {
	st := releaseState{Generation: rel.Generation, Deleting: !rel.DeletionTimestamp.IsZero(),
		Accepted: controllerutil.ContainsFinalizer(rel, Finalizer), Phase: rel.Status.Phase, Weight: rel.Status.Weight,
		ReadyReason: readyReason(&rel.Status)}
	if rel.Status.DrainingSince != nil {
		st.DrainingSince = rel.Status.DrainingSince.Time
	}
	return st
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
	// A release maps to its app, and to every other app that claims one of
	// its hosts, in any namespace: its coming, going or serving may hand a
	// host over.
	releaseToApps := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		rel := o.(*v1alpha1.AppRelease)
		own := client.ObjectKey{Namespace: rel.Namespace, Name: rel.Spec.App}
		out := []reconcile.Request{{NamespacedName: own}}
		seen := map[client.ObjectKey]bool{own: true}
		for _, h := range routing.NormalizeHosts(rel.Spec.Hosts) {
			list := &v1alpha1.AppReleaseList{}
			if err := mgr.GetClient().List(ctx, list, client.MatchingFields{hostIndex: h}, client.UnsafeDisableDeepCopy); err != nil {
				continue
			}
			out = appendApps(out, seen, list.Items)
		}
		return out
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("app").
		// Apps are independent (one app's key is never worked on twice at
		// once): a large app's slow writes never hold another app back.
		WithOptions(controller.Options{MaxConcurrentReconciles: cmp.Or(r.Config.AppConcurrency, defaultAppConcurrency)}).
		Watches(&v1alpha1.AppRelease{}, releaseToApps, builder.WithPredicates(releaseChanged)).
		Watches(&corev1.Service{}, byApp).
		Watches(&networkingv1.VirtualService{}, byApp, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&networkingv1.DestinationRule{}, byApp, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(allApps(mgr.GetClient())),
			builder.WithPredicates(namespaceEnvironmentChanged)).
		WatchesRawSource(source.Channel(r.refusals.changed, releaseToApps))
	appOf := func(d *deploymentRecord) (client.ObjectKey, bool) {
		return client.ObjectKey{Namespace: d.Namespace, Name: d.App}, d.App != ""
	}
	for _, src := range r.deployments.sources(appOf, deploymentChanged) {
		b = b.WatchesRawSource(src)
	}
	return b.Complete(r)
}

// namespaceEnvironments maps each namespace labelled with an environment
// (routing.EnvironmentLabel) to it, from the cache.
func (r *AppReconciler) namespaceEnvironments(ctx context.Context) (map[string]string, error) {
	list := &corev1.NamespaceList{}
	if err := r.List(ctx, list, client.HasLabels{routing.EnvironmentLabel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list the namespaces labelled %s: %w", routing.EnvironmentLabel, err)
	}
	out := make(map[string]string, len(list.Items))
	for _, ns := range list.Items {
		if env := ns.Labels[routing.EnvironmentLabel]; env != "" {
			out[ns.Name] = env
		}
	}
	return out, nil
}

// allApps maps any object to every app in the cluster: a namespace's
// environment label routes calls to every app.
func allApps(c client.Reader) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &v1alpha1.AppReleaseList{}
		if err := c.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		return appendApps(nil, map[client.ObjectKey]bool{}, list.Items)
	}
}

// appendApps appends a request for the app of each release not seen yet.
func appendApps(out []reconcile.Request, seen map[client.ObjectKey]bool, rels []v1alpha1.AppRelease) []reconcile.Request {
	for _, rel := range rels {
		key := client.ObjectKey{Namespace: rel.Namespace, Name: rel.Spec.App}
		if !seen[key] {
			seen[key] = true
			out = append(out, reconcile.Request{NamespacedName: key})
		}
	}
	return out
}

// namespaceEnvironmentChanged passes a namespace whose environment label
// came, went or changed.
var namespaceEnvironmentChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetLabels()[routing.EnvironmentLabel] != e.ObjectNew.GetLabels()[routing.EnvironmentLabel]
	},
}

// releaseChanged passes a release change that changes anything the app
// controller reads of it (releaseState).
var releaseChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return releaseStateOf(e.ObjectOld.(*v1alpha1.AppRelease)) != releaseStateOf(e.ObjectNew.(*v1alpha1.AppRelease))
	},
}

// deploymentChanged passes a Deployment change that changes anything the app
// controller reads of it (deploymentState).
var deploymentChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okOld := e.ObjectOld.(*deploymentRecord)
		n, okNew := e.ObjectNew.(*deploymentRecord)
		return !okOld || !okNew || stateOf(o) != stateOf(n)
	},
}
