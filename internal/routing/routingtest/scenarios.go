package routingtest

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/internal/routing"
)

// Options are the operator's defaults, as the scenarios are routed with.
var Options = routing.Options{BranchHeader: "x-branch", BaggageKey: "x-branch", Gateway: "istio-system/ingressgateway",
	MeshEnvironment: "production", KeepPrevious: 1, MaxRoutes: 1000}

// Request is a request a scenario must serve, and how.
type Request struct {
	Mesh bool
	// From are the calling pod's labels (Mesh only); nil: a pod without labels.
	From    map[string]string
	Host    string
	Headers map[string]string
	// Want is subset → weight; empty: the request is not routed to the app.
	Want map[string]int32
}

// Scenario is a set of releases and the requests they must serve. The
// builder's golden tests render its objects; the Istio-proof module asks
// Istio's own generator whether each request is served as Want says.
type Scenario struct {
	Name     string
	Releases []routing.Release
	Requests []Request
}

const (
	prod    = "shop.example.com"
	staging = "staging.shop.example.com"
	svc     = "shop.shop.svc.cluster.local"
)

func rel(name string, minute int, env, host string, o ...func(*routing.Release)) routing.Release {
	r := routing.Release{Name: name, UID: types.UID("uid-" + name), Created: time.Date(2026, 11, 1, 12, minute, 0, 0, time.UTC),
		Environment: env, Hosts: []string{host}, HasDeployment: true, Available: true, WasRouted: true}
	for _, f := range o {
		f(&r)
	}
	return r
}

func canary(w int32) func(*routing.Release)  { return func(r *routing.Release) { r.Canary = &w } }
func branch(b string) func(*routing.Release) { return func(r *routing.Release) { r.Branch = b } }
func fresh() func(*routing.Release)          { return func(r *routing.Release) { r.WasRouted = false } }
func notReady() func(*routing.Release) {
	return func(r *routing.Release) { r.Available, r.WasRouted = false, false }
}
func build(n int64) func(*routing.Release) { return func(r *routing.Release) { r.Build = n } }

func hdr(b string) map[string]string { return map[string]string{"x-branch": b} }

// bag is a W3C baggage header carrying the branch among other members.
func bag(b string) map[string]string {
	return map[string]string{"baggage": "userId=alice, x-branch = " + b + ";origin=ci,tenant=7"}
}

func from(env, branch string) map[string]string { return routing.CallerLabels(env, branch) }

// Scenarios are the seed workflow's states and the edge cases around them.
func Scenarios() []Scenario {
	v1 := rel("shop-v1", 0, "production", prod)
	s1 := rel("shop-s1", 1, "staging", staging)
	jp12 := rel("shop-jp12", 2, "staging", staging, branch("feature-jp12"))
	split := map[string]int32{"shop-v1": 90, "shop-v2": 10}
	return []Scenario{
		{Name: "first-release", Releases: []routing.Release{v1}, Requests: []Request{
			{Host: prod, Want: map[string]int32{"shop-v1": 100}},
			{Mesh: true, Host: svc, Want: map[string]int32{"shop-v1": 100}},
			{Host: "other.example.com"},
		}},
		{Name: "canary-split", Releases: []routing.Release{v1, rel("shop-v2", 3, "production", prod, canary(10))}, Requests: []Request{
			{Host: prod, Want: split},
			{Host: "SHOP.example.com:80", Want: split},
			{Mesh: true, Host: "shop", Want: split},
		}},
		{Name: "branches-ahead-of-hosts", Releases: []routing.Release{v1, s1, jp12}, Requests: []Request{
			{Host: staging, Headers: hdr("feature-jp12"), Want: map[string]int32{"shop-jp12": 100}},
			{Host: staging, Want: map[string]int32{"shop-s1": 100}},
			{Host: staging, Headers: hdr("feature-other"), Want: map[string]int32{"shop-s1": 100}},
			{Host: prod, Headers: hdr("feature-jp12"), Want: map[string]int32{"shop-v1": 100}},
			{Mesh: true, Host: svc, Headers: hdr("feature-jp12"), Want: map[string]int32{"shop-v1": 100}},
			{Mesh: true, Host: staging, Headers: hdr("feature-jp12"), Want: map[string]int32{"shop-jp12": 100}},
		}},
		{Name: "rebuild-progressing", Releases: []routing.Release{v1, s1, jp12,
			rel("shop-jp12-b", 4, "staging", staging, branch("feature-jp12"), notReady())}, Requests: []Request{
			{Host: staging, Headers: hdr("feature-jp12"), Want: map[string]int32{"shop-jp12": 100}},
		}},
		{Name: "promoted-with-standby", Releases: []routing.Release{v1, rel("shop-v2", 3, "production", prod, canary(100))}, Requests: []Request{
			{Host: prod, Want: map[string]int32{"shop-v2": 100}},
			{Mesh: true, Host: svc, Want: map[string]int32{"shop-v2": 100}},
		}},
		{Name: "late-older-build", Releases: []routing.Release{rel("shop-b7", 0, "production", prod, build(7)),
			rel("shop-b6", 5, "production", prod, build(6), fresh())}, Requests: []Request{
			{Host: prod, Want: map[string]int32{"shop-b7": 100}},
		}},
		{Name: "mesh-branch", Releases: []routing.Release{v1, rel("shop-p7", 3, "production", prod, branch("feature-p7"))}, Requests: []Request{
			{Mesh: true, Host: "shop.shop", Headers: hdr("feature-p7"), Want: map[string]int32{"shop-p7": 100}},
			{Host: prod, Headers: hdr("feature-p7"), Want: map[string]int32{"shop-p7": 100}},
			{Host: prod, Want: map[string]int32{"shop-v1": 100}},
			{Host: prod, Headers: bag("feature-p7"), Want: map[string]int32{"shop-p7": 100}},
			{Mesh: true, Host: svc, Headers: bag("feature-p7"), Want: map[string]int32{"shop-p7": 100}},
			{Mesh: true, Host: svc, Headers: bag("feature-p7x"), Want: map[string]int32{"shop-v1": 100}},
			{Mesh: true, Host: svc, Headers: map[string]string{"baggage": "my-x-branch=feature-p7"}, Want: map[string]int32{"shop-v1": 100}},
			{Mesh: true, Host: svc, From: from("production", "feature-p7"), Want: map[string]int32{"shop-p7": 100}},
		}},
		callersScenario(),
	}
}

