package routing_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/routing/routingtest"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

var opts = routing.Options{BranchHeader: "x-branch", Gateway: "istio-system/ingressgateway", MeshEnvironment: "production", KeepPrevious: 1}

// release builds a routing input: an Available production release created
// minute after t0, changed by options.
func release(name string, minute int, o ...func(*routing.Release)) routing.Release {
	r := routing.Release{Name: name, UID: types.UID("uid-" + name), Created: t0.Add(time.Duration(minute) * time.Minute),
		Environment: "production", Hosts: []string{"shop.example.com"}, HasDeployment: true, Available: true}
	for _, f := range o {
		f(&r)
	}
	return r
}

func env(e string, hosts ...string) func(*routing.Release) {
	return func(r *routing.Release) { r.Environment, r.Hosts = e, hosts }
}
func canary(w int32) func(*routing.Release)  { return func(r *routing.Release) { r.Canary = &w } }
func branch(b string) func(*routing.Release) { return func(r *routing.Release) { r.Branch = b } }
func progressing() func(*routing.Release)    { return func(r *routing.Release) { r.Available = false } }
func failed() func(*routing.Release) {
	return func(r *routing.Release) { r.Available, r.Failed = false, true }
}
func deleting() func(*routing.Release)         { return func(r *routing.Release) { r.Deleting = true } }
func wasSuperseded() func(*routing.Release)    { return func(r *routing.Release) { r.Superseded = true } }
func hosts(h ...string) func(*routing.Release) { return func(r *routing.Release) { r.Hosts = h } }
func routed() func(*routing.Release)           { return func(r *routing.Release) { r.WasRouted = true } }
func build(n int64) func(*routing.Release)     { return func(r *routing.Release) { r.Build = n } }

// summary is an outcome's phase/weight/ready, as a table reads it.
func summary(o routing.Outcome) string {
	s := fmt.Sprintf("%s %d", o.Phase, o.Weight)
	if !o.Ready {
		s += " " + o.Reason
	}
	return s
}

