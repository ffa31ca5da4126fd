package routing_test

import (
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/switchyard-dev/switchyard/internal/routing"
)

func destinationRule(subsets ...string) *networking.DestinationRule {
	dr := &networking.DestinationRule{Host: "shop.shop.svc.cluster.local"}
	for _, s := range subsets {
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: s, Labels: map[string]string{routing.VersionLabel: s}})
	}
	return dr
}

func set(names ...string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

func subsetList(dr *networking.DestinationRule) string {
	var names []string
	for _, s := range dr.GetSubsets() {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func TestPlanSubsets(t *testing.T) {
	const delay = 3 * time.Second
	cases := []struct {
		name             string
		desired, current *networking.DestinationRule
		routed           map[string]bool
		drains           map[string]time.Time
		want             string
		next             time.Duration
	}{
		{name: "a new subset is defined before any route names it",
			desired: destinationRule("v1", "v2"), current: destinationRule("v1"), routed: set("v1"), want: "v1,v2"},
		{name: "a subset a route still names stays",
			desired: destinationRule("v2"), current: destinationRule("v1", "v2"), routed: set("v1"), want: "v1,v2"},
		{name: "a subset whose route left stays until its drain ends",
			desired: destinationRule("v2"), current: destinationRule("v1", "v2"), routed: set("v2"),
			drains: map[string]time.Time{"v1": t0.Add(-time.Second)}, want: "v1,v2", next: 2 * time.Second},
		{name: "a subset whose drain ended leaves",
			desired: destinationRule("v2"), current: destinationRule("v1", "v2"), routed: set("v2"),
			drains: map[string]time.Time{"v1": t0.Add(-delay)}, want: "v2"},
		{name: "each subset drains on its own clock: churn elsewhere never holds an old one",
			desired: destinationRule("v4"), current: destinationRule("v1", "v2", "v3", "v4"), routed: set("v4"),
			drains: map[string]time.Time{"v1": t0.Add(-time.Hour), "v2": t0.Add(-2 * time.Second), "v3": t0},
			want:   "v2,v3,v4", next: time.Second},
		{name: "a subset that was never routed leaves at once",
			desired: destinationRule("v1"), current: destinationRule("v1", "v2"), routed: set("v1"), want: "v1"},
		{name: "no VirtualService and no DestinationRule yet",
			desired: destinationRule("v1"), current: nil, routed: nil, want: "v1"},
		{name: "the VirtualService was deleted during a drain",
			desired: destinationRule(), current: destinationRule("v1"), routed: nil,
			drains: map[string]time.Time{"v1": t0}, want: "v1", next: delay},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			desiredBefore := subsetList(tc.desired)
			got, next := routing.PlanSubsets(tc.desired, tc.current, tc.routed, tc.drains, delay, t0)
			if subsetList(got) != tc.want || next != tc.next {
				t.Errorf("got %s (next %s), want %s (next %s)", subsetList(got), next, tc.want, tc.next)
			}
			if subsetList(tc.desired) != desiredBefore {
				t.Errorf("PlanSubsets changed its input")
			}
		})
	}
}

func TestNextDrains(t *testing.T) {
	earlier := t0.Add(-time.Second)
	cases := []struct {
		name                   string
		starts                 map[string]time.Time
		before, after, defined map[string]bool
		want                   map[string]time.Time
	}{
		{name: "a subset that lost its last route starts draining now",
			before: set("v1", "v2"), after: set("v2"), defined: set("v1", "v2"), want: map[string]time.Time{"v1": t0}},
		{name: "a drain in progress keeps its start",
			starts: map[string]time.Time{"v1": earlier}, before: set("v2"), after: set("v3"), defined: set("v1", "v2", "v3"),
			want: map[string]time.Time{"v1": earlier, "v2": t0}},
		{name: "a subset routed again stops draining",
			starts: map[string]time.Time{"v1": earlier}, before: set("v2"), after: set("v1", "v2"), defined: set("v1", "v2"),
			want: map[string]time.Time{}},
		{name: "a subset no longer defined has drained",
			starts: map[string]time.Time{"v1": earlier}, before: set("v2"), after: set("v2"), defined: set("v2"),
			want: map[string]time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := routing.NextDrains(tc.starts, tc.before, tc.after, tc.defined, t0)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for s, w := range tc.want {
				if !got[s].Equal(w) {
					t.Errorf("%s: got %v, want %v", s, got[s], w)
				}
			}
		})
	}
}
