package istio

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/kube/krt"
	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/routing/routingtest"
)

const (
	ns          = "shop"
	app         = "shop"
	prodHost    = "shop.example.com"
	stagingHost = "staging.shop.example.com"
)

var svcHost = routing.ServiceHost(ns, app)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func release(name string, minute int, env, host, branch string, canary int32) routing.Release {
	r := routing.Release{Name: name, UID: types.UID("uid-" + name), Created: t0.Add(time.Duration(minute) * time.Minute),
		Environment: env, Branch: branch, Hosts: []string{host}, HasDeployment: true, Available: true}
	if canary > 0 {
		r.Canary = &canary
	}
	return r
}

// shopReleases: production has stable shop-v1 and canary shop-v2 at 10%;
// staging has stable shop-s1 and branch feature-jp12's release shop-jp12.
var shopReleases = []routing.Release{
	release("shop-v1", 0, "production", prodHost, "", 0),
	release("shop-v2", 1, "production", prodHost, "", 10),
	release("shop-s1", 0, "staging", stagingHost, "", 0),
	release("shop-jp12", 2, "staging", stagingHost, "feature-jp12", 0),
}

func judgeOf(t testing.TB, in []routing.Release) (*Judge, routing.Decision) {
	t.Helper()
	d := routing.Decide(in, opts)
	routingtest.CheckInvariants(t, in, d)
	vs := routing.MakeVirtualService(ns, app, d, opts)
	dr := routing.MakeDestinationRule(ns, app, d)
	if err := Validate(ns, app, vs, dr); err != nil {
		t.Fatalf("Istio refuses the builder's output: %v", err)
	}
	j, err := NewJudge(ns, app, vs, dr, append(RouteCallers(d.Routes), qaCaller, jobCaller, prodJobCaller)...)
	if err != nil {
		t.Fatal(err)
	}
	return j, d
}

// qaCaller is a pod of an environment no app of the tests has; jobCaller
// an unlabelled pod of the namespace labelled staging, prodJobCaller one
// labelled production there.
var (
	qaCaller      = Caller{Labels: routing.CallerLabels("qa", "")}
	jobCaller     = Caller{Namespace: jobsNamespace}
	prodJobCaller = Caller{Namespace: jobsNamespace, Labels: routing.CallerLabels("production", "")}
)

type request struct {
	via     Via
	host    string
	headers map[string]string
}

func (r request) String() string {
	return fmt.Sprintf("%v %s %v", r.via, r.host, r.headers)
}

type served struct {
	route   string
	subsets map[string]int32
	err     error // the sentinel the error wraps
}

func expect(t *testing.T, j *Judge, cases map[string]struct {
	req  request
	want served
}) {
	t.Helper()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := j.Explain(tc.req.via, tc.req.host, tc.req.headers)
			if tc.want.err != nil {
				if !errors.Is(err, tc.want.err) {
					t.Fatalf("%v: want an error wrapping %v, got %v (served %v)", tc.req, tc.want.err, err, got.Subsets)
				}
			} else if err != nil {
				t.Fatalf("%v: %v", tc.req, err)
			}
			if got.Route != tc.want.route {
				t.Errorf("%v: matched route %q, want %q", tc.req, got.Route, tc.want.route)
			}
			if tc.want.err == nil && !maps.Equal(got.Subsets, tc.want.subsets) {
				t.Errorf("%v: served %v, want %v", tc.req, got.Subsets, tc.want.subsets)
			}
			// Serve agrees with Explain, and never returns a nil map.
			subsets, serr := j.Serve(tc.req.via, tc.req.host, tc.req.headers)
			if subsets == nil || (err == nil) != (serr == nil) || (err == nil && !maps.Equal(subsets, got.Subsets)) {
				t.Errorf("Serve gives %v, %v; Explain %v, %v", subsets, serr, got.Subsets, err)
			}
		})
	}
}

var (
	production = map[string]int32{"shop-v1": 90, "shop-v2": 10}
	branch     = map[string]string{"x-branch": "feature-jp12"}
)

