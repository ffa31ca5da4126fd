package routing

import (
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// RoutedSubsets are the subsets a VirtualService spec routes to (nil: none).
func RoutedSubsets(vs *networking.VirtualService) map[string]bool {
	out := map[string]bool{}
	for _, h := range vs.GetHttp() {
		for _, d := range h.GetRoute() {
			out[d.GetDestination().GetSubset()] = true
		}
	}
	return out
}

// DefinedSubsets are the subsets a DestinationRule spec defines (nil: none).
func DefinedSubsets(dr *networking.DestinationRule) map[string]bool {
	out := map[string]bool{}
	for _, s := range dr.GetSubsets() {
		out[s.GetName()] = true
	}
	return out
}

// NextDrains is when each subset's drain started, after the routes changed
// from routing the subsets before to routing those after, at now: a subset
// that lost its last route starts draining now, one routed again stops, the
// others keep their start. Only subsets still defined (defined) are kept.
// starts is not changed.
func NextDrains(starts map[string]time.Time, before, after, defined map[string]bool, now time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(starts))
	for s, t := range starts {
		if defined[s] && !after[s] {
			out[s] = t
		}
	}
	for s := range before {
		if !after[s] && defined[s] {
			if _, ok := out[s]; !ok {
				out[s] = now
			}
		}
	}
	return out
}

// PlanSubsets is the DestinationRule to write while the VirtualService routes
// to the subsets routed: the desired subsets, and every subset current
// defines that a route still names or whose drain (its start in drains plus
// delay) has not ended at now, so no proxy is left with a route to a subset
// that is gone (make before break; Istio's "Avoid 503 errors while
// reconfiguring service routes"). It also returns how long until the first of
// the kept drains ends (0: none is kept). Its inputs are not changed.
func PlanSubsets(desired, current *networking.DestinationRule, routed map[string]bool,
	drains map[string]time.Time, delay time.Duration, now time.Time) (*networking.DestinationRule, time.Duration) {
	have := DefinedSubsets(desired)
	var keep []*networking.Subset
	var next time.Duration
	for _, s := range current.GetSubsets() {
		name := s.GetName()
		if have[name] {
			continue
		}
		start, draining := drains[name]
		left := start.Add(delay).Sub(now)
		switch {
		case routed[name]:
		case draining && left > 0:
			if next == 0 || left < next {
				next = left
			}
		default:
			continue
		}
		have[name] = true
		keep = append(keep, s)
	}
	if len(keep) == 0 {
		return desired, next
	}
	out := proto.Clone(desired).(*networking.DestinationRule)
	for _, s := range keep {
		out.Subsets = append(out.Subsets, proto.Clone(s).(*networking.Subset))
	}
	slices.SortFunc(out.Subsets, func(a, b *networking.Subset) int { return strings.Compare(a.Name, b.Name) })
	return out, next
}