// callersScenario: calls inside the mesh are served by the caller's
// environment and branch, when the app has them.
func callersScenario() Scenario {
	v1 := rel("shop-v1", 0, "production", prod)
	v2 := rel("shop-v2", 1, "production", prod, canary(10))
	p7 := rel("shop-p7", 2, "production", prod, branch("feature-p7"))
	s1 := rel("shop-s1", 3, "staging", staging)
	jp12 := rel("shop-jp12", 4, "staging", staging, branch("feature-jp12"))
	// pre-staging has no hosts: only its own callers reach it.
	ps1 := rel("shop-ps1", 5, "pre-staging", "")
	ps1.Hosts = nil
	prodSplit := map[string]int32{"shop-v1": 90, "shop-v2": 10}
	only := func(s string) map[string]int32 { return map[string]int32{s: 100} }
	return Scenario{Name: "callers-by-environment", Releases: []routing.Release{v1, v2, p7, s1, jp12, ps1}, Requests: []Request{
		// Production's split, at the gateway and in the mesh.
		{Host: prod, Want: prodSplit},
		{Mesh: true, Host: svc, Want: prodSplit},
		{Mesh: true, Host: svc, From: from("production", ""), Want: prodSplit},
		// A caller of an environment the app has gets that environment.
		{Mesh: true, Host: svc, From: from("staging", ""), Want: only("shop-s1")},
		{Mesh: true, Host: "shop", From: from("pre-staging", ""), Want: only("shop-ps1")},
		// ... or its branch, by its own label, or by header or baggage.
		{Mesh: true, Host: svc, From: from("staging", "feature-jp12"), Want: only("shop-jp12")},
		{Mesh: true, Host: svc, From: from("staging", ""), Headers: hdr("feature-jp12"), Want: only("shop-jp12")},
		{Mesh: true, Host: svc, From: from("staging", ""), Headers: bag("feature-jp12"), Want: only("shop-jp12")},
		// A branch the environment lacks: the environment.
		{Mesh: true, Host: svc, From: from("staging", "feature-zz"), Want: only("shop-s1")},
		{Mesh: true, Host: svc, From: from("pre-staging", "feature-jp12"), Want: only("shop-ps1")},
		// A header never moves a caller to another environment's build.
		{Mesh: true, Host: svc, From: from("staging", ""), Headers: hdr("feature-p7"), Want: only("shop-s1")},
		{Mesh: true, Host: svc, From: from("production", ""), Headers: hdr("feature-jp12"), Want: prodSplit},
		{Mesh: true, Host: svc, Headers: hdr("feature-jp12"), Want: prodSplit},
		// A request naming a branch goes by its name, whoever sends it: to
		// that branch, or to the environment when it has no such branch.
		{Mesh: true, Host: svc, From: from("staging", "feature-zz"), Headers: hdr("feature-jp12"), Want: only("shop-jp12")},
		{Mesh: true, Host: svc, From: from("production", "feature-p7"), Headers: hdr("feature-none"), Want: prodSplit},
		{Mesh: true, Host: svc, From: from("production", "feature-p7"), Headers: bag("feature-none"), Want: prodSplit},
		{Mesh: true, Host: svc, From: from("production", "feature-p7"), Headers: map[string]string{"x-branch": ""}, Want: only("shop-p7")},
		// A caller of an environment the app lacks gets the mesh environment.
		{Mesh: true, Host: svc, From: from("qa", ""), Want: prodSplit},
		{Mesh: true, Host: svc, From: from("qa", ""), Headers: hdr("feature-p7"), Want: only("shop-p7")},
		// Hosts stay their environments', whoever calls.
		{Mesh: true, Host: staging, From: from("production", ""), Want: only("shop-s1")},
		{Host: staging, Headers: bag("feature-jp12"), Want: only("shop-jp12")},
	}}
}

// String names a request in test output.
func (r Request) String() string {
	via := "gateway"
	if r.Mesh {
		via = "mesh"
	}
	if r.From != nil {
		via += fmt.Sprintf(" from %v", r.From)
	}
	return fmt.Sprintf("%s %s %v", via, r.Host, r.Headers)
}