func TestServeCanaryAndBranch(t *testing.T) {
	j, _ := judgeOf(t, shopReleases)
	expect(t, j, map[string]struct {
		req  request
		want served
	}{
		// (a) production: stable shop-v1, canary shop-v2 at 10%.
		"production via the gateway": {request{Gateway, prodHost, nil}, served{"env-production", production, nil}},
		"production via the mesh":    {request{Mesh, svcHost, nil}, served{"mesh-production", production, nil}},
		"the mesh, by short name":    {request{Mesh, "shop", nil}, served{"mesh-production", production, nil}},
		"the mesh, with a port":      {request{Mesh, svcHost + ":80", nil}, served{"mesh-production", production, nil}},
		// (b) staging: its branch by header, its stable release otherwise.
		"a staging branch by its header": {request{Gateway, stagingHost, branch},
			served{"branch-staging.feature-jp12", map[string]int32{"shop-jp12": 100}, nil}},
		"staging without the header": {request{Gateway, stagingHost, nil},
			served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
		"staging with another branch": {request{Gateway, stagingHost, map[string]string{"x-branch": "feature-xx"}},
			served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
		"header names are case-insensitive": {request{Gateway, stagingHost, map[string]string{"X-Branch": "feature-jp12"}},
			served{"branch-staging.feature-jp12", map[string]int32{"shop-jp12": 100}, nil}},
		"header values are not": {request{Gateway, stagingHost, map[string]string{"x-branch": "Feature-JP12"}},
			served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
		"the staging branch header on the production host": {request{Gateway, prodHost, branch},
			served{"env-production", production, nil}},
		"the staging branch header in the mesh": {request{Mesh, svcHost, branch},
			served{"mesh-production", production, nil}},
		// (c) a host the VirtualService does not name.
		"another host via the gateway": {request{Gateway, "other.example.com", nil}, served{"", nil, ErrNoVirtualHost}},
		// The sidecar sends it on, as it is, to wherever it was going.
		"another host via the mesh": {request{Mesh, "other.example.com", nil}, served{"allow_any", nil, ErrNotApp}},
	})
}

// TestServeWhatIstioDoes records where Istio's view of the VirtualService
// differed from a naive reading of it, and what the builder now does about it.
// It asserts what the generated Envoy configuration does (as the judge
// evaluates it).
func TestServeWhatIstioDoes(t *testing.T) {
	j, _ := judgeOf(t, shopReleases)
	expect(t, j, map[string]struct {
		req  request
		want served
	}{
		// Istio gives the gateway one virtual host for all of the
		// VirtualService's hosts, matched ignoring case and port; each rule then
		// matches the ":authority" header as sent. With exact matchers an
		// explicit ":80", or capitals, found the virtual host but no route (a
		// 404); the builder's authority patterns take any case and port.
		"a Host with its port via the gateway": {request{Gateway, stagingHost + ":80", nil}, served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
		"a Host in capitals via the gateway":   {request{Gateway, "Shop.Example.com", nil}, served{"env-production", production, nil}},
		// The Service's host is among the VirtualService's hosts (for the mesh
		// routes), so the gateway has a virtual host for it, but no route.
		"the Service's host via the gateway": {request{Gateway, svcHost, nil}, served{"", nil, ErrNoRoute}},
		// In the mesh, every host of the VirtualService is a virtual host of the
		// sidecar. When mesh routes matched no authority, a pod calling the
		// staging host through its sidecar got production's split; host rules
		// now serve their hosts in the mesh too, and mesh rules only the Service.
		"the staging host via the mesh": {request{Mesh, stagingHost, nil}, served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
		"a staging branch via the mesh": {request{Mesh, stagingHost, branch}, served{"branch-staging.feature-jp12", map[string]int32{"shop-jp12": 100}, nil}},
	})

	// With no production release there are no mesh routes, so the
	// VirtualService is not bound to the mesh at all: a pod calling the Service
	// reaches every pod behind it (no subset), staging's included.
	j, _ = judgeOf(t, shopReleases[2:])
	expect(t, j, map[string]struct {
		req  request
		want served
	}{
		// Not the whole Service (Istio's fallback): no production caller reaches a staging build.
		"the mesh without a mesh environment": {request{Mesh, svcHost, nil}, served{routing.MeshUnservedRoute, nil, ErrNotApp}},
		"staging via the gateway":             {request{Gateway, stagingHost, nil}, served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
	})

	// A production branch reaches the mesh by its header, on the Service's names.
	j, _ = judgeOf(t, append([]routing.Release{release("shop-p7", 3, "production", prodHost, "feature-p7", 0)}, shopReleases...))
	p7 := map[string]string{"x-branch": "feature-p7"}
	expect(t, j, map[string]struct {
		req  request
		want served
	}{
		"a production branch in the mesh": {request{Mesh, svcHost, p7},
			served{"mesh-branch-production.feature-p7", map[string]int32{"shop-p7": 100}, nil}},
		"a production branch header in the mesh, to the staging host, gets staging": {request{Mesh, stagingHost, p7},
			served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
		"a production branch on the staging host via the gateway": {request{Gateway, stagingHost, p7},
			served{"env-staging", map[string]int32{"shop-s1": 100}, nil}},
	})
}

func TestServeNoVirtualService(t *testing.T) {
	d := routing.Decide(nil, opts)
	j, err := NewJudge(ns, app, routing.MakeVirtualService(ns, app, d, opts), routing.MakeDestinationRule(ns, app, d))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, j, map[string]struct {
		req  request
		want served
	}{
		// Istio gives a gateway without routes a virtual host "blackhole:80"
		// for every host, without routes.
		"the gateway":            {request{Gateway, prodHost, nil}, served{"", nil, ErrNoRoute}},
		"the mesh, to the whole": {request{Mesh, svcHost, nil}, served{"default", map[string]int32{"": 100}, nil}},
	})
}

// TestServeHandWritten exercises matchers the builder does not use, on a
// VirtualService written by hand.
func TestServeHandWritten(t *testing.T) {
	exact := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	}
	prefix := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
	}
	regex := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
	}
	to := func(subset string, weight int32) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{Weight: weight,
			Destination: &networking.Destination{Host: svcHost, Subset: subset, Port: &networking.PortSelector{Number: 80}}}
	}
	vs := &networking.VirtualService{
		Hosts:    []string{"*.example.com", svcHost},
		Gateways: []string{IngressGateway, "mesh"},
		Http: []*networking.HTTPRoute{
			{Name: "api-path", Match: []*networking.HTTPMatchRequest{{Uri: prefix("/api")}}, Route: []*networking.HTTPRouteDestination{to("a", 0)}},
			{Name: "regex", Match: []*networking.HTTPMatchRequest{{Name: "tenant",
				Headers: map[string]*networking.StringMatch{"x-tenant": regex("acme|globex")}}},
				Route: []*networking.HTTPRouteDestination{to("b", 0)}},
			{Name: "present", Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-debug": {}}}},
				Route: []*networking.HTTPRouteDestination{to("c", 0)}},
			{Name: "prefix", Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-user": prefix("beta-")}}},
				Route: []*networking.HTTPRouteDestination{to("d", 0)}},
			{Name: "not-mobile", Match: []*networking.HTTPMatchRequest{{
				Authority:      exact("www.example.com"),
				WithoutHeaders: map[string]*networking.StringMatch{"x-mobile": exact("yes")}}},
				Route: []*networking.HTTPRouteDestination{to("e", 1), to("f", 3)}},
			{Name: "rest", Route: []*networking.HTTPRouteDestination{to("a", 20), to("b", 20), to("c", 60)}},
		},
	}
	dr := &networking.DestinationRule{Host: svcHost}
	for _, s := range []string{"a", "b", "c", "d", "e", "f"} {
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: s, Labels: map[string]string{"version": s}})
	}
	if err := Validate(ns, app, vs, dr); err != nil {
		t.Fatal(err)
	}
	j, err := NewJudge(ns, app, vs, dr)
	if err != nil {
		t.Fatal(err)
	}
	rest := map[string]int32{"a": 20, "b": 20, "c": 60}
	expect(t, j, map[string]struct {
		req  request
		want served
	}{
		"the path is /, not /api":     {request{Gateway, "www.example.com", map[string]string{"x-mobile": "yes"}}, served{"rest", rest, nil}},
		"a regex matches whole":       {request{Gateway, "www.example.com", map[string]string{"x-tenant": "acme"}}, served{"regex.tenant", map[string]int32{"b": 100}, nil}},
		"a regex does not match part": {request{Gateway, "www.example.com", map[string]string{"x-tenant": "acme2", "x-mobile": "yes"}}, served{"rest", rest, nil}},
		"an empty match is presence":  {request{Gateway, "www.example.com", map[string]string{"x-debug": ""}}, served{"present", map[string]int32{"c": 100}, nil}},
		"a header prefix":             {request{Mesh, svcHost, map[string]string{"x-user": "beta-7"}}, served{"prefix", map[string]int32{"d": 100}, nil}},
		// Weights 1 and 3 are reported in percent.
		"without a header":                      {request{Gateway, "www.example.com", nil}, served{"not-mobile", map[string]int32{"e": 25, "f": 75}, nil}},
		"without a header, the header is there": {request{Gateway, "www.example.com", map[string]string{"x-mobile": "yes"}}, served{"rest", rest, nil}},
		"without a header, another value":       {request{Gateway, "www.example.com", map[string]string{"x-mobile": "no"}}, served{"not-mobile", map[string]int32{"e": 25, "f": 75}, nil}},
		"a suffix wildcard host":                {request{Gateway, "shop.example.com", nil}, served{"rest", rest, nil}},
		"a wildcard needs a label":              {request{Gateway, ".example.com", nil}, served{"", nil, ErrNoVirtualHost}},
	})
}

