package routing_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/switchyard-dev/switchyard/internal/routing"
)

func TestExplain(t *testing.T) {
	rs := []routing.Release{
		release("v1", 0), release("v2", 1, canary(10)),
		release("s1", 2, env("staging", "staging.shop.example.com")),
		release("jp12", 3, env("staging", "staging.shop.example.com"), branch("feature-jp12")),
	}
	d := routing.Decide(rs, opts)
	vs := routing.MakeVirtualService("shop", "shop", d, opts)
	cases := []struct {
		name      string
		req       routing.Request
		rule      string
		split     string
		firstMiss string
	}{
		{"production host", routing.Request{Host: "shop.example.com"}, "env-production", "[{ v1 90} { v2 10}]", ""},
		{"staging branch by header", routing.Request{Host: "staging.shop.example.com", Headers: map[string]string{"x-branch": "feature-jp12"}},
			"branch-staging.feature-jp12", "[{ jp12 100}]", ""},
		{"a branch header on production's host does not divert", routing.Request{Host: "shop.example.com", Headers: map[string]string{"x-branch": "feature-jp12"}},
			"env-production", "[{ v1 90} { v2 10}]", ""},
		{"an unknown branch falls through to the environment", routing.Request{Host: "staging.shop.example.com", Headers: map[string]string{"x-branch": "nope"}},
			"env-staging", "[{ s1 100}]", `host "staging.shop.example.com" is not "shop.example.com" (any case, any port)`},
		{"mesh follows the mesh environment", routing.Request{Mesh: true, Host: "shop"}, "mesh-production", "[{ v1 90} { v2 10}]", ""},
		{"a staging pod is served by staging", routing.Request{Mesh: true, Host: "shop", SourceLabels: routing.CallerLabels("staging", "")},
			"mesh-staging", "[{ s1 100}]", "no header x-branch; only for callers labelled switchyard.dev/branch=feature-jp12,switchyard.dev/environment=staging"},
		{"a branch pod by its label", routing.Request{Mesh: true, Host: "shop", SourceLabels: routing.CallerLabels("staging", "feature-jp12")},
			"mesh-branch-staging.feature-jp12", "[{ jp12 100}]", ""},
		{"a host with a port, in capitals", routing.Request{Host: "Staging.Shop.Example.com:80"}, "env-staging", "[{ s1 100}]", ""},
		{"an environment's host called from inside the mesh", routing.Request{Mesh: true, Host: "staging.shop.example.com",
			Headers: map[string]string{"x-branch": "feature-jp12"}}, "branch-staging.feature-jp12", "[{ jp12 100}]", ""},
		{"the Service by its full name from the mesh", routing.Request{Mesh: true, Host: "shop.shop.svc.cluster.local:80"}, "mesh-production", "[{ v1 90} { v2 10}]", ""},
		{"an unknown host", routing.Request{Host: "other.example.com"}, "", "[]", `host "other.example.com" is not "shop.example.com" (any case, any port)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := routing.Explain(vs, opts.Gateway, tc.req)
			if ex.Rule != tc.rule {
				t.Errorf("rule %q, want %q (%+v)", ex.Rule, tc.rule, ex.Tried)
			}
			if got := fmtSplit(ex.Split); got != tc.split {
				t.Errorf("split %s, want %s", got, tc.split)
			}
			if tc.firstMiss != "" && (len(ex.Tried) == 0 || ex.Tried[0].Why != tc.firstMiss) {
				t.Errorf("first rule: %+v, want why %q", ex.Tried, tc.firstMiss)
			}
		})
	}
}

func fmtSplit(ds []routing.Destination) string {
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("{ %s %d}", d.Subset, d.Weight))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestExplainBaggage: a branch named by a baggage member is served like the
// header, and a miss says which member was wanted.
func TestExplainBaggage(t *testing.T) {
	o := opts
	o.BaggageKey = "x-branch"
	rs := []routing.Release{release("s1", 0, env("staging", "staging.shop.example.com")),
		release("jp12", 1, env("staging", "staging.shop.example.com"), branch("feature-jp12"))}
	vs := routing.MakeVirtualService("shop", "shop", routing.Decide(rs, o), o)
	for _, tc := range []struct {
		baggage, rule, why string
	}{
		{"a=1, x-branch=feature-jp12;p=q", "branch-staging.feature-jp12", ""},
		{"x-branch = feature-jp12", "branch-staging.feature-jp12", ""},
		{"x-branch=feature-jp123", "env-staging", "no header x-branch; no baggage member x-branch=feature-jp12"},
		{"my-x-branch=feature-jp12", "env-staging", "no header x-branch; no baggage member x-branch=feature-jp12"},
		{"", "env-staging", "no header x-branch; no baggage"},
	} {
		req := routing.Request{Host: "staging.shop.example.com", Headers: map[string]string{}}
		if tc.baggage != "" {
			req.Headers["baggage"] = tc.baggage
		}
		ex := routing.Explain(vs, o.Gateway, req)
		if ex.Rule != tc.rule || (tc.why != "" && ex.Tried[0].Why != tc.why) {
			t.Errorf("baggage %q: rule %s (%+v), want %s, why %q", tc.baggage, ex.Rule, ex.Tried, tc.rule, tc.why)
		}
	}
}
