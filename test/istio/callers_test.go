package istio

import (
	"errors"
	"fmt"
	"maps"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/switchyard-dev/switchyard/internal/routing"
)

// service is one service of a multi-service app, with its releases.
type service struct {
	name     string
	releases []routing.Release
}

func svcRelease(app, name string, minute int, env, branch string, canary int32, hosts ...string) routing.Release {
	r := release(app+"-"+name, minute, env, "", branch, canary)
	r.Hosts = hosts
	return r
}

// threeServices: frontend → orders → payments, in one namespace. Only the
// frontend has hosts; orders has a production branch, payments a staging
// branch of the frontend's name and a pre-staging environment nobody else has.
func threeServices() []service {
	return []service{
		{"frontend", []routing.Release{
			svcRelease("frontend", "v1", 0, "production", "", 0, prodHost),
			svcRelease("frontend", "v2", 1, "production", "", 20, prodHost),
			svcRelease("frontend", "s1", 2, "staging", "", 0, stagingHost),
			svcRelease("frontend", "x", 3, "staging", "feature-x", 0, stagingHost),
		}},
		{"orders", []routing.Release{
			svcRelease("orders", "v1", 0, "production", "", 0),
			svcRelease("orders", "s1", 1, "staging", "", 0),
			svcRelease("orders", "p", 2, "production", "feature-p", 0),
		}},
		{"payments", []routing.Release{
			svcRelease("payments", "v1", 0, "production", "", 0),
			svcRelease("payments", "v2", 1, "production", "", 50),
			svcRelease("payments", "s1", 2, "staging", "", 0),
			svcRelease("payments", "x", 3, "staging", "feature-x", 0),
			svcRelease("payments", "ps1", 4, "pre-staging", "", 0),
		}},
	}
}

// want is the promise of issue #15, written from the releases alone: a
// caller of an environment the service has gets that environment (a branch
// named by header or baggage first, then the caller's own branch, then the
// environment's split); any other caller gets the mesh environment (its
// branch by header, else its split). Every environment here has a stable.
func (s service) want(callerEnv, callerBranch, header string) map[string]int32 {
	splits := map[string]map[string]int32{}
	branches := map[string]map[string]string{}
	for _, r := range s.releases {
		if splits[r.Environment] == nil {
			splits[r.Environment], branches[r.Environment] = map[string]int32{}, map[string]string{}
		}
		if r.Branch != "" {
			branches[r.Environment][r.Branch] = r.Name
		}
	}
	for _, r := range s.releases {
		if r.Branch == "" && r.Canary != nil {
			splits[r.Environment][r.Name] = *r.Canary
		}
	}
	for _, r := range s.releases {
		if r.Branch == "" && r.Canary == nil {
			rest := int32(100)
			for _, w := range splits[r.Environment] {
				rest -= w
			}
			splits[r.Environment][r.Name] = rest
		}
	}
	env := callerEnv
	if splits[env] == nil {
		env, callerBranch = opts.MeshEnvironment, ""
	}
	for _, b := range []string{header, callerBranch} {
		if name, ok := branches[env][b]; ok && b != "" {
			return map[string]int32{name: 100}
		}
	}
	return splits[env]
}

// judge is the service's judge, with a sidecar for each of callers.
func (s service) judge(t *testing.T, callers []Caller) (*Judge, *networking.VirtualService) {
	t.Helper()
	d := routing.Decide(s.releases, opts)
	for name, o := range d.Outcomes {
		if !o.Ready {
			t.Fatalf("%s: release %s is not Ready: %s", s.name, name, o.Message)
		}
	}
	vs, dr := routing.MakeVirtualService(ns, s.name, d, opts), routing.MakeDestinationRule(ns, s.name, d)
	if err := Validate(ns, s.name, vs, dr); err != nil {
		t.Fatalf("%s: Istio refuses the builder's output: %v", s.name, err)
	}
	j, err := NewJudge(ns, s.name, vs, dr, callers...)
	if err != nil {
		t.Fatal(err)
	}
	return j, vs
}

