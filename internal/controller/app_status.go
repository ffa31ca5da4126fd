package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// patchStatuses writes each release's status where the rebuild changed it,
// with an event for every change of phase or refusal. The patches go out
// statusWorkers at a time (each to its own release): a rebuild that moves
// hundreds of releases, or a few on an API server slowed by another app's
// burst, holds its app's worker for the slowest of a few round trips
// rather than their sum, and the app's next change waits that much less.
func (r *AppReconciler) patchStatuses(ctx context.Context, s *appScope) error {
	type change struct {
		rel  *v1alpha1.AppRelease
		want *v1alpha1.AppReleaseStatus
	}
	var changes []change
	referenced := referencedSubsets(s)
	for _, name := range sortedNames(s.releases) {
		rel := s.releases[name]
		if rel.Status.Phase == "" && rel.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(rel, Finalizer) {
			// The release controller has not taken it in yet (it is adding the
			// finalizer): its first status waits for that, rather than race it.
			continue
		}
		want := r.desiredStatus(s, rel, referenced)
		var drainingSince *metav1.Time
		if t, ok := s.drains[routing.SubsetName(name)]; ok {
			drainingSince = &metav1.Time{Time: t}
		}
		want.DrainingSince = drainingSince
		if !equality.Semantic.DeepEqual(want, &rel.Status) {
			changes = append(changes, change{rel, want})
		}
	}
	errs := make([]error, len(changes))
	for i := range errs {
		// What a cancelled context leaves unsent is an error, not a success.
		errs[i] = fmt.Errorf("patch status of AppRelease %s: not sent", klog.KObj(changes[i].rel))
	}
	workqueue.ParallelizeUntil(ctx, statusWorkers, len(changes), func(i int) {
		defer func() {
			// A panic on this goroutine would end the process; on the
			// reconcile's own, controller-runtime turns it into an error.
			if p := recover(); p != nil {
				errs[i] = fmt.Errorf("patch status of AppRelease %s: panic: %v", klog.KObj(changes[i].rel), p)
			}
		}()
		errs[i] = r.patchStatus(ctx, changes[i].rel, changes[i].want)
	})
	return kerrors.NewAggregate(errs)
}

// statusWorkers is how many status patches of one rebuild are in flight at
// once.
const statusWorkers = 8

// patchStatus writes want as rel's status (rel is the rebuild's own copy),
// and an event when its phase or Ready reason changed. A release gone
// meanwhile is no error.
func (r *AppReconciler) patchStatus(ctx context.Context, rel *v1alpha1.AppRelease, want *v1alpha1.AppReleaseStatus) error {
	patch := client.MergeFrom(rel.DeepCopy())
	before := rel.Status.Phase
	beforeReason := readyReason(&rel.Status)
	rel.Status = *want
	if err := r.Status().Patch(ctx, rel, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patch status of AppRelease %s: %w", klog.KObj(rel), err)
	}
	if after := readyReason(want); before != want.Phase || beforeReason != after {
		eventType := corev1.EventTypeNormal
		stalled := meta.IsStatusConditionTrue(want.Conditions, v1alpha1.ConditionStalled)
		if stalled && (want.Phase != v1alpha1.PhaseSuperseded || after == v1alpha1.ReasonOlderBuild) {
			eventType = corev1.EventTypeWarning
		}
		msg := ""
		if c := meta.FindStatusCondition(want.Conditions, v1alpha1.ConditionReady); c != nil {
			msg = c.Message
		}
		r.Recorder.Eventf(rel, nil, eventType, after, "Route", "%s", truncate(fmt.Sprintf("%s (phase %s, weight %d%%)", msg, want.Phase, want.Weight)))
	}
	return nil
}

// desiredStatus is the status a release's outcome calls for, with what the
// decision cannot know laid over it: a foreign object, a refused Deployment, a
// rollout not finished, a refused or failed write of the app's objects.
// referenced are the subsets the app's objects name, as last read or written.
func (r *AppReconciler) desiredStatus(s *appScope, rel *v1alpha1.AppRelease, referenced map[string]bool) *v1alpha1.AppReleaseStatus {
	name := rel.Name
	o := s.decision.Outcomes[name]
	want := rel.Status.DeepCopy()
	if rel.Status.Phase == v1alpha1.PhaseSuperseded && o.Phase == v1alpha1.PhaseSuperseded {
		// Final: it keeps the reason it was superseded for.
		want.ObservedGeneration = rel.Generation
		return want
	}
	if o.Phase == v1alpha1.PhaseSuperseded && referenced[routing.SubsetName(name)] {
		// Its route or subset has not left the app's objects yet (the drain
		// delay): Superseded, which lets its Deployment go, waits.
		return want
	}
	if len(s.foreign) > 0 && o.Phase != v1alpha1.PhaseRetiring && o.Phase != v1alpha1.PhaseSuperseded {
		o = foreignOutcome(o, s.key, s.foreign)
	}
	if why, ok := r.refusals.get(rel); ok && o.Phase != v1alpha1.PhaseRetiring && o.Phase != v1alpha1.PhaseSuperseded {
		o = refusedOutcome(o, why)
	}
	if d := s.deployments[name]; o.Ready && (o.Phase == v1alpha1.PhaseLive || o.Phase == v1alpha1.PhaseStandby) &&
		(d == nil || !stateOf(d).rolledOut(desiredHash(rel))) {
		// Routed, but its pods do not all run its current spec yet.
		o.Ready, o.Reason = false, v1alpha1.ReasonRollingOut
		o.Message = "its Deployment is rolling out the current spec; " + o.Message
	}
	if err := s.writeErr; err != nil && s.routingHeld && o.Phase != v1alpha1.PhaseRetiring && (o.Phase != rel.Status.Phase || o.Weight != rel.Status.Weight) {
		// Its routing waits for a write the API server refuses: it is
		// served as its status says, not as the decision would have it.
		setStatus(want, writeRefusedOutcome(rel.Status, err), rel.Generation)
		return want
	}
	if s.transientErr != nil && s.routingHeld && (o.Phase != rel.Status.Phase || o.Weight != rel.Status.Weight) {
		// Retried at once: its status stays as it is until the write lands.
		return want
	}
	setStatus(want, o, rel.Generation)
	return want
}

