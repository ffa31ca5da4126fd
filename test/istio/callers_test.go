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
// frontend has hosts; orders has a production branch and a demo environment
// whose one release is down; payments a staging branch of the frontend's
// name, a pre-staging environment nobody else has and a preview environment
// with a branch only.
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
			down(svcRelease("orders", "d1", 3, "demo", "", 0)),
		}},
		{"payments", []routing.Release{
			svcRelease("payments", "v1", 0, "production", "", 0),
			svcRelease("payments", "v2", 1, "production", "", 50),
			svcRelease("payments", "s1", 2, "staging", "", 0),
			svcRelease("payments", "x", 3, "staging", "feature-x", 0),
			svcRelease("payments", "ps1", 4, "pre-staging", "", 0),
			svcRelease("payments", "q", 5, "preview", "feature-q", 0),
		}},
	}
}

func down(r routing.Release) routing.Release {
	r.Available = false
	return r
}

// want is the promise of issue #15, written from the releases alone: a
// caller of an environment the service has gets that environment (the
// branch the request names by header or baggage, or, naming none, the
// caller's own branch; else the environment's split, or a 503 while it has
// no Available release); any
// other caller gets the mesh environment (its branch by header, else its
// split). nil: answered 503.
func (s service) want(callerEnv, callerBranch, header string) map[string]int32 {
	live := map[string]bool{}
	splits := map[string]map[string]int32{}
	branches := map[string]map[string]string{}
	for _, r := range s.releases {
		live[r.Environment] = true
		if branches[r.Environment] == nil {
			splits[r.Environment], branches[r.Environment] = map[string]int32{}, map[string]string{}
		}
		if r.Branch != "" && r.Available {
			branches[r.Environment][r.Branch] = r.Name
		}
	}
	for _, r := range s.releases {
		if r.Branch == "" && r.Canary != nil && r.Available {
			splits[r.Environment][r.Name] = *r.Canary
		}
	}
	for _, r := range s.releases {
		if r.Branch == "" && r.Canary == nil && r.Available {
			rest := int32(100)
			for _, w := range splits[r.Environment] {
				rest -= w
			}
			splits[r.Environment][r.Name] = rest
		}
	}
	env := callerEnv
	if !live[env] {
		env, callerBranch = opts.MeshEnvironment, ""
	}
	named := header
	if named == "" {
		named = callerBranch // a request naming no branch: the caller's own
	}
	if name, ok := branches[env][named]; ok && named != "" {
		return map[string]int32{name: 100}
	}
	if len(splits[env]) == 0 {
		return nil
	}
	return splits[env]
}

// judge is the service's judge, with a sidecar for each of callers.
func (s service) judge(t *testing.T, callers []Caller) (*Judge, *networking.VirtualService) {
	t.Helper()
	d := routing.Decide(s.releases, opts)
	for _, r := range s.releases {
		if o := d.Outcomes[r.Name]; o.Ready != r.Available {
			t.Fatalf("%s: release %s is Ready=%v: %s", s.name, r.Name, o.Ready, o.Message)
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
		{name: "a job labelled staging", env: "staging"}, {name: "a job labelled preview", env: "preview"},
		{name: "a job labelled demo", env: "demo"}}
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
					switch {
					case want == nil:
						if served, _ := j.ExplainFrom(Caller{Labels: c.labels}, host, headers); !errors.Is(err, ErrNotApp) || served.Status != 503 {
							t.Errorf("%s calls %s with %s: Istio serves %v (%v), want a 503", c.name, host, hname, got, err)
						}
					case err != nil || !maps.Equal(got, want):
						t.Errorf("%s calls %s with %s: Istio serves %v (%v), want %v", c.name, host, hname, got, err, want)
					}
					ex := routing.Explain(vs, opts.Gateway, routing.Request{Mesh: true, Host: host, Headers: headers, SourceLabels: c.labels, SourceNamespace: ns})
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
		if err != nil {
			t.Fatalf("%s: the gateway: %v", tc.name, err)
		}
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

// TestNamespaceLabelNamesTheEnvironment: the pods of a namespace labelled
// switchyard.dev/environment=staging (opts.NamespaceEnvironments) are
// staging's callers, unless their own label names another environment of
// the app; a namespace labelled with an environment the app lacks changes
// nothing.
func TestNamespaceLabelNamesTheEnvironment(t *testing.T) {
	services := threeServices()
	job := Caller{Namespace: jobsNamespace}
	prodPod := Caller{Namespace: jobsNamespace, Labels: routing.CallerLabels("production", "")}
	branchPod := Caller{Namespace: jobsNamespace, Labels: routing.CallerLabels("staging", "feature-x")}
	qa := Caller{Namespace: "qa-jobs"}
	feature := map[string]string{"x-branch": "feature-x"}
	for _, tc := range []struct {
		callee  int
		from    Caller
		headers map[string]string
		want    map[string]int32
	}{
		{1, job, nil, map[string]int32{"orders-s1": 100}},
		{2, job, nil, map[string]int32{"payments-s1": 100}},
		{2, job, feature, map[string]int32{"payments-x": 100}},
		{2, prodPod, nil, map[string]int32{"payments-v1": 50, "payments-v2": 50}},
		{2, prodPod, feature, map[string]int32{"payments-v1": 50, "payments-v2": 50}},
		{2, branchPod, nil, map[string]int32{"payments-x": 100}},
		{1, qa, nil, map[string]int32{"orders-v1": 100}},
	} {
		s := services[tc.callee]
		j, vs := s.judge(t, []Caller{tc.from})
		host := routing.ServiceHost(ns, s.name)
		got, err := j.ServeFrom(tc.from, host, tc.headers)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%s calls %s with %v: served %v (%v), want %v", tc.from, s.name, tc.headers, got, err, tc.want)
		}
		ex := routing.Explain(vs, opts.Gateway, routing.Request{Mesh: true, Host: host, Headers: tc.headers,
			SourceLabels: tc.from.Labels, SourceNamespace: tc.from.Namespace})
		mine := map[string]int32{}
		for _, d := range ex.Split {
			mine[d.Subset] = d.Weight
		}
		if !maps.Equal(mine, got) {
			t.Errorf("%s calls %s with %v: routing.Explain says %v, Istio %v", tc.from, s.name, tc.headers, mine, got)
		}
	}
}