// TestMatchVirtualHost: Envoy's order of domains, on a made-up configuration
// (Istio's VirtualService hosts have no prefix wildcards).
func TestMatchVirtualHost(t *testing.T) {
	vh := func(name string, domains ...string) *route.VirtualHost {
		return &route.VirtualHost{Name: name, Domains: domains}
	}
	rc := &route.RouteConfiguration{IgnorePortInHostMatching: true, VirtualHosts: []*route.VirtualHost{
		vh("any", "*"), vh("prefix", "api.*"), vh("longer-prefix", "api.example.*"),
		vh("suffix", "*.example.com"), vh("longer-suffix", "*-bar.example.com"), vh("exact", "www.example.com"),
	}}
	for host, want := range map[string]string{
		"www.example.com":     "exact",
		"WWW.example.com:80":  "exact",
		"foo.example.com":     "suffix",
		"foo-bar.example.com": "longer-suffix",
		"-bar.example.com":    "suffix",
		"api.example.com":     "suffix",
		"api.example.org":     "longer-prefix",
		"api.other.org":       "prefix",
		"example.com":         "any",
		"[::1]:80":            "any",
	} {
		if got := matchVirtualHost(rc, host); got.GetName() != want {
			t.Errorf("%s: got virtual host %q, want %q", host, got.GetName(), want)
		}
	}
	rc.IgnorePortInHostMatching = false
	if got := matchVirtualHost(rc, "www.example.com:80"); got.GetName() != "any" {
		t.Errorf("without ignore_port_in_host_matching, www.example.com:80 goes to %q", got.GetName())
	}
}

