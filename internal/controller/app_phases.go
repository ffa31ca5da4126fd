package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiometaac "istio.io/client-go/pkg/applyconfiguration/meta/v1"
	istioac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/metrics"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// loadReleases lists every AppRelease of the app.
func (r *AppReconciler) loadReleases(ctx context.Context, s *appScope) error {
	list := &v1alpha1.AppReleaseList{}
	if err := r.List(ctx, list, client.InNamespace(s.key.Namespace), client.MatchingFields{appIndex: s.key.Name}); err != nil {
		return fmt.Errorf("list AppReleases of app %s: %w", s.key, err)
	}
	s.releases = make(map[string]*v1alpha1.AppRelease, len(list.Items))
	for i := range list.Items {
		s.releases[list.Items[i].Name] = &list.Items[i]
	}
	return nil
}

// loadDeployments reads the records of the app's releases' Deployments.
func (r *AppReconciler) loadDeployments(_ context.Context, s *appScope) error {
	s.deployments = r.deployments.ofApp(s.key)
	return nil
}

// loadShared reads the app's Service, VirtualService and DestinationRule.
func (r *AppReconciler) loadShared(ctx context.Context, s *appScope) error {
	svc, vs, dr := &corev1.Service{}, &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}
	for _, o := range []struct {
		obj  client.Object
		kind string
		set  func()
	}{
		{svc, "Service", func() { s.service = svc }},
		{vs, "VirtualService", func() { s.vs = vs }},
		{dr, "DestinationRule", func() { s.dr = dr }},
	} {
		ours, exists, err := r.getShared(ctx, s.key, o.obj)
		if err != nil {
			return fmt.Errorf("get %s %s: %w", o.kind, s.key, err)
		}
		switch {
		case ours:
			o.set()
		case exists:
			s.foreign = append(s.foreign, o.kind)
		}
	}
	// A cached form that does not decode would read as no routes or no
	// subsets, and the rebuild would unroute and retire releases: an error
	// (retried with backoff) instead.
	if s.vs != nil && s.currentVS() == nil {
		return fmt.Errorf("VirtualService %s: its cached routes do not decode", s.key)
	}
	if s.dr != nil && s.currentDR() == nil {
		return fmt.Errorf("DestinationRule %s: its cached spec does not decode", s.key)
	}
	return nil
}