// TestEnvironmentsHoldAcrossServices: every pod of every release of a
// three-service app, a pod of no environment, a pod of an environment the
// app lacks and a job labelled with an environment call each service, with
// no branch, a branch header, a branch baggage member, or another
// environment's branch: Istio's generator, building each caller's sidecar,
// serves each call as the promise says, and Switchyard's own explanation
// agrees.
func TestEnvironmentsHoldAcrossServices(t *testing.T) {
	services := threeServices()
	type caller struct {
		name        string
		env, branch string
		labels      map[string]string
	}
	callers := []caller{{name: "a pod of no environment"}, {name: "a pod of environment qa", env: "qa"},
		{name: "a job labelled staging", env: "staging"}}
	for _, s := range services {
		for _, r := range s.releases {
			callers = append(callers, caller{name: "a pod of " + r.Name, env: r.Environment, branch: r.Branch})
		}
	}
	var sidecars []Caller
	for i := range callers {
		if callers[i].env != "" {
			callers[i].labels = routing.CallerLabels(callers[i].env, callers[i].branch)
			// A pod carries other labels too: the app's, its version.
			callers[i].labels["app"], callers[i].labels["version"] = "x", "y"
		}
		sidecars = append(sidecars, Caller{Labels: callers[i].labels})
	}
	headerSets := map[string]map[string]string{
		"no branch":                     nil,
		"branch header feature-x":       {"x-branch": "feature-x"},
		"baggage feature-x":             {"baggage": "session=9, x-branch=feature-x;ttl=3"},
		"production's branch by header": {"x-branch": "feature-p"},
	}
	for _, s := range services {
		j, vs := s.judge(t, sidecars)
		for _, c := range callers {
			for hname, headers := range headerSets {
				header := headers["x-branch"]
				if headers["baggage"] != "" {
					header = "feature-x"
				}
				want := s.want(c.env, c.branch, header)
				for _, host := range []string{s.name, routing.ServiceHost(ns, s.name)} {
					got, err := j.ServeFrom(Caller{Labels: c.labels}, host, headers)
					if err != nil || !maps.Equal(got, want) {
						t.Errorf("%s calls %s with %s: Istio serves %v (%v), want %v", c.name, host, hname, got, err, want)
					}
					ex := routing.Explain(vs, opts.Gateway, routing.Request{Mesh: true, Host: host, Headers: headers, SourceLabels: c.labels})
					mine := map[string]int32{}
					for _, d := range ex.Split {
						mine[d.Subset] = d.Weight
					}
					if !maps.Equal(mine, got) {
						t.Errorf("%s calls %s with %s: routing.Explain says %v, Istio %v", c.name, host, hname, mine, got)
					}
				}
			}
		}
	}

	// Production's in-mesh split is its gateway split.
	j, _ := services[0].judge(t, []Caller{{Labels: routing.CallerLabels("production", "")}})
	atGateway, err := j.Serve(Gateway, prodHost, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Caller{{}, {Labels: routing.CallerLabels("production", "")}} {
		if got, err := j.ServeFrom(c, "frontend", nil); err != nil || !maps.Equal(got, atGateway) {
			t.Errorf("production's split is %v at the gateway, %v (%v) from %s", atGateway, got, err, c)
		}
	}
}

// TestBranchFollowsTheRequestThroughServices: a request for staging's
// feature-x enters at the gateway, reaches the frontend's branch, which
// calls orders (no such branch: staging's), which calls payments, passing
// the header or the baggage on: payments' feature-x serves it. Without the
// header, the branch pod's own label carries the branch one hop only.
func TestBranchFollowsTheRequestThroughServices(t *testing.T) {
	services := threeServices()
	labelsOf := map[string]map[string]string{}
	var sidecars []Caller
	for _, s := range services {
		for _, r := range s.releases {
			labelsOf[r.Name] = routing.CallerLabels(r.Environment, r.Branch)
			sidecars = append(sidecars, Caller{Labels: labelsOf[r.Name]})
		}
	}
	judges := map[string]*Judge{}
	for _, s := range services {
		judges[s.name], _ = s.judge(t, sidecars)
	}
	one := func(served map[string]int32) (string, error) {
		for name, w := range served {
			if w == 100 {
				return name, nil
			}
		}
		return "", fmt.Errorf("served %v, not one release", served)
	}
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    []string
	}{
		{"by header", map[string]string{"x-branch": "feature-x"}, []string{"frontend-x", "orders-s1", "payments-x"}},
		{"by baggage", map[string]string{"baggage": "x-branch=feature-x"}, []string{"frontend-x", "orders-s1", "payments-x"}},
		{"not propagated", nil, []string{"frontend-s1", "orders-s1", "payments-s1"}},
	} {
		served, err := judges["frontend"].Serve(Gateway, stagingHost, tc.headers)
		hop, err := one(served)
		if err == nil && hop != tc.want[0] {
			err = errors.New("served " + hop)
		}
		if err != nil {
			t.Fatalf("%s: the gateway: %v, want %s", tc.name, err, tc.want[0])
		}
		for i, next := range []string{"orders", "payments"} {
			served, err := judges[next].ServeFrom(Caller{Labels: labelsOf[hop]}, next, tc.headers)
			if err != nil {
				t.Fatalf("%s: %s calls %s: %v", tc.name, hop, next, err)
			}
			if hop, err = one(served); err != nil || hop != tc.want[i+1] {
				t.Fatalf("%s: %s serves the call (%v), want %s", tc.name, hop, err, tc.want[i+1])
			}
		}
	}
	// The branch pod's label alone: frontend-x calls payments directly.
	if got, err := judges["payments"].ServeFrom(Caller{Labels: labelsOf["frontend-x"]}, "payments", nil); err != nil ||
		!maps.Equal(got, map[string]int32{"payments-x": 100}) {
		t.Errorf("frontend's feature-x pod calls payments: served %v (%v), want payments-x", got, err)
	}
}