// checkEveryRouteIsServed: for every route of the decision, a request made
// as the route expects it is served exactly the route's destinations, by that
// route (see Judge.CheckRoutes).
func checkEveryRouteIsServed(t *testing.T, data []byte) {
	t.Helper()
	in := routingtest.ReleasesFromBytes(data)
	d := routing.Decide(in, opts)
	if len(d.Routes) == 0 {
		return
	}
	j, _ := judgeOf(t, in)
	for _, err := range j.CheckRoutes(d.Routes, opts) {
		t.Errorf("%v\nreleases: %+v", err, in)
	}
	checkExplainAgrees(t, j, routing.MakeVirtualService(ns, app, d, opts))
}

// checkExplainAgrees compares routing.Explain, the operator's own reading of
// its VirtualService (kubectl switchyard explain), with Istio's, on requests
// via the gateway and the mesh to each of the VirtualService's hosts and a
// few others, with each branch header it names, another one, and none.
//
// They agree but where Istio's sidecar does not apply the VirtualService at
// all, which Explain does not model: a mesh request to a host that is
// neither the Service's nor one of the VirtualService's (the sidecar passes
// it through), or any mesh request when the VirtualService is not bound to
// the mesh (the sidecar sends it to the whole Service, every subset).
func checkExplainAgrees(t *testing.T, j *Judge, vs *networking.VirtualService) {
	t.Helper()
	if vs == nil {
		return
	}
	hosts := append(slices.Clone(vs.GetHosts()), app, app+"."+ns, "other.example.com", prodHost+":80", "Shop.Example.com")
	branches := []string{"", "feature-none"}
	for _, h := range vs.GetHttp() {
		for _, m := range h.GetMatch() {
			if b := m.GetHeaders()[opts.BranchHeader].GetExact(); b != "" && !slices.Contains(branches, b) {
				branches = append(branches, b)
			}
		}
	}
	serviceNames := []string{svcHost, app, app + "." + ns}
	meshBound := slices.Contains(vs.GetGateways(), routing.MeshGateway)
	// Every caller the rules name, one they do not, an unlabelled sidecar and the gateway.
	type source struct {
		via    Via
		caller *Caller
	}
	sources := []source{{Gateway, nil}, {Mesh, nil}, {Mesh, &qaCaller}, {Mesh, &jobCaller}, {Mesh, &prodJobCaller}}
	seen := map[string]bool{}
	for _, h := range vs.GetHttp() {
		for _, m := range h.GetMatch() {
			c := Caller{Namespace: m.GetSourceNamespace(), Labels: m.GetSourceLabels()}
			if (len(c.Labels) > 0 || c.Namespace != "") && !seen[c.String()] {
				seen[c.String()] = true
				sources = append(sources, source{Mesh, &c})
			}
		}
	}
	for _, src := range sources {
		via := src.via
		for _, host := range hosts {
			for _, b := range branches {
				for _, headers := range branchHeaders(b) {
					got, err := j.Explain(via, host, headers)
					var labels map[string]string
					from := ns
					if src.caller != nil {
						got, err = j.ExplainFrom(*src.caller, host, headers)
						labels = src.caller.Labels
						if src.caller.Namespace != "" {
							from = src.caller.Namespace
						}
					}
					ex := routing.Explain(vs, opts.Gateway, routing.Request{Mesh: via == Mesh, Host: host, Headers: headers,
						SourceLabels: labels, SourceNamespace: from})
					req := request{via, host, headers}
					switch {
					case via == Mesh && !meshBound:
						if want := "allow_any"; slices.Contains(serviceNames, host) {
							if want = "default"; got.Route != want || !maps.Equal(got.Subsets, map[string]int32{"": 100}) {
								t.Errorf("%v: a VirtualService not bound to the mesh, yet served %v by %q (%v)", req, got.Subsets, got.Route, err)
							}
						} else if got.Route != want {
							t.Errorf("%v: a host the sidecar does not know, yet served by %q (%v)", req, got.Route, err)
						}
						continue
					case via == Mesh && got.Route == "allow_any":
						// From another namespace, the short name is another Service's.
						if (slices.Contains(serviceNames, host) && (from == ns || host != app)) || slices.Contains(vs.GetHosts(), strings.ToLower(host)) {
							t.Errorf("%v: the sidecar passes a host of the VirtualService through", req)
						}
						continue
					}
					want := map[string]int32{}
					for _, d := range ex.Split {
						want[d.Subset] += d.Weight
					}
					if got.Route != ex.Rule || (ex.Rule != "" && !maps.Equal(got.Subsets, want)) || (ex.Rule == "" && err == nil) {
						t.Errorf("%v from %v: Istio serves %v by rule %q (%v); routing.Explain says %v by rule %q (%+v)",
							req, src.caller, got.Subsets, got.Route, err, want, ex.Rule, ex.Tried)
					}
				}
			}
		}
	}
}