func TestDecideOutcomes(t *testing.T) {
	cases := []struct {
		name     string
		releases []routing.Release
		keep     int
		max      int
		want     map[string]string
	}{
		{
			name:     "a first release takes all of its environment's traffic once Available",
			releases: []routing.Release{release("v1", 0)},
			want:     map[string]string{"v1": "Live 100"},
		},
		{
			name:     "a release whose Deployment is not Available takes no traffic",
			releases: []routing.Release{release("v1", 0, progressing())},
			want:     map[string]string{"v1": "Progressing 0 Progressing"},
		},
		{
			name:     "traffic stays with the stable while a newer release progresses",
			releases: []routing.Release{release("v1", 0), release("v2", 1, progressing())},
			want:     map[string]string{"v1": "Live 100", "v2": "Progressing 0 Progressing"},
		},
		{
			name:     "a failed Deployment stalls its release and leaves traffic where it was",
			releases: []routing.Release{release("v1", 0), release("v2", 1, failed())},
			want:     map[string]string{"v1": "Live 100", "v2": "Failed 0 DeploymentFailed"},
		},
		{
			name:     "a canary takes its weight from the stable",
			releases: []routing.Release{release("v1", 0), release("v2", 1, canary(10))},
			want:     map[string]string{"v1": "Live 90", "v2": "Live 10"},
		},
		{
			name:     "a canary at weight 0 gives its share back to the stable",
			releases: []routing.Release{release("v1", 0), release("v2", 1, canary(0))},
			want:     map[string]string{"v1": "Live 100", "v2": "Live 0"},
		},
		{
			name:     "a canary at 100 is promoted: it becomes stable and the previous stable stands by",
			releases: []routing.Release{release("v1", 0, routed()), release("v2", 1, canary(100), routed())},
			want:     map[string]string{"v1": "Standby 0", "v2": "Live 100"},
		},
		{
			name:     "stables beyond keep-previous are superseded",
			releases: []routing.Release{release("v1", 0, routed()), release("v2", 1, routed()), release("v3", 2)},
			want:     map[string]string{"v1": "Superseded 0 Superseded", "v2": "Standby 0", "v3": "Live 100"},
		},
		{
			name:     "keep-previous 2 keeps two rollback targets",
			keep:     2,
			releases: []routing.Release{release("v1", 0, routed()), release("v2", 1, routed()), release("v3", 2)},
			want:     map[string]string{"v1": "Standby 0", "v2": "Standby 0", "v3": "Live 100"},
		},
		{
			name:     "deleting the stable hands the environment back to the newest Standby",
			releases: []routing.Release{release("v1", 0), release("v2", 1, deleting())},
			want:     map[string]string{"v1": "Live 100", "v2": "Retiring 0 Retiring"},
		},
		{
			name:     "a superseded release stays superseded",
			releases: []routing.Release{release("v1", 0, wasSuperseded()), release("v2", 1, deleting())},
			want:     map[string]string{"v1": "Superseded 0 Superseded", "v2": "Retiring 0 Retiring"},
		},
		{
			name:     "a canary older than the stable is superseded",
			releases: []routing.Release{release("v1", 0, routed()), release("v2", 1, canary(10), routed()), release("v3", 2)},
			want:     map[string]string{"v1": "Standby 0", "v2": "Superseded 0 Superseded", "v3": "Live 100"},
		},
		{
			name:     "canaries asking for more than there is: the newest is served first",
			releases: []routing.Release{release("v1", 0), release("v2", 1, canary(60)), release("v3", 2, canary(60))},
			want:     map[string]string{"v1": "Live 0", "v2": "Live 40 WeightConflict", "v3": "Live 60"},
		},
		{
			name:     "without an Available stable the canary carries the environment",
			releases: []routing.Release{release("v1", 0, progressing()), release("v2", 1, canary(10))},
			want:     map[string]string{"v1": "Progressing 0 Progressing", "v2": "Live 100"},
		},
		{
			name: "a branch's newest Available release takes its traffic; the older one is superseded",
			releases: []routing.Release{release("v1", 0), release("jp12-a", 1, branch("feature-jp12"), routed()),
				release("jp12-b", 2, branch("feature-jp12"))},
			want: map[string]string{"v1": "Live 100", "jp12-a": "Superseded 0 Superseded", "jp12-b": "Live 100"},
		},
		{
			name: "a branch rebuild takes over only once Available",
			releases: []routing.Release{release("v1", 0), release("jp12-a", 1, branch("feature-jp12")),
				release("jp12-b", 2, branch("feature-jp12"), progressing())},
			want: map[string]string{"v1": "Live 100", "jp12-a": "Live 100", "jp12-b": "Progressing 0 Progressing"},
		},
		{
			name:     "the newest routed release's hosts win within an environment",
			releases: []routing.Release{release("v1", 0, hosts("old.example.com"), routed()), release("v2", 1, hosts("new.example.com"))},
			want:     map[string]string{"v1": "Standby 0 HostsConflict", "v2": "Live 100"},
		},
		{
			name:     "a host claimed by two environments stays with the one that held it first",
			releases: []routing.Release{release("v1", 0), release("s1", 1, env("staging", "shop.example.com"))},
			want:     map[string]string{"v1": "Live 100", "s1": "Live 100 HostsConflict"},
		},
		{
			name:     "a late, older build never takes traffic, even applied last",
			releases: []routing.Release{release("v7", 0, build(7), routed()), release("v6", 1, build(6))},
			want:     map[string]string{"v7": "Live 100", "v6": "Superseded 0 OlderBuild"},
		},
		{
			name:     "a late, older build of a branch never replaces the newer one",
			releases: []routing.Release{release("b7", 0, branch("feature-jp12"), build(7)), release("b6", 1, branch("feature-jp12"), build(6))},
			want:     map[string]string{"b7": "Live 100", "b6": "Superseded 0 OlderBuild"},
		},
		{
			name:     "equal builds fall back to creation time",
			releases: []routing.Release{release("a", 0, build(7), routed()), release("b", 1, build(7))},
			want:     map[string]string{"a": "Standby 0", "b": "Live 100"},
		},
		{
			name: "a rollback by redeploying an old image is a new, higher build",
			releases: []routing.Release{release("v1", 0, build(1), routed()), release("v2", 1, build(2), routed()),
				release("v1-again", 2, build(3))},
			want: map[string]string{"v1": "Superseded 0 Superseded", "v2": "Standby 0", "v1-again": "Live 100"},
		},
		{
			name:     "a canary older than the stable that never took traffic is an older build",
			releases: []routing.Release{release("v7", 0, build(7)), release("v6", 1, build(6), canary(10))},
			want:     map[string]string{"v7": "Live 100", "v6": "Superseded 0 OlderBuild"},
		},
		{
			name: "beyond the route budget the newest branch waits, saying why",
			max:  6, // a split costs two routes (gateway, mesh), a branch two (gateway, mesh)
			releases: []routing.Release{release("v1", 0), release("a", 1, branch("a")), release("b", 2, branch("b")),
				release("c", 3, branch("c"))},
			want: map[string]string{"v1": "Live 100", "a": "Live 100", "b": "Live 100", "c": "Failed 0 RouteBudgetExceeded"},
		},
		{
			name:     "a Standby whose pods are briefly down stays the rollback target",
			releases: []routing.Release{release("v1", 0, routed(), progressing()), release("v2", 1, routed())},
			want:     map[string]string{"v1": "Standby 0", "v2": "Live 100"},
		},
		{
			name: "a branch build with other hosts does not move its environment",
			releases: []routing.Release{release("s1", 0, env("staging", "staging.shop.example.com"), routed()),
				release("jp12", 1, env("staging", "typo.example.com"), branch("feature-jp12"))},
			want: map[string]string{"s1": "Live 100", "jp12": "Live 100 HostsConflict"},
		},
		{
			name: "a release without hosts takes its environment's",
			releases: []routing.Release{release("s1", 0, env("staging", "staging.shop.example.com"), routed()),
				release("jp12", 1, env("staging"), branch("feature-jp12"))},
			want: map[string]string{"s1": "Live 100", "jp12": "Live 100"},
		},
		{
			name:     "an environment with no hosts is routed for its own callers in the mesh",
			releases: []routing.Release{release("s1", 1, env("staging"))},
			want:     map[string]string{"s1": "Live 100"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			if tc.keep != 0 {
				o.KeepPrevious = tc.keep
			}
			o.MaxRoutes = tc.max
			d := routing.Decide(tc.releases, o)
			for name, want := range tc.want {
				if got := summary(d.Outcomes[name]); got != want {
					t.Errorf("%s: got %q, want %q (%s)", name, got, want, d.Outcomes[name].Message)
				}
			}
			if len(d.Outcomes) != len(tc.releases) {
				t.Errorf("got %d outcomes for %d releases", len(d.Outcomes), len(tc.releases))
			}
			routingtest.CheckInvariants(t, tc.releases, d)
		})
	}
}