// TestServedByHeader: with --served-by-header, Envoy sets the header on the
// response to the name of the release whose subset served it, at the gateway
// and in the mesh, in a split and on a branch.
func TestServedByHeader(t *testing.T) {
	o := opts
	o.ServedByHeader = "x-switchyard-release"
	rs := append([]routing.Release{release("shop-p7", 3, "production", prodHost, "feature-p7", 0)}, shopReleases...)
	d := routing.Decide(rs, o)
	vs, dr := routing.MakeVirtualService(ns, app, d, o), routing.MakeDestinationRule(ns, app, d)
	if err := Validate(ns, app, vs, dr); err != nil {
		t.Fatal(err)
	}
	j, err := NewJudge(ns, app, vs, dr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		via     Via
		host    string
		headers map[string]string
		subsets []string
	}{
		{Gateway, prodHost, nil, []string{"shop-v1", "shop-v2"}},
		{Gateway, stagingHost, map[string]string{"x-branch": "feature-jp12"}, []string{"shop-jp12"}},
		{Mesh, svcHost, nil, []string{"shop-v1", "shop-v2"}},
		{Mesh, svcHost, map[string]string{"x-branch": "feature-p7"}, []string{"shop-p7"}},
	} {
		s, err := j.Explain(tc.via, tc.host, tc.headers)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range tc.subsets {
			// The subset is the release's name here (a DNS label).
			if got := s.ResponseHeaders[sub]["x-switchyard-release"]; got != sub {
				t.Errorf("%v %s %v: subset %s answers x-switchyard-release %q (%v)", tc.via, tc.host, tc.headers, sub, got, s.ResponseHeaders)
			}
		}
	}
	// Off by default.
	j, _ = judgeOf(t, rs)
	if s, _ := j.Explain(Gateway, prodHost, nil); len(s.ResponseHeaders) > 0 {
		t.Errorf("without the flag, responses carry %v", s.ResponseHeaders)
	}
}