// branchHeaders are the ways a request names branch b: none (b empty), by
// the branch header, by a baggage member among others.
func branchHeaders(b string) []map[string]string {
	if b == "" {
		return []map[string]string{nil}
	}
	return []map[string]string{{opts.BranchHeader: b}, {routing.BaggageHeader: "k=v, " + opts.BaggageKey + "=" + b + ";p=1"}}
}

func ruleIndex(vs *networking.VirtualService, name string) int {
	for i, h := range vs.GetHttp() {
		if h.GetName() == name {
			return i
		}
	}
	panic("no rule " + name)
}

// TestCheckRoutesBites: CheckRoutes notices a VirtualService that does not
// route as the decision says.
func TestCheckRoutesBites(t *testing.T) {
	d := routing.Decide(append(slices.Clone(shopReleases), release("shop-p7", 3, "production", prodHost, "feature-p7", 0)), opts)
	cases := map[string]struct {
		mutate func(*networking.VirtualService)
		failed []string // the routes whose requests go astray
	}{
		"as built": {func(*networking.VirtualService) {}, nil},
		"the branch route after its environment's": {func(vs *networking.VirtualService) {
			b, e := ruleIndex(vs, "branch-staging.feature-jp12"), ruleIndex(vs, "env-staging")
			vs.Http[b], vs.Http[e] = vs.Http[e], vs.Http[b]
		}, []string{"branch-staging.feature-jp12"}},
		"another split": {func(vs *networking.VirtualService) {
			h := vs.Http[ruleIndex(vs, "env-production")]
			h.Route[0].Weight, h.Route[1].Weight = 80, 20
		}, []string{"env-production"}},
		"the gateway's routes bound to the mesh only": {func(vs *networking.VirtualService) {
			for _, m := range vs.Http[ruleIndex(vs, "env-production")].Match {
				m.Gateways = []string{routing.MeshGateway}
			}
		}, []string{"env-production"}},
		"a route renamed": {func(vs *networking.VirtualService) { vs.Http[ruleIndex(vs, "mesh-production")].Name = "mesh" }, []string{"mesh-production"}},
		"a caller's split bound to the mesh, so Istio ignores its sourceLabels": {func(vs *networking.VirtualService) {
			for _, m := range vs.Http[ruleIndex(vs, "mesh-staging")].Match {
				m.Gateways = []string{routing.MeshGateway}
			}
		}, []string{"mesh-labelled-branch-production.feature-p7", "mesh-labelled-production",
			"ns-branch-staging.feature-jp12", "ns-staging", "mesh-branch-production.feature-p7", "mesh-production"}},
		"a branch's match for its own pods without the caller's branch": {func(vs *networking.VirtualService) {
			h := vs.Http[ruleIndex(vs, "mesh-branch-staging.feature-jp12")]
			delete(h.Match[len(h.Match)-1].SourceLabels, routing.BranchLabel)
		}, []string{"mesh-staging"}},

		"the baggage match of a branch dropped": {func(vs *networking.VirtualService) {
			h := vs.Http[ruleIndex(vs, "mesh-branch-staging.feature-jp12")]
			h.Match = h.Match[:1]
		}, []string{"mesh-branch-staging.feature-jp12"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			vs := routing.MakeVirtualService(ns, app, d, opts)
			tc.mutate(vs)
			j, err := NewJudge(ns, app, vs, routing.MakeDestinationRule(ns, app, d), RouteCallers(d.Routes)...)
			if err != nil {
				t.Fatal(err)
			}
			var failed []string
			for _, err := range j.CheckRoutes(d.Routes, opts) {
				t.Log(err)
				failed = append(failed, strings.Fields(err.Error())[1])
			}
			for i := range failed {
				failed[i] = strings.TrimSuffix(failed[i], ":")
			}
			failed = slices.Compact(failed)
			if !slices.Equal(failed, tc.failed) {
				t.Errorf("requests of routes %q go astray, want %q", failed, tc.failed)
			}
		})
	}
}