// getShared reads one shared object: from the cache, which holds only
// Switchyard's objects, and on a miss from the API server, to tell a foreign
// object from none. A cached copy that is not the version this controller
// last wrote or read, within cacheCatchUp of that write, is on its way (a
// few milliseconds behind the write's response): the rebuild is retried
// (errCacheBehind) rather than wait or read a large object from the API
// server. Past that, someone else changed it, or the watch lags: the API
// server is read.
func (r *AppReconciler) getShared(ctx context.Context, key client.ObjectKey, obj client.Object) (ours, exists bool, err error) {
	err = r.Get(ctx, key, obj)
	stale := err == nil && !r.seen(obj)
	if stale && r.since(obj) < cacheCatchUp {
		return false, false, errCacheBehind
	}
	live := apierrors.IsNotFound(err) || stale
	if live {
		// A miss, or a cached object that is not the one this controller last
		// wrote: read the API server, so no decision rests on a stale copy.
		err = r.APIReader.Get(ctx, key, obj)
		if vs, ok := obj.(*networkingv1.VirtualService); ok && err == nil {
			compact(vs) // as the cache holds it
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		return false, false, nil
	case err != nil:
		return false, false, err
	}
	l := obj.GetLabels()
	ours = l[LabelManagedBy] == ManagedByValue && l[LabelApp] == key.Name
	if live && ours {
		// This is now the newest version the controller knows: once the
		// cache holds it, the cache is trusted again (a change by someone
		// else, such as a status written by istiod, costs one read, not one
		// per rebuild).
		r.remember(obj, key, obj.GetResourceVersion())
	}
	return ours, true, nil
}

// errCacheBehind: the cache has not yet delivered this controller's own
// last write of a shared object; the rebuild runs again in cacheRetry (the
// write's watch event usually brings it back sooner).
var errCacheBehind = errors.New("the cache has not delivered the last write yet")

const (
	// cacheCatchUp is how long after its own write a rebuild trusts that a
	// cache behind it is only late; cacheRetry when it tries again.
	cacheCatchUp = 100 * time.Millisecond
	cacheRetry   = 20 * time.Millisecond
)

// reconcileService applies the app's Service, which forwards port 80 to the
// named container port of every release's pods.
func (r *AppReconciler) reconcileService(ctx context.Context, s *appScope) (ctrl.Result, error) {
	owners := s.owners
	if len(owners) == 0 || slices.Contains(s.foreign, "Service") {
		return ctrl.Result{}, nil
	}
	selector := map[string]string{PodLabelApp: s.key.Name, LabelManagedBy: ManagedByValue}
	if cur := s.service; cur != nil && sameMeta(cur, s.key.Name, owners) &&
		maps.Equal(cur.Spec.Selector, selector) && len(cur.Spec.Ports) == 1 && servicePortIsOurs(cur.Spec.Ports[0]) {
		return ctrl.Result{}, nil
	}
	ac := corev1ac.Service(s.key.Name, s.key.Namespace).
		WithLabels(managedLabels(s.key.Name)).
		WithOwnerReferences(ownerApplyConfigs(owners)...).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(selector).
			WithPorts(corev1ac.ServicePort().WithName(portName).WithPort(routing.ServicePort).
				WithProtocol(corev1.ProtocolTCP).WithAppProtocol("http").WithTargetPort(intstr.FromString(portName))))
	if wait := r.throttle(s); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if err := r.Apply(ctx, ac, client.FieldOwner(appFieldManager), client.ForceOwnership); err != nil {
		err = fmt.Errorf("apply Service %s: %w", s.key, err)
		// Without the Service no route reaches anyone; an existing one still serves.
		s.noteWriteError(err, s.service == nil)
		return ctrl.Result{}, err
	}
	metrics.Writes.WithLabelValues("Service", "apply").Inc()
	r.remember(&corev1.Service{}, s.key, ptr.Deref(ac.ResourceVersion, ""))
	return ctrl.Result{}, nil
}

func servicePortIsOurs(p corev1.ServicePort) bool {
	return p.Name == portName && p.Port == routing.ServicePort && p.Protocol == corev1.ProtocolTCP &&
		p.AppProtocol != nil && *p.AppProtocol == "http" && p.TargetPort == intstr.FromString(portName)
}

// reconcileRouting writes the VirtualService and DestinationRule, make before
// break: first the DestinationRule with every new subset (keeping those the
// current routes still name, and those still draining), then the
// VirtualService, then the DestinationRule without the subsets no route names
// any more and whose drain has ended (routing.PlanSubsets). Each subset
// drains on its own clock (routing.NextDrains), kept in its release's status.
func (r *AppReconciler) reconcileRouting(ctx context.Context, s *appScope) (ctrl.Result, error) {
	owners := s.owners
	if len(owners) == 0 || len(s.foreign) > 0 {
		// Nothing to own the objects yet (or only retiring releases left: the
		// objects go with the last of them, through the garbage collector); or
		// a foreign object holds one of the app's names, and routing through
		// half of the objects would send requests to undefined subsets.
		return ctrl.Result{}, nil
	}
	p := planRouting(s.desiredDR, s.currentDR(), s.desiredVS, s.currentVS(), s.drains, r.Config.DrainDelay, s.now)
	if p.WriteFirst { // always so when there is no DestinationRule yet
		if err := r.applyDestinationRule(ctx, s, p.First, owners); err != nil {
			return r.writeFailed(s, err, true)
		}
	}
	if err := r.applyVirtualService(ctx, s, p.VirtualService, routedOwners(owners, p.VirtualService, s.decision)); err != nil {
		return r.writeFailed(s, err, true)
	}
	s.drains = p.DrainsAfterRoutes
	if err := r.applyDestinationRule(ctx, s, p.Last, owners); err != nil {
		// The routes are written: statuses say so; the subsets left go later.
		return r.writeFailed(s, err, false)
	}
	s.drains = p.Drains
	// Come back when the next drain ends, to take its subset out.
	return ctrl.Result{RequeueAfter: p.Next}, nil
}

