package routing_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/routing/routingtest"
)

func FuzzDecide(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 3, 1, 0, 0, 4, 10, 3, 2, 1, 1, 1, 0, 3})
	f.Add([]byte{5, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 3, 2, 0, 0, 4, 100, 3, 3, 1, 1, 2, 0, 3})
	f.Add([]byte{0x31, 0, 0, 1, 0, 67, 0x20, 0, 0, 1, 0, 3, 0x12, 1, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := routingtest.ReleasesFromBytes(data)
		before := cloneReleases(in)
		opts := opts
		if len(data) > 0 {
			// A route budget of 0 (none) to 7 routes.
			opts.MaxRoutes = int(data[len(data)-1] % 8)
		}
		d := routing.Decide(in, opts)
		if !reflect.DeepEqual(in, before) {
			t.Fatal("Decide mutated its input")
		}
		routingtest.CheckInvariants(t, in, d)
		for _, r := range in {
			if _, ok := d.Outcomes[r.Name]; !ok {
				t.Fatalf("release %s has no outcome", r.Name)
			}
		}
		// Deterministic: the same input, in any order, gives the same objects.
		reversed := cloneReleases(in)
		for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
			reversed[i], reversed[j] = reversed[j], reversed[i]
		}
		d2 := routing.Decide(reversed, opts)
		if !proto.Equal(routing.MakeVirtualService("ns", "shop", d, opts), routing.MakeVirtualService("ns", "shop", d2, opts)) ||
			!proto.Equal(routing.MakeDestinationRule("ns", "shop", d), routing.MakeDestinationRule("ns", "shop", d2)) ||
			!reflect.DeepEqual(d.Outcomes, d2.Outcomes) {
			t.Fatal("the decision depends on the order of its input")
		}
		vs := routing.MakeVirtualService("ns", "shop", d, opts)
		if (vs == nil) != (len(d.Routes) == 0) {
			t.Fatal("a VirtualService without routes, or routes without a VirtualService")
		}
		if opts.MaxRoutes > 0 && len(d.Routes) > max(opts.MaxRoutes, routesWithoutBranches(d)) {
			t.Fatalf("%d routes over a budget of %d", len(d.Routes), opts.MaxRoutes)
		}
		// The compact form the cache holds reads the same, and the spec's hash
		// survives the API server's JSON round trip.
		compact := routing.CompactVirtualService(vs)
		if !reflect.DeepEqual(routing.CurrentOf(compact), routing.CurrentOf(vs)) ||
			!reflect.DeepEqual(routing.RoutedSubsets(compact), routing.RoutedSubsets(vs)) {
			t.Fatal("the compact VirtualService reads otherwise than the whole")
		}
		if vs != nil {
			b, err := json.Marshal(vs)
			if err != nil {
				t.Fatal(err)
			}
			back := &networking.VirtualService{}
			if err := json.Unmarshal(b, back); err != nil {
				t.Fatal(err)
			}
			if routing.SpecHash(back) != routing.SpecHash(vs) || routing.SpecHash(vs) == routing.SpecHash(compact) {
				t.Fatal("the spec's hash changed in a JSON round trip, or ignores what the compact form drops")
			}
		}
		// Decided again from what it serves: still valid, and every host an
		// environment serves stays with it while it still asks for it.
		cur := routing.CurrentOf(vs)
		again := routing.DecideFrom(in, cur, opts)
		routingtest.CheckInvariants(t, in, again)
		served := routing.CurrentOf(routing.MakeVirtualService("ns", "shop", again, opts))
		for host, env := range cur.HostEnvironments {
			if got, ok := served.HostEnvironments[host]; ok && got != env {
				t.Fatalf("host %s moved from environment %s, which served it, to %s", host, env, got)
			}
		}
	})
}

// routesWithoutBranches counts the routes the budget never refuses: the
// environments' and the mesh's splits.
func routesWithoutBranches(d routing.Decision) int {
	n := 0
	for _, r := range d.Routes {
		if r.Branch == "" {
			n++
		}
	}
	return n
}

func cloneReleases(in []routing.Release) []routing.Release {
	if in == nil {
		return nil
	}
	out := make([]routing.Release, len(in))
	for i, r := range in {
		out[i] = r
		out[i].Hosts = append([]string(nil), r.Hosts...)
		if r.Canary != nil {
			w := *r.Canary
			out[i].Canary = &w
		}
	}
	return out
}
