// Package routingtest holds what tests of the routing decision share: a
// decoder from fuzzer bytes to releases, and the invariants every decision keeps.
package routingtest

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// TB is the part of testing.TB the checks use.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// ReleasesFromBytes turns fuzzer bytes into an app's releases, six bytes a
// release: created (low 4 bits) and build (high 4 bits), environment, hosts,
// branch or canary, weight, flags (deployment, available, failed, deleting,
// superseded, accepted, was routed: a Standby or Live before).
func ReleasesFromBytes(data []byte) []routing.Release {
	envs := []string{"production", "staging", "pre-staging"}
	hostSets := [][]string{{"shop.example.com"}, {"staging.shop.example.com"},
		{"pre.shop.example.com", "pre2.shop.example.com"}, nil}
	var rs []routing.Release
	for i := 0; i+6 <= len(data) && len(rs) < 64; i += 6 {
		b := data[i : i+6]
		r := routing.Release{
			Name:        fmt.Sprintf("shop-%d", len(rs)),
			UID:         types.UID(fmt.Sprintf("uid-%d", len(rs))),
			Created:     time.Date(2026, 1, 1, 0, int(b[0]%16), 0, 0, time.UTC),
			Build:       int64(b[0] >> 4),
			Environment: envs[int(b[1])%len(envs)],
			Hosts:       hostSets[int(b[2])%len(hostSets)],
		}
		switch br := b[3] % 5; {
		case br >= 1 && br <= 3:
			r.Branch = fmt.Sprintf("feature-%d", br)
		case br == 4:
			w := int32(b[4]) % 101
			r.Canary = &w
		}
		flags := b[5]
		r.HasDeployment = flags&1 != 0
		r.Available = r.HasDeployment && flags&2 != 0
		r.Failed = r.HasDeployment && !r.Available && flags&4 != 0
		r.Deleting = flags&8 != 0
		r.Superseded = flags&16 != 0
		r.Accepted = r.HasDeployment || flags&32 != 0
		r.WasRouted = r.HasDeployment && flags&64 != 0
		rs = append(rs, r)
	}
	return rs
}

// CheckInvariants holds for every decision: weights sum to 100 per route,
// routes name only defined subsets of Available releases, a subset is defined
// only once its release is accepted or has a Deployment, and nothing deleting or superseded
// is routed or defined.
func CheckInvariants(t TB, in []routing.Release, d routing.Decision) {
	t.Helper()
	byName := map[string]routing.Release{}
	for _, r := range in {
		byName[r.Name] = r
	}
	defined := map[string]string{}
	for _, s := range d.Subsets {
		defined[s.Subset] = s.Release
		if r := byName[s.Release]; r.Deleting || d.Outcomes[r.Name].Phase == v1alpha1.PhaseSuperseded {
			t.Errorf("subset %s of %s release %s is defined", s.Subset, d.Outcomes[r.Name].Phase, r.Name)
		}
		if r := byName[s.Release]; !r.HasDeployment && !r.Accepted {
			t.Errorf("subset %s is defined before release %s is accepted or has a Deployment", s.Subset, s.Release)
		}
	}
	for _, route := range d.Routes {
		sum := int32(0)
		for _, dst := range route.Destinations {
			sum += dst.Weight
			if dst.Weight <= 0 {
				t.Errorf("route %s: destination %s has weight %d", route.Name, dst.Subset, dst.Weight)
			}
			if defined[dst.Subset] != dst.Release {
				t.Errorf("route %s names subset %s, which is not defined", route.Name, dst.Subset)
			}
			if !byName[dst.Release].Available {
				t.Errorf("route %s sends traffic to %s, which is not Available", route.Name, dst.Release)
			}
		}
		if sum != 100 && len(route.Destinations) > 0 { // none: the rule answers 503
			t.Errorf("route %s: weights sum to %d", route.Name, sum)
		}
	}
	for name, o := range d.Outcomes {
		if o.Weight < 0 || o.Weight > 100 {
			t.Errorf("release %s: weight %d", name, o.Weight)
		}
	}
}