// writeFailed turns a failed or held-back write into the rebuild's result;
// held: the write held back the routing itself.
func (r *AppReconciler) writeFailed(s *appScope, err error, held bool) (ctrl.Result, error) {
	var t throttled
	if errors.As(err, &t) {
		return ctrl.Result{RequeueAfter: time.Duration(t)}, nil
	}
	s.noteWriteError(err, held)
	return ctrl.Result{}, err
}

// remember records the newest resourceVersion this controller knows an object
// at, from its own write or a read of the API server ("" once deleted); seen
// tells whether a cached copy is that version.
func (r *AppReconciler) remember(obj client.Object, key client.ObjectKey, rv string) {
	r.writesMu.Lock()
	defer r.writesMu.Unlock()
	if r.written == nil {
		r.written, r.writtenAt = map[string]string{}, map[string]time.Time{}
	}
	id := fmt.Sprintf("%T/%s", obj, key)
	r.written[id], r.writtenAt[id] = rv, r.now()
}

// since is how long ago the controller last remembered obj's version
// (a long time when never).
func (r *AppReconciler) since(obj client.Object) time.Duration {
	r.writesMu.Lock()
	defer r.writesMu.Unlock()
	at, ok := r.writtenAt[fmt.Sprintf("%T/%s", obj, client.ObjectKeyFromObject(obj))]
	if !ok {
		return time.Duration(math.MaxInt64)
	}
	return r.now().Sub(at)
}

// settled notes that an app's objects are as desired and read back: no
// change is held, and the next one comes alone.
func (r *AppReconciler) settled(key client.ObjectKey) {
	r.writesMu.Lock()
	defer r.writesMu.Unlock()
	if b := r.buckets[key]; b != nil {
		b.heldSince = time.Time{}
		b.run, b.settled = 0, true
	}
}

// forget drops what the controller remembers of an app that is gone.
func (r *AppReconciler) forget(key client.ObjectKey) {
	r.writesMu.Lock()
	defer r.writesMu.Unlock()
	delete(r.buckets, key)
	for _, obj := range []client.Object{&corev1.Service{}, &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}} {
		delete(r.writtenAt, fmt.Sprintf("%T/%s", obj, key))
	}
	for _, obj := range []client.Object{&corev1.Service{}, &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}} {
		delete(r.written, fmt.Sprintf("%T/%s", obj, key))
	}
}

func (r *AppReconciler) seen(obj client.Object) bool {
	r.writesMu.Lock()
	defer r.writesMu.Unlock()
	rv, ok := r.written[fmt.Sprintf("%T/%s", obj, client.ObjectKeyFromObject(obj))]
	return !ok || rv == obj.GetResourceVersion()
}

// throttled asks for the rebuild to be retried after a while.
type throttled time.Duration

func (t throttled) Error() string { return fmt.Sprintf("throttled for %s", time.Duration(t)) }

func errThrottled(d time.Duration) error { return throttled(d) }