// TestBuildsInEveryOrder: pipelines apply builds 5, 6 and 7 of one lineage in
// every order, each routed before the next arrives. Build 7 ends live; a build
// applied after a higher one is live never takes traffic.
func TestBuildsInEveryOrder(t *testing.T) {
	orders := [][]int64{{5, 6, 7}, {5, 7, 6}, {6, 5, 7}, {6, 7, 5}, {7, 5, 6}, {7, 6, 5}}
	for _, lineage := range []func(*routing.Release){func(*routing.Release) {}, branch("feature-jp12")} {
		for _, order := range orders {
			var rs []routing.Release
			highest := int64(0)
			for i, b := range order {
				rs = append(rs, release(fmt.Sprintf("build-%d", b), i, build(b), lineage))
				d := routing.Decide(rs, opts)
				for j := range rs {
					o := d.Outcomes[rs[j].Name]
					if o.Weight > 0 && rs[j].Build < highest {
						t.Errorf("order %v: build %d takes traffic after build %d was live", order, rs[j].Build, highest)
					}
					rs[j].WasRouted = o.Phase == v1alpha1.PhaseLive || o.Phase == v1alpha1.PhaseStandby
					rs[j].Superseded = o.Phase == v1alpha1.PhaseSuperseded
					if o.Phase == v1alpha1.PhaseLive {
						highest = max(highest, rs[j].Build)
					}
				}
				if b < highest && d.Outcomes[rs[i].Name].Reason != v1alpha1.ReasonOlderBuild {
					t.Errorf("order %v: build %d applied after build %d is %s, not OlderBuild", order, b, highest, summary(d.Outcomes[rs[i].Name]))
				}
			}
			if got := summary(routing.Decide(rs, opts).Outcomes["build-7"]); got != "Live 100" {
				t.Errorf("order %v: build 7 is %s", order, got)
			}
		}
	}
}