// refusedOutcome: the API server refused the release's Deployment (or the
// release's template cannot be decoded); the release says why, Stalled until
// the release or what refused it changes. A release routed before keeps its
// traffic (its previous Deployment still serves).
func refusedOutcome(o routing.Outcome, why refusal) routing.Outcome {
	if o.Phase == v1alpha1.PhasePending || o.Phase == v1alpha1.PhaseProgressing {
		o.Phase, o.Weight = v1alpha1.PhaseFailed, 0
	}
	o.Ready, o.Stalled, o.Reason, o.Message = false, true, why.Reason, why.Message
	return o
}

// writeRefusedOutcome: the release's routing waits for a write of the app's
// objects that the API server refuses; it keeps its phase and weight.
func writeRefusedOutcome(st v1alpha1.AppReleaseStatus, err error) routing.Outcome {
	phase := st.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending
	}
	return routing.Outcome{Phase: phase, Weight: st.Weight, Subset: st.Subset, Stalled: true,
		Reason:  v1alpha1.ReasonWriteRefused,
		Message: truncate("the app's routing cannot be written, so this release is served as before: " + err.Error())}
}

// foreignOutcome: a shared object named like the app is not Switchyard's, so
// nothing is routed; the release says which and why.
func foreignOutcome(o routing.Outcome, key client.ObjectKey, kinds []string) routing.Outcome {
	if o.Phase == v1alpha1.PhaseLive {
		o.Phase, o.Weight = v1alpha1.PhaseFailed, 0
	}
	o.Ready, o.Stalled, o.Reason = false, true, v1alpha1.ReasonForeignObject
	o.Message = fmt.Sprintf("%s %s already exists and was not created by Switchyard: it is left untouched and app %s is not routed; delete or rename it",
		strings.Join(kinds, " and "), key, key.Name)
	return o
}

// setStatus writes an outcome into a status.
func setStatus(st *v1alpha1.AppReleaseStatus, o routing.Outcome, generation int64) {
	st.ObservedGeneration = generation
	st.Phase, st.Weight, st.Subset = o.Phase, o.Weight, o.Subset
	setReady(st, o, generation)
	setReconciling(st, o, generation)
	setStalled(st, o, generation)
}

func setReady(st *v1alpha1.AppReleaseStatus, o routing.Outcome, generation int64) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady,
		Status: conditionStatus(o.Ready), Reason: o.Reason, Message: o.Message, ObservedGeneration: generation})
}

func setReconciling(st *v1alpha1.AppReleaseStatus, o routing.Outcome, generation int64) {
	if !o.Reconciling() {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionReconciling)
		return
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling,
		Status: metav1.ConditionTrue, Reason: o.Reason, Message: o.Message, ObservedGeneration: generation})
}

func setStalled(st *v1alpha1.AppReleaseStatus, o routing.Outcome, generation int64) {
	if !o.Stalled {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
		return
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled,
		Status: metav1.ConditionTrue, Reason: o.Reason, Message: o.Message, ObservedGeneration: generation})
}

func conditionStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

func readyReason(st *v1alpha1.AppReleaseStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func subsetNames(dr *networking.DestinationRule) string {
	names := make([]string, 0, len(dr.Subsets))
	for _, s := range dr.Subsets {
		names = append(names, s.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return truncate(strings.Join(names, ", "))
}

// truncate keeps an event's note within what the API server takes (1 KiB).
func truncate(s string) string {
	const limit = 900
	if len(s) <= limit {
		return s
	}
	return s[:limit] + fmt.Sprintf("... (%d bytes more)", len(s)-limit)
}

// routeSummary is a one-line account of a VirtualService's routes for an event.
func routeSummary(vs *networking.VirtualService) string {
	parts := make([]string, 0, len(vs.Http))
	for _, h := range vs.Http {
		var dests []string
		for _, d := range h.Route {
			dests = append(dests, fmt.Sprintf("%s %d%%", d.Destination.Subset, d.Weight))
		}
		parts = append(parts, h.Name+" -> "+strings.Join(dests, " + "))
	}
	return truncate(strings.Join(parts, "; "))
}