// throttle shapes an app's writes, and tells a pipeline's steps from a
// burst by what they change and whether the app settled in between. A change
// that finds the app settled (its last rebuild found nothing to write: every
// earlier change written and read back) goes out at once, even during a
// burst. A change of no more releases' routing than one pipeline's step (a
// release deleted and the next applied, or a stable release promoted, its
// predecessors moving along the line not counted: pipelineStep) goes out at
// once too before the app settles (a pipeline working through an app whose
// writes are slow: each write carries what came during the one before). A
// change of more,
// before the app settles, counts toward a burst: writeBurst of them in a row
// go out at once (one `kubectl apply -f` of a few releases); beyond those,
// the changes are a burst (many pipelines at once, or their pods coming up
// faster than the app's writes settle) and are held until they pause for
// burstEnd (the burst is over), or at the latest BurstMaxHold after the first
// held one, and go out together. A large app's writes are slow (O(routes)),
// so each of its rebuilds finds more changes and a burst coalesces sooner.
// With BurstMaxHold 0, a burst's writes are paced MinWriteInterval apart
// instead. Within one rebuild, writes after the first are never held back
// (make before break needs them in a row). It returns how long to wait, and
// marks the rebuild as held back.
func (r *AppReconciler) throttle(s *appScope) time.Duration {
	interval := r.Config.MinWriteInterval
	if s.writing || interval <= 0 {
		s.writing = true
		return 0
	}
	r.writesMu.Lock()
	defer r.writesMu.Unlock()
	if r.buckets == nil {
		r.buckets = map[client.ObjectKey]*bucket{}
	}
	now := r.now()
	b, ok := r.buckets[s.key]
	if !ok {
		b = &bucket{settled: true}
		r.buckets[s.key] = b
	}
	if fp := s.fingerprint(); fp != b.fingerprint {
		if b.bursting && now.Sub(b.changedAt) >= burstEnd {
			b.bursting = false
		}
		b.fingerprint, b.changedAt = fp, now
	}
	routed := routedState(s.decision)
	write := func() time.Duration {
		b.settled = false
		b.lastWrite, b.routed = now, routed
		s.writing = true
		return 0
	}
	if b.settled {
		// Every earlier change is written and read back: this one comes
		// alone, and goes out at once, even while a burst lasts.
		b.run = 0
		return write()
	}
	if !b.bursting {
		if changedReleases(b.routed, routed) <= pipelineStep {
			// One pipeline's step: at once. (A stream of them, each before
			// the app settles, is a pipeline working through an app whose
			// writes are slow: pacing it measured 29 times the floor.)
			b.run = 0
			return write()
		}
		if b.run < writeBurst {
			b.run++
			return write()
		}
		if r.Config.BurstMaxHold <= 0 {
			if wait := b.lastWrite.Add(interval).Sub(now); wait > 0 {
				s.throttled = true
				return wait
			}
			return write()
		}
		b.bursting = true
	}
	if b.heldSince.IsZero() {
		b.heldSince = now
	}
	quiet, held := now.Sub(b.changedAt), now.Sub(b.heldSince)
	if quiet >= burstEnd || held >= r.Config.BurstMaxHold {
		b.heldSince = time.Time{}
		return write()
	}
	s.throttled = true
	return min(burstEnd-quiet, r.Config.BurstMaxHold-held)
}

// releaseRouting is what a release's routing is, as far as the throttle
// tells changes apart.
type releaseRouting struct {
	phase  v1alpha1.Phase
	weight int32
	subset string
}

// routedState is each release's routing in a decision.
func routedState(d routing.Decision) map[string]releaseRouting {
	out := make(map[string]releaseRouting, len(d.Outcomes))
	for name, o := range d.Outcomes {
		out[name] = releaseRouting{phase: o.Phase, weight: o.Weight, subset: o.Subset}
	}
	return out
}

// changedReleases counts the releases whose routing differs between two
// states (one present in only one of them counts), less those that only
// moved along their lineage (alongTheLine): one stable release promoted, or
// one deleted (its Standby routed again), is one change, not three.
func changedReleases(before, after map[string]releaseRouting) int {
	n := 0
	for name, a := range after {
		b, ok := before[name]
		switch {
		case ok && a == b:
		case ok && alongTheLine(b.phase, a.phase):
		default:
			n++
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			n++
		}
	}
	return n
}

// alongTheLine: a release moved along its lineage because another came or
// went: down (Live to Standby or Superseded, Standby to Superseded) for a
// newer one, or back up (Standby to Live) for a stable deleted.
func alongTheLine(before, after v1alpha1.Phase) bool {
	switch before {
	case v1alpha1.PhaseLive:
		return after == v1alpha1.PhaseStandby || after == v1alpha1.PhaseSuperseded
	case v1alpha1.PhaseStandby:
		return after == v1alpha1.PhaseLive || after == v1alpha1.PhaseSuperseded
	}
	return false
}

const (
	// pipelineStep is how many releases' routing one pipeline's step changes
	// at once (a release deleted and the next applied; a new stable routed
	// counts one, see changedReleases). A change of no more than this goes
	// out at once even before the app settles.
	pipelineStep = 2
	// writeBurst is how many rebuilds of one app may write in a row, each
	// changing more releases than a pipeline's step, without the app settling
	// in between, before its changes are held as a burst.
	writeBurst = 4
	// burstEnd: a burst is over once its changes pause this long; what it
	// held is written then.
	burstEnd = 2 * time.Second
)