// TestDecideFromKeepsIncumbents: what is served now stays served. A stale
// release of another environment claiming production's host (a typo left in
// place) never takes it over when production's oldest releases are pruned,
// and a served branch keeps its route in the budget when a newer build of it
// comes up.
func TestDecideFromKeepsIncumbents(t *testing.T) {
	t.Run("a host stays with the environment that serves it", func(t *testing.T) {
		stale := release("eu-1", 1, env("prod-eu", "shop.example.com"))
		rs := []routing.Release{release("v1", 0, build(1), routed()), stale,
			release("v2", 2, build(2), routed()), release("v3", 3, build(3))}
		d := routing.Decide(rs, opts)
		if got := summary(d.Outcomes["v3"]); got != "Live 100" {
			t.Fatalf("v3 is %s, want Live 100 (%s)", got, d.Outcomes["v3"].Message)
		}
		cur := routing.CurrentOf(routing.MakeVirtualService("shop", "shop", d, opts))
		if cur.HostEnvironments["shop.example.com"] != "production" {
			t.Fatalf("production does not serve its host: %v", cur.HostEnvironments)
		}
		pruned := []routing.Release{stale, release("v2", 2, build(2), routed()), release("v3", 3, build(3), routed())}
		d = routing.DecideFrom(pruned, cur, opts)
		if got := summary(d.Outcomes["v3"]); got != "Live 100" {
			t.Errorf("after v1 is pruned, production's v3 is %s (%s)", got, d.Outcomes["v3"].Message)
		}
		if got := d.Outcomes["eu-1"]; got.Reason != v1alpha1.ReasonHostsConflict {
			t.Errorf("the stale claimant is %s, want HostsConflict", summary(got))
		}
		if got := routing.CurrentOf(routing.MakeVirtualService("shop", "shop", d, opts)).HostEnvironments["shop.example.com"]; got != "production" {
			t.Errorf("the host went to %q", got)
		}
	})
	t.Run("a host nobody serves goes to its earliest claimant", func(t *testing.T) {
		rs := []routing.Release{release("eu-1", 1, env("prod-eu", "shop.example.com")), release("v2", 2)}
		d := routing.DecideFrom(rs, routing.Current{}, opts)
		if d.Outcomes["v2"].Reason != v1alpha1.ReasonHostsConflict || !d.Outcomes["eu-1"].Ready {
			t.Errorf("got eu-1 %s, v2 %s", summary(d.Outcomes["eu-1"]), summary(d.Outcomes["v2"]))
		}
	})
	t.Run("a served branch keeps its slot when a newer build of it comes up", func(t *testing.T) {
		o := opts
		o.MaxRoutes = 5 // staging's split (2 routes), one branch (2), the mesh's unserved rule (1)
		st := env("staging", "staging.shop.example.com")
		rs := []routing.Release{release("s1", 0, st), release("a-1", 1, st, branch("a")), release("b-1", 2, st, branch("b"))}
		d := routing.DecideFrom(rs, routing.Current{}, o)
		if summary(d.Outcomes["a-1"]) != "Live 100" || d.Outcomes["b-1"].Reason != v1alpha1.ReasonRouteBudgetExceeded {
			t.Fatalf("got a-1 %s, b-1 %s", summary(d.Outcomes["a-1"]), summary(d.Outcomes["b-1"]))
		}
		cur := routing.CurrentOf(routing.MakeVirtualService("shop", "shop", d, o))
		rs = append(rs, release("a-2", 3, st, branch("a")))
		rs[1].WasRouted = true
		d = routing.DecideFrom(rs, cur, o)
		if got := summary(d.Outcomes["a-2"]); got != "Live 100" {
			t.Errorf("the new build of the served branch is %s (%s)", got, d.Outcomes["a-2"].Message)
		}
		if d.Outcomes["b-1"].Reason != v1alpha1.ReasonRouteBudgetExceeded {
			t.Errorf("the waiting branch took the served branch's slot: b-1 is %s", summary(d.Outcomes["b-1"]))
		}
		routingtest.CheckInvariants(t, rs, d)
	})
}

