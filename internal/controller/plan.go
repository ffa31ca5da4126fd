package controller

import (
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// The write path decides purely, as the routing does: what one rebuild writes
// to route an app (planRouting) and what it lets go once drained
// (planRetirement) follow from the decision, the objects as they are, the
// drain starts and the time. The phases in app_phases.go only carry them out.

// routingPlan is the ordered writes that route an app, make before break.
type routingPlan struct {
	// First is the DestinationRule before the VirtualService is written: every
	// desired subset, and the current ones still routed or draining.
	First *networking.DestinationRule
	// WriteFirst: First's subsets differ from the current ones, so it is
	// written before the VirtualService. When they do not, a change of the
	// DestinationRule's owners alone (a release coming up, or going) waits
	// for Last, right after the routes, rather than hold them back by a
	// write.
	WriteFirst bool
	// VirtualService is the desired spec; nil deletes it (nothing routable).
	VirtualService *networking.VirtualService
	// DrainsAfterRoutes are the drain starts once the VirtualService is
	// written (a subset that lost its last route starts draining then).
	DrainsAfterRoutes map[string]time.Time
	// Last is the DestinationRule after the VirtualService: the subsets whose
	// drain has ended are gone.
	Last *networking.DestinationRule
	// Drains are the drain starts once Last is written; Next is when the
	// first drain still running ends (0: none), to write again then.
	Drains map[string]time.Time
	Next   time.Duration
}

// planRouting plans the writes that take the app from its current objects
// (nil: absent) to the desired ones, each subset draining delay after its last
// route left (drains: when each draining subset's last route left).
func planRouting(desiredDR, currentDR *networking.DestinationRule, desiredVS, currentVS *networking.VirtualService,
	drains map[string]time.Time, delay time.Duration, now time.Time) routingPlan {
	before := routing.RoutedSubsets(currentVS)
	p := routingPlan{VirtualService: desiredVS}
	p.First, _ = routing.PlanSubsets(desiredDR, currentDR, before, drains, delay, now)
	p.WriteFirst = currentDR == nil || !proto.Equal(p.First, currentDR)
	after := routing.RoutedSubsets(desiredVS)
	p.DrainsAfterRoutes = routing.NextDrains(drains, before, after, routing.DefinedSubsets(p.First), drainStart(now))
	p.Last, p.Next = routing.PlanSubsets(desiredDR, p.First, after, p.DrainsAfterRoutes, delay, now)
	p.Drains = routing.NextDrains(p.DrainsAfterRoutes, nil, nil, routing.DefinedSubsets(p.Last), now)
	return p
}

// drainStart is a drain's start as a status keeps it, in whole seconds: now
// rounded up, so the drain that a restarted operator reads back is never
// shorter than the one this one planned.
func drainStart(now time.Time) time.Time {
	if whole := now.Truncate(time.Second); !whole.Equal(now) {
		return whole.Add(time.Second)
	}
	return now
}

// retirement is what a rebuild lets go, once drained.
type retirement struct {
	// ReleaseFinalizers are the deleted releases (by name) whose drain
	// finalizer goes: their route and subset have left the app's objects.
	ReleaseFinalizers []string
	// DeleteDeployments are the Deployments (by name) of releases that are
	// gone, deleting, superseded or replaced by another of their name, whose
	// routes have drained.
	DeleteDeployments []string
	// DeploymentFinalizers are the Deployments being deleted whose drain
	// finalizer goes: their routes have drained, so may their pods.
	DeploymentFinalizers []string
	// Next is when the first drain still holding one of them ends (0: none).
	Next time.Duration
}

// planRetirement decides what to let go, given the app's releases and their
// Deployments (by name), whether any release is still live, the subsets the
// app's objects route to and define as last read or written, and the drain
// starts. A release's finalizer goes once no object of the app names its
// subset (or no live release is left: the objects go with the last one); a
// Deployment (and its pods) only once no route names its subset and its
// drain has ended.
func planRetirement(releases map[string]*v1alpha1.AppRelease, deployments map[string]*deploymentRecord, live bool,
	routed, defined map[string]bool, drains map[string]time.Time, delay time.Duration, now time.Time) retirement {
	var out retirement
	for _, name := range sortedNames(releases) {
		rel := releases[name]
		subset := routing.SubsetName(name)
		if rel.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(rel, Finalizer) ||
			(live && (routed[subset] || defined[subset])) {
			continue
		}
		out.ReleaseFinalizers = append(out.ReleaseFinalizers, name)
	}
	for _, name := range sortedNames(deployments) {
		d := deployments[name]
		if d.Owner == "" {
			// Labelled like Switchyard's, but no release's: never touched.
			continue
		}
		rel := releases[name]
		deleting := !d.DeletionTimestamp.IsZero()
		retired := rel == nil || !rel.DeletionTimestamp.IsZero() || rel.Status.Phase == v1alpha1.PhaseSuperseded || !runs(d, rel)
		if (!deleting && !retired) || (deleting && !controllerutil.ContainsFinalizer(d, Finalizer)) {
			continue
		}
		subset := routing.SubsetName(name)
		if routed[subset] {
			continue
		}
		if start, ok := drains[subset]; ok {
			if left := start.Add(delay).Sub(now); left > 0 {
				if out.Next == 0 || left < out.Next {
					out.Next = left
				}
				continue
			}
		}
		if deleting {
			out.DeploymentFinalizers = append(out.DeploymentFinalizers, name)
		} else {
			out.DeleteDeployments = append(out.DeleteDeployments, name)
		}
	}
	return out
}