// bucket is what the throttle knows of an app's recent writes.
type bucket struct {
	// settled: the app's last rebuild found nothing to write. run counts
	// the rebuilds in a row that wrote more than a pipeline's step, the app
	// not settling between; lastWrite is when the last write was, and
	// routed what it wrote.
	settled   bool
	run       int
	lastWrite time.Time
	routed    map[string]releaseRouting
	// fingerprint is the last desired state seen, changedAt when it changed.
	fingerprint uint64
	changedAt   time.Time
	// bursting: changes are held to be written together; heldSince is when
	// the first change not yet written was held.
	bursting  bool
	heldSince time.Time
}

// referencedSubsets are the subsets the app's own VirtualService routes to or
// its own DestinationRule defines, as last read or written.
func referencedSubsets(s *appScope) map[string]bool {
	out := routing.RoutedSubsets(s.currentVS())
	for name := range routing.DefinedSubsets(s.currentDR()) {
		out[name] = true
	}
	return out
}

func (r *AppReconciler) applyDestinationRule(ctx context.Context, s *appScope, spec *networking.DestinationRule, owners []metav1.OwnerReference) error {
	metaSame, specSame := s.dr != nil && sameMeta(s.dr, s.key.Name, owners), s.dr != nil && proto.Equal(s.currentDR(), spec)
	if metaSame && specSame {
		return nil
	}
	if wait := r.throttle(s); wait > 0 {
		return errThrottled(wait)
	}
	ac := istioac.DestinationRule(s.key.Name, s.key.Namespace)
	ac.WithLabels(managedLabels(s.key.Name)).WithOwnerReferences(istioOwnerApplyConfigs(owners)...)
	ac.Spec = spec
	obj := &networkingv1.DestinationRule{}
	start := time.Now()
	if err := r.applyIstio(ctx, ac, obj); err != nil {
		return fmt.Errorf("apply DestinationRule %s: %w", s.key, err)
	}
	metrics.Writes.WithLabelValues("DestinationRule", "apply").Inc()
	ctrl.LoggerFrom(ctx).Info("Applied DestinationRule", "destinationRule", klog.KObj(obj), "subsets", len(spec.Subsets),
		"specChanged", !specSame, "metadataChanged", !metaSame, "took", time.Since(start))
	r.remember(obj, s.key, obj.ResourceVersion)
	s.dr = obj
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "SubsetsUpdated", "Apply", "Subsets: %s", subsetNames(spec))
	return nil
}

func (r *AppReconciler) applyVirtualService(ctx context.Context, s *appScope, spec *networking.VirtualService, owners []metav1.OwnerReference) error {
	log := ctrl.LoggerFrom(ctx)
	if spec == nil {
		if s.vs == nil {
			return nil
		}
		if wait := r.throttle(s); wait > 0 {
			return errThrottled(wait)
		}
		if err := r.Delete(ctx, s.vs, client.Preconditions{UID: &s.vs.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete VirtualService %s: %w", s.key, err)
		}
		metrics.Writes.WithLabelValues("VirtualService", "delete").Inc()
		r.remember(s.vs, s.key, "")
		log.Info("Deleted VirtualService: no release can be routed", "virtualService", klog.KObj(s.vs))
		s.vs = nil
		return nil
	}
	if s.vs != nil && sameMeta(s.vs, s.key.Name, owners) && sameSpec(s.vs, s.vsHashOf(spec)) {
		return nil
	}
	if wait := r.throttle(s); wait > 0 {
		return errThrottled(wait)
	}
	ac := istioac.VirtualService(s.key.Name, s.key.Namespace)
	ac.WithLabels(managedLabels(s.key.Name)).WithOwnerReferences(istioOwnerApplyConfigs(owners)...)
	ac.Spec = spec
	obj := &networkingv1.VirtualService{}
	start := time.Now()
	if err := r.applyIstio(ctx, ac, obj); err != nil {
		return fmt.Errorf("apply VirtualService %s: %w", s.key, err)
	}
	metrics.Writes.WithLabelValues("VirtualService", "apply").Inc()
	r.remember(obj, s.key, obj.ResourceVersion)
	log.Info("Applied VirtualService", "virtualService", klog.KObj(obj), "routes", len(spec.Http), "took", time.Since(start))
	compact(obj)
	s.vs = obj
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "RoutesUpdated", "Apply", "Routes: %s", routeSummary(spec))
	return nil
}