// TestEveryRouteIsServed is checkEveryRouteIsServed on pseudo-random apps,
// seeded, so that plain go test covers the property: NewJudge takes some
// 16 ms (after a first call of about 100 ms), fine for 200 inputs.
func TestEveryRouteIsServed(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 20
	}
	rnd := rand.New(rand.NewSource(1))
	start := time.Now()
	judged := 0
	for i := range n {
		data := make([]byte, 6*(1+rnd.Intn(10)))
		rnd.Read(data)
		for k := 5; k < len(data); k += 6 {
			if rnd.Intn(4) > 0 {
				data[k] = 3 // most releases' Deployments are Available
			}
		}
		if len(routing.Decide(routingtest.ReleasesFromBytes(data), opts).Routes) > 0 {
			judged++
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkEveryRouteIsServed(t, data) })
	}
	if judged > 0 {
		t.Logf("%d of %d inputs had routes; %v per input", judged, n, time.Since(start)/time.Duration(judged))
	}
}

// FuzzEveryRouteIsServed is the same property for the fuzzer:
// go test ./istio/ -run '^$' -fuzz FuzzEveryRouteIsServed -parallel 2 runs
// some 60 inputs a second (after a build of several minutes).
func FuzzEveryRouteIsServed(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 3, 1, 0, 0, 4, 10, 3, 2, 1, 1, 1, 0, 3})
	f.Add([]byte{5, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 3, 2, 0, 0, 4, 100, 3, 3, 1, 1, 2, 0, 3, 4, 2, 2, 3, 0, 3})
	f.Add([]byte{0, 2, 2, 0, 0, 3, 1, 2, 2, 1, 0, 3, 2, 0, 0, 2, 0, 3, 3, 0, 3, 0, 0, 3})
	f.Fuzz(checkEveryRouteIsServed)
}