// TestRouteNamesNeverCollide: environment a-b with branch c and environment a
// with branch b-c are two routes with two names.
func TestRouteNamesNeverCollide(t *testing.T) {
	rs := []routing.Release{
		release("ab", 0, env("a-b", "ab.example.com")), release("ab-c", 1, env("a-b", "ab.example.com"), branch("c")),
		release("a", 2, env("a", "a.example.com")), release("a-bc", 3, env("a", "a.example.com"), branch("b-c")),
	}
	d := routing.Decide(rs, opts)
	names := map[string]bool{}
	for _, r := range d.Routes {
		if names[r.Name] {
			t.Errorf("two routes named %s", r.Name)
		}
		names[r.Name] = true
	}
	if !names["branch-a-b.c"] || !names["branch-a.b-c"] {
		t.Errorf("route names %v", names)
	}
}

// TestClusterDomain: the app's Service is named in the cluster's own domain,
// in the DestinationRule's host, the routes' destinations and the mesh rules.
func TestClusterDomain(t *testing.T) {
	o := opts
	o.ClusterDomain = "corp.internal"
	d := routing.Decide([]routing.Release{release("v1", 0)}, o)
	vs, dr := routing.MakeVirtualService("shop", "shop", d, o), routing.MakeDestinationRule("shop", "shop", d)
	const svc = "shop.shop.svc.corp.internal"
	if dr.Host != svc || vs.Http[0].Route[0].Destination.Host != svc || vs.Hosts[len(vs.Hosts)-1] != svc {
		t.Errorf("DestinationRule host %s, destination %s, hosts %v", dr.Host, vs.Http[0].Route[0].Destination.Host, vs.Hosts)
	}
	var mesh string
	for _, h := range vs.Http {
		if h.Name == "mesh-production" {
			mesh = h.Match[0].Authority.GetRegex()
		}
	}
	for _, name := range []string{"shop", "shop.shop", "shop.shop.svc", svc} {
		if !regexp.MustCompile("^" + mesh + "$").MatchString(name) {
			t.Errorf("mesh rule %q does not match %s", mesh, name)
		}
	}
	if regexp.MustCompile("^" + mesh + "$").MatchString("shop.shop.svc.cluster.local") {
		t.Errorf("mesh rule %q matches the default domain", mesh)
	}
}

func TestSubsetBytesIsTheSubsetsJSON(t *testing.T) {
	for _, name := range []string{"a", "shop-v1", strings.Repeat("x", 63)} {
		d := routing.Destination{Release: name, Subset: routing.SubsetName(name)}
		dr := routing.MakeDestinationRule("ns", "shop", routing.Decision{Subsets: []routing.Destination{d}})
		b, err := protojson.Marshal(dr.Subsets[0])
		if err != nil {
			t.Fatal(err)
		}
		if got, want := routing.SubsetBytesForTest(d), len(b)+1+routing.OwnerReferenceBytesForTest; got != want {
			t.Errorf("subset %s: estimated %d bytes, its JSON, comma and owner reference take %d", d.Subset, got, want)
		}
	}
}