// applyIstio server-side applies an Istio apply configuration and reads the
// result back into obj.
func (r *AppReconciler) applyIstio(ctx context.Context, ac any, obj client.Object) error {
	u, err := toUnstructured(ac)
	if err != nil {
		return err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(appFieldManager), client.ForceOwnership); err != nil {
		return err
	}
	b, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, obj)
}

// releaseDrained carries out planRetirement: it drops the drain finalizer
// of every deleted release whose route and subset have left the app's
// objects, deletes the Deployments whose releases are retired once their
// routes have drained, and drops the finalizer of every Deployment being
// deleted once drained; only then may their pods go.
func (r *AppReconciler) releaseDrained(ctx context.Context, s *appScope) (ctrl.Result, error) {
	p := planRetirement(s.releases, s.deployments, len(s.decision.Live) > 0, routing.RoutedSubsets(s.currentVS()),
		routing.DefinedSubsets(s.currentDR()), s.drains, r.Config.DrainDelay, s.now)
	log := ctrl.LoggerFrom(ctx)
	var errs []error
	for _, name := range p.ReleaseFinalizers {
		rel := s.releases[name]
		if err := r.dropFinalizer(ctx, rel, "AppRelease"); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Recorder.Eventf(rel, nil, corev1.EventTypeNormal, "Drained", "Delete",
			"Routes and subset removed from %s; the release and its Deployment may go", s.key.Name)
	}
	for _, name := range p.DeleteDeployments {
		d := s.deployments[name].object()
		if err := r.Delete(ctx, d, client.Preconditions{UID: &d.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete Deployment %s: %w", klog.KObj(d), err))
			continue
		}
		log.Info("Deleted a drained Deployment", "deployment", klog.KObj(d))
		if rel := s.releases[name]; rel != nil {
			r.Recorder.Eventf(rel, d, corev1.EventTypeNormal, "DeploymentDeleted", "Delete",
				"Deleted Deployment %s: the release is retired and no route names its pods any more", d.Name)
		}
		// Its deletion brings this controller back to drop the finalizer.
	}
	for _, name := range p.DeploymentFinalizers {
		d := s.deployments[name].object()
		if err := r.dropFinalizer(ctx, d, "Deployment"); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("Released a drained Deployment", "deployment", klog.KObj(d))
	}
	for _, name := range p.ReleaseFinalizers {
		delete(s.releases, name) // gone: no status to write
	}
	return ctrl.Result{RequeueAfter: p.Next}, kerrors.NewAggregate(errs)
}

// dropFinalizer removes Switchyard's drain finalizer from obj (of kind, for
// the error), by a patch that fails if obj changed since it was read.
func (r *AppReconciler) dropFinalizer(ctx context.Context, obj client.Object, kind string) error {
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(obj, Finalizer)
	if err := r.Patch(ctx, obj, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("remove finalizer of %s %s: %w", kind, klog.KObj(obj), err)
	}
	return nil
}

// pruneSuperseded deletes superseded releases (with --prune-superseded) once
// their status says so; their routes and subset are gone already.
func (r *AppReconciler) pruneSuperseded(ctx context.Context, s *appScope) (ctrl.Result, error) {
	if !r.Config.PruneSuperseded {
		return ctrl.Result{}, nil
	}
	var res ctrl.Result
	for _, name := range sortedNames(s.releases) {
		rel := s.releases[name]
		if s.decision.Outcomes[name].Phase != v1alpha1.PhaseSuperseded || !rel.DeletionTimestamp.IsZero() {
			continue
		}
		if rel.Status.Phase != v1alpha1.PhaseSuperseded {
			// Say so in its status first; prune on the next pass.
			res.RequeueAfter = minRequeue(res.RequeueAfter, time.Second)
			continue
		}
		if wait := r.graceLeft(rel); wait > 0 {
			res.RequeueAfter = minRequeue(res.RequeueAfter, wait)
			continue
		}
		if err := r.Delete(ctx, rel, client.Preconditions{UID: &rel.UID}); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("prune superseded AppRelease %s: %w", klog.KObj(rel), err)
		}
		ctrl.LoggerFrom(ctx).Info("Pruned superseded release", "release", klog.KObj(rel))
	}
	return res, nil
}

