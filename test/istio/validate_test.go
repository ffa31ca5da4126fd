package istio

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/routing/routingtest"
)

var opts = routing.Options{BranchHeader: "x-branch", BaggageKey: "x-branch", Gateway: "istio-system/ingressgateway", MeshEnvironment: "production", KeepPrevious: 1,
	NamespaceEnvironments: map[string]string{jobsNamespace: "staging", "production-jobs": "production", "qa-jobs": "qa"}}

// jobsNamespace is a namespace labelled switchyard.dev/environment=staging.
const jobsNamespace = "staging-jobs"

// TestValidateBites shows that Istio's validation refuses what our CRD
// schemas would let through, so a pass below means something.
func TestValidateBites(t *testing.T) {
	good := routing.Decide(routingtest.ReleasesFromBytes([]byte{0, 0, 0, 0, 0, 3, 1, 0, 0, 4, 10, 3}), opts)
	vs := routing.MakeVirtualService("shop", "shop", good, opts)
	dr := routing.MakeDestinationRule("shop", "shop", good)
	if err := Validate("shop", "shop", vs, dr); err != nil {
		t.Fatalf("a plain canary split is refused: %v", err)
	}
	cases := map[string]struct {
		vs     func(*networking.VirtualService)
		dr     func(*networking.DestinationRule)
		refuse string
	}{
		// Istio normalises weights that do not sum to 100 (and so accepts 150);
		// the builder's own invariants check the sum.
		"a negative weight":                     {vs: func(v *networking.VirtualService) { v.Http[0].Route[0].Weight = -5 }, refuse: "weight"},
		"an empty destination host":             {vs: func(v *networking.VirtualService) { v.Http[0].Route[0].Destination.Host = "" }, refuse: "domain"},
		"a route without a destination":         {vs: func(v *networking.VirtualService) { v.Http[0].Route = nil }, refuse: "route"},
		"duplicate subsets":                     {dr: func(d *networking.DestinationRule) { d.Subsets = append(d.Subsets, d.Subsets[0]) }, refuse: "duplicate"},
		"a subset name that is not a DNS label": {dr: func(d *networking.DestinationRule) { d.Subsets[0].Name = "Shop.v1" }, refuse: "subset"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v, d := routing.MakeVirtualService("shop", "shop", good, opts), routing.MakeDestinationRule("shop", "shop", good)
			if tc.vs != nil {
				tc.vs(v)
			}
			if tc.dr != nil {
				tc.dr(d)
			}
			err := Validate("shop", "shop", v, d)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.refuse) {
				t.Fatalf("want a refusal mentioning %q, got %v", tc.refuse, err)
			}
		})
	}
}

// FuzzBuilderOutputIsValid: whatever the releases, Istio accepts every
// VirtualService and DestinationRule the builder makes.
func FuzzBuilderOutputIsValid(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 3, 1, 0, 0, 4, 10, 3, 2, 1, 1, 1, 0, 3})
	f.Add([]byte{5, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 3, 2, 0, 0, 4, 100, 3, 3, 1, 1, 2, 0, 3, 4, 2, 2, 3, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := routingtest.ReleasesFromBytes(data)
		d := routing.Decide(in, opts)
		routingtest.CheckInvariants(t, in, d)
		vs := routing.MakeVirtualService("shop", "shop", d, opts)
		dr := routing.MakeDestinationRule("shop", "shop", d)
		if err := Validate("shop", "shop", vs, dr); err != nil {
			t.Fatalf("Istio refuses the builder's output: %v", err)
		}
	})
}