// TestNewJudgeForgetsItsCollections: NewJudge leaves nothing registered with
// krt's global debug handler, which would keep every generator alive.
func TestNewJudgeForgetsItsCollections(t *testing.T) {
	judgeOf(t, shopReleases)
	b, err := json.Marshal(krt.GlobalDebugHandler)
	if err != nil || string(b) != "null" {
		t.Fatalf("krt's debug handler still holds %.200s (%v)", b, err)
	}
}

func BenchmarkNewJudge(b *testing.B) {
	d := routing.Decide(shopReleases, opts)
	vs, dr := routing.MakeVirtualService(ns, app, d, opts), routing.MakeDestinationRule(ns, app, d)
	for b.Loop() {
		if _, err := NewJudge(ns, app, vs, dr); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAnotherTeamsMeshTrafficStaysWithThem: an app claims a public host that
// another team's pods call (no AppRelease claims it, so no conflict refuses
// it). Istio's generator shows its VirtualService, with --export-to naming
// the gateway's namespace, routing that host at the gateway and for sidecars
// in its own namespace, and never for a sidecar in another namespace; with
// every namespace (the default), it would (so the check can fail).
func TestAnotherTeamsMeshTrafficStaysWithThem(t *testing.T) {
	const partner = "api.partner.example"
	in := []routing.Release{release("evil-v1", 0, "production", partner, "", 0)}
	d := routing.Decide(in, opts)
	for _, tc := range []struct {
		exportTo  []string
		elsewhere bool
	}{{[]string{"istio-system"}, false}, {nil, true}} {
		o := opts
		o.ExportTo = tc.exportTo
		vs, dr := routing.MakeVirtualService(ns, app, d, o), routing.MakeDestinationRule(ns, app, d)
		if err := Validate(ns, app, vs, dr); err != nil {
			t.Fatalf("exportTo %v: Istio refuses the builder's output: %v", tc.exportTo, err)
		}
		j, err := NewJudge(ns, app, vs, dr)
		if err != nil {
			t.Fatal(err)
		}
		for _, via := range []Via{Gateway, Mesh} {
			if got, err := j.Serve(via, partner, nil); err != nil || !maps.Equal(got, map[string]int32{"evil-v1": 100}) {
				t.Errorf("exportTo %v: %v %s served by %v (%v), want the app", tc.exportTo, via, partner, got, err)
			}
		}
		got, err := j.Serve(MeshElsewhere, partner, nil)
		switch {
		case tc.elsewhere && !maps.Equal(got, map[string]int32{"evil-v1": 100}):
			t.Errorf("exported everywhere, another namespace's call to %s served by %v (%v)", partner, got, err)
		case !tc.elsewhere && (err == nil || len(got) > 0):
			t.Errorf("exported to the gateway's namespace only, another namespace's call to %s is served by the app: %v", partner, got)
		}
	}
}