// graceLeft is how long an older build stays before it is pruned, so the
// pipeline that applied it can read why it never took traffic.
func (r *AppReconciler) graceLeft(rel *v1alpha1.AppRelease) time.Duration {
	c := meta.FindStatusCondition(rel.Status.Conditions, v1alpha1.ConditionStalled)
	if c == nil || c.Reason != v1alpha1.ReasonOlderBuild {
		return 0
	}
	return c.LastTransitionTime.Add(r.Config.SupersededGrace).Sub(r.now())
}

func minRequeue(cur, d time.Duration) time.Duration {
	if cur == 0 || d < cur {
		return d
	}
	return cur
}

// ownerReferences are non-controller references to every live release with a
// subset (so a new release changes the owners once, together with its subset):
// the shared objects go, through the garbage collector, with the last of them.
func ownerReferences(d routing.Decision) []metav1.OwnerReference {
	withSubset := make(map[string]bool, len(d.Subsets))
	for _, s := range d.Subsets {
		withSubset[s.Release] = true
	}
	refs := make([]metav1.OwnerReference, 0, len(d.Live))
	for _, rel := range d.Live {
		if !withSubset[rel.Name] {
			continue
		}
		refs = append(refs, metav1.OwnerReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "AppRelease", Name: rel.Name, UID: rel.UID,
		})
	}
	return refs
}

// routedOwners are the VirtualService's owners: the releases it routes to and
// those standing by. It changes when its routes do, and not when a release is
// taken in (that changes the DestinationRule and the Service only), so a
// release coming up costs one VirtualService write, not two. Standbys stay
// owners so that a foreground deletion of the routed release (Argo CD prunes
// that way) does not take the VirtualService with it while a rollback target
// is left.
func routedOwners(owners []metav1.OwnerReference, vs *networking.VirtualService, d routing.Decision) []metav1.OwnerReference {
	if vs == nil {
		return nil
	}
	routed := map[string]bool{}
	for _, h := range vs.Http {
		for _, d := range h.Route {
			routed[d.GetDestination().GetSubset()] = true
		}
	}
	out := make([]metav1.OwnerReference, 0, len(routed))
	for _, o := range owners {
		if routed[routing.SubsetName(o.Name)] || d.Outcomes[o.Name].Phase == v1alpha1.PhaseStandby {
			out = append(out, o)
		}
	}
	return out
}

func ownerApplyConfigs(refs []metav1.OwnerReference) []*metav1ac.OwnerReferenceApplyConfiguration {
	out := make([]*metav1ac.OwnerReferenceApplyConfiguration, 0, len(refs))
	for _, ref := range refs {
		out = append(out, metav1ac.OwnerReference().WithAPIVersion(ref.APIVersion).WithKind(ref.Kind).
			WithName(ref.Name).WithUID(ref.UID))
	}
	return out
}

// sameMeta: the object carries exactly the labels and owner references Switchyard gives it.
func sameMeta(o metav1.Object, app string, owners []metav1.OwnerReference) bool {
	l := o.GetLabels()
	if l[LabelManagedBy] != ManagedByValue || l[LabelApp] != app {
		return false
	}
	have := o.GetOwnerReferences()
	if digest, ok := o.GetAnnotations()[annotationCachedOwners]; ok && len(have) == 0 {
		// As the cache holds it (withoutOwners). The owners asked for name
		// no controller, so an object whose owner is one differs.
		return digest == ownersDigest(owners)
	}
	if len(have) != len(owners) {
		return false
	}
	byUID := make(map[types.UID]metav1.OwnerReference, len(have))
	for _, ref := range have {
		byUID[ref.UID] = ref
	}
	for _, want := range owners {
		got, ok := byUID[want.UID]
		if !ok || got.Name != want.Name || got.Kind != want.Kind || got.APIVersion != want.APIVersion || got.Controller != nil {
			return false
		}
	}
	return true
}

func istioOwnerApplyConfigs(refs []metav1.OwnerReference) []*istiometaac.OwnerReferenceApplyConfiguration {
	out := make([]*istiometaac.OwnerReferenceApplyConfiguration, 0, len(refs))
	for _, ref := range refs {
		out = append(out, istiometaac.OwnerReference().WithAPIVersion(ref.APIVersion).WithKind(ref.Kind).
			WithName(ref.Name).WithUID(ref.UID))
	}
	return out
}
