package routing

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// ServicePort is the port of the app's Service; it forwards to each release's container port.
const ServicePort = 80

// VersionLabel is the pod label a release's subset selects.
const VersionLabel = "version"

// EnvironmentLabel and BranchLabel are the pod labels that name a calling
// pod's environment and branch: Switchyard puts them on the pods it runs,
// and any other pod (a job, another team's workload) may carry them to be
// served as that environment's (and branch's) caller inside the mesh.
const (
	EnvironmentLabel = "switchyard.dev/environment"
	BranchLabel      = "switchyard.dev/branch"
)

// BaggageHeader is the W3C baggage header (w3.org/TR/baggage).
const BaggageHeader = "baggage"

// CallerLabels are the labels of a pod of a release of environment env and
// branch ("" for none): what the app's mesh rules select callers by.
func CallerLabels(env, branch string) map[string]string {
	l := map[string]string{EnvironmentLabel: env}
	if branch != "" {
		l[BranchLabel] = branch
	}
	return l
}

// makeRoutes lays out the routing table. Inside the mesh first: each
// environment's own callers (by their pods' labels), then every other caller
// (the mesh environment's). Then, at the ingress gateway (and for a pod that
// calls an environment's host), each environment's branch rules and split.
//
// The mesh rules come first because they cost the gateway nothing: Istio
// drops, per proxy, every rule whose sourceLabels its pod does not carry or
// which is bound to a gateway it is not, so a gateway walks none of them and
// a sidecar walks only its own environment's and the default ones, instead
// of every host rule before them.
func makeRoutes(envs []string, hosts map[string][]string, splits map[string][]Destination,
	branches map[string][]branchHead, opts Options) []Route {
	n := 0
	for _, env := range envs {
		n += 2 + 3*len(branches[env])
	}
	routes := make([]Route, 0, n)
	mesh := opts.MeshEnvironment
	for _, env := range envs {
		if env != mesh {
			routes = appendMeshRoutes(routes, env, env, splits[env], branches[env], true)
		}
	}
	callerRules := true
	if byNamespace := namespaceEnvironments(envs, opts); len(byNamespace) > 0 {
		// Pods of labelled namespaces come after every pod whose own label
		// names an environment of the app: the mesh environment's labelled
		// pods first get their own copy of its rules.
		for _, b := range branches[mesh] {
			routes = append(routes, Route{Name: labelledBranchRouteName(mesh, b.Branch), Gateway: MeshGateway, Branch: b.Branch,
				Environment: mesh, SourceEnvironment: mesh, SourceBranch: b.Branch, Destinations: []Destination{b.Destination}})
		}
		callerRules = false
		routes = append(routes, Route{Name: labelledRouteName(mesh), Gateway: MeshGateway, Environment: mesh,
			SourceEnvironment: mesh, Destinations: splits[mesh]})
		for _, env := range envs {
			nss := byNamespace[env]
			if len(nss) == 0 {
				continue
			}
			for _, b := range branches[env] {
				routes = append(routes, Route{Name: namespaceBranchRouteName(env, b.Branch), Gateway: MeshGateway, Branch: b.Branch,
					Environment: env, SourceNamespaces: nss, Destinations: []Destination{b.Destination}})
			}
			routes = append(routes, Route{Name: namespaceRouteName(env), Gateway: MeshGateway, Environment: env,
				SourceNamespaces: nss, Destinations: splits[env]})
		}
	}
	routes = appendMeshRoutes(routes, mesh, "", splits[mesh], branches[mesh], callerRules)
	// At the gateway, environment by environment (their hosts are their
	// own, so the order between them changes no answer): the mesh
	// environment first, then those with the fewest branches; within one,
	// its branches before its split. A request to an environment walks its
	// own branch rules and the rules of the environments before it only.
	order := slices.Clone(envs)
	slices.SortStableFunc(order, func(a, b string) int {
		switch {
		case a == mesh:
			return -1
		case b == mesh:
			return 1
		}
		return len(branches[a]) - len(branches[b])
	})
	for _, env := range order {
		if len(hosts[env]) == 0 {
			continue
		}
		for _, b := range branches[env] {
			routes = append(routes, Route{Name: branchRouteName(env, b.Branch), Gateway: opts.Gateway,
				Hosts: hosts[env], Branch: b.Branch, Environment: env, Destinations: []Destination{b.Destination}})
		}
		if len(splits[env]) > 0 {
			routes = append(routes, Route{Name: envRouteName(env), Gateway: opts.Gateway, Hosts: hosts[env],
				Environment: env, Destinations: splits[env]})
		}
	}
	return routes
}

// namespaceEnvironments are the namespaces labelled with each environment of
// the app other than the mesh environment (whose callers are the default
// anyway), sorted.
func namespaceEnvironments(envs []string, opts Options) map[string][]string {
	if len(opts.NamespaceEnvironments) == 0 {
		return nil
	}
	out := map[string][]string{}
	for ns, env := range opts.NamespaceEnvironments {
		if env != opts.MeshEnvironment && slices.Contains(envs, env) {
			out[env] = append(out[env], ns)
		}
	}
	for _, nss := range out {
		slices.Sort(nss)
	}
	return out
}

// appendMeshRoutes appends an environment's rules for calls to the app's
// Service from callers of environment source ("": any caller): a rule per
// branch, for requests that name it (header or baggage) and, with
// callerRules, for the calls of the branch's own pods that name no branch (a
// request naming a branch goes by its name, whoever sends it); then its
// split, or a 503 while it has none.
func appendMeshRoutes(routes []Route, env, source string, split []Destination, heads []branchHead, callerRules bool) []Route {
	for _, b := range heads {
		r := Route{Name: meshBranchRouteName(env, b.Branch), Gateway: MeshGateway, Branch: b.Branch,
			Environment: env, SourceEnvironment: source, Destinations: []Destination{b.Destination}}
		if callerRules {
			r.SourceBranch = b.Branch
		}
		routes = append(routes, r)
	}
	name := meshRouteName(env)
	if source == "" && len(split) == 0 {
		name = MeshUnservedRoute
	}
	// Without a split (no Available stable or canary), the rule answers
	// 503: a caller of an environment the app has is never sent to
	// another environment's builds, and without the mesh's rule Istio
	// would send any other caller to the app's Service as a whole, every
	// environment's and branch's pods (or answer 404).
	return append(routes, Route{Name: name, Gateway: MeshGateway, Environment: env, SourceEnvironment: source, Destinations: split})
}

// MakeVirtualService is the app's VirtualService spec for a decision, or nil
// when no request can be routed (Istio refuses a VirtualService without routes).
func MakeVirtualService(namespace, app string, d Decision, opts Options) *networking.VirtualService {
	if len(d.Routes) == 0 {
		return nil
	}
	svc := ServiceHostIn(namespace, app, opts.ClusterDomain)
	vs := &networking.VirtualService{}
	var gateway, mesh bool
	seen := map[string]bool{}
	patterns := map[string]*networking.StringMatch{}
	for _, r := range d.Routes {
		for _, h := range r.Hosts {
			if !seen[h] {
				seen[h] = true
				vs.Hosts = append(vs.Hosts, h)
			}
		}
		if r.Gateway == MeshGateway {
			mesh = true
		} else {
			gateway = true
		}
		vs.Http = append(vs.Http, makeHTTPRoute(svc, r, opts, patterns))
	}
	slices.Sort(vs.Hosts)
	if mesh {
		vs.Hosts = append(vs.Hosts, svc)
	}
	if gateway {
		vs.Gateways = append(vs.Gateways, opts.Gateway)
	}
	if mesh {
		vs.Gateways = append(vs.Gateways, MeshGateway)
	}
	vs.ExportTo = exportTo(opts)
	return vs
}

// exportTo is the VirtualService's exportTo: nil (every namespace) unless
// opts.ExportTo restricts it to the app's own namespace (".") and those.
func exportTo(opts Options) []string {
	if len(opts.ExportTo) == 0 || slices.Contains(opts.ExportTo, "*") {
		return nil
	}
	out := []string{"."}
	for _, ns := range opts.ExportTo {
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out[1:])
	return out
}

// pattern is the authority matcher of hosts, made once per build and shared
// by every rule for them (the objects are built, marshalled and compared,
// never changed in place).
func pattern(patterns map[string]*networking.StringMatch, hosts ...string) *networking.StringMatch {
	key := strings.Join(hosts, " ")
	p, ok := patterns[key]
	if !ok {
		p = regex(authorityPattern(hosts...))
		patterns[key] = p
	}
	return p
}

func makeHTTPRoute(svc string, r Route, opts Options, patterns map[string]*networking.StringMatch) *networking.HTTPRoute {
	route := &networking.HTTPRoute{Name: r.Name}
	if r.Gateway == MeshGateway {
		// Only requests to the app's Service itself: a sidecar also intercepts
		// the environments' hosts, which the host rules serve.
		authority := pattern(patterns, serviceNames(svc)...)
		sources := r.SourceNamespaces
		if len(sources) == 0 {
			sources = []string{""}
		}
		for _, ns := range sources {
			route.Match = branchMatches(route.Match, func() *networking.HTTPMatchRequest {
				m := &networking.HTTPMatchRequest{Authority: authority, SourceNamespace: ns}
				switch {
				case r.SourceEnvironment != "":
					// No gateways on this match: Istio ignores sourceLabels
					// (and sourceNamespace) on a match that names gateways. A
					// gateway's pods never carry these labels, so the gateway
					// drops the match all the same.
					m.SourceLabels = CallerLabels(r.SourceEnvironment, "")
				case ns == "":
					m.Gateways = []string{MeshGateway}
				}
				return m
			}, r.Branch, opts)
		}
		if r.SourceBranch != "" {
			// The branch's own pods, when their request names no branch
			// (Istio sets treat_missing_header_as_empty on withoutHeaders).
			route.Match = append(route.Match, &networking.HTTPMatchRequest{Authority: authority,
				SourceLabels: CallerLabels(r.Environment, r.SourceBranch), WithoutHeaders: namingNoBranch(opts)})
		}
	} else {
		// No gateway binding: a host rule serves its hosts wherever a request
		// for them arrives, at the ingress gateway or (when the VirtualService
		// is bound to the mesh) at a sidecar. One authority pattern for all
		// the environment's hosts: Istio makes an Envoy route of each match,
		// and every request to any host walks them all.
		authority := pattern(patterns, r.Hosts...)
		route.Match = branchMatches(route.Match, func() *networking.HTTPMatchRequest {
			return &networking.HTTPMatchRequest{Authority: authority}
		}, r.Branch, opts)
	}
	if len(r.Destinations) == 0 {
		body := fmt.Sprintf("environment %s of %s has no Available release to serve its callers\n", r.Environment, svc)
		if r.Name == MeshUnservedRoute {
			body = fmt.Sprintf("%s has no Available release of the caller's environment, nor of %s, the mesh environment\n",
				svc, opts.MeshEnvironment)
		}
		route.DirectResponse = &networking.HTTPDirectResponse{Status: 503, Body: &networking.HTTPBody{
			Specifier: &networking.HTTPBody_String_{String_: body}}}
	}
	for _, d := range r.Destinations {
		dst := &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: svc, Subset: d.Subset, Port: &networking.PortSelector{Number: ServicePort}},
			Weight:      d.Weight,
		}
		if opts.ServedByHeader != "" {
			dst.Headers = &networking.Headers{Response: &networking.Headers_HeaderOperations{
				Set: map[string]string{opts.ServedByHeader: d.Release}}}
		}
		route.Route = append(route.Route, dst)
	}
	return route
}

// branchMatches appends the matches base makes for a branch: by the branch
// header, and by the branch's baggage member when opts.BaggageKey is set;
// one of base when branch is empty.
func branchMatches(ms []*networking.HTTPMatchRequest, base func() *networking.HTTPMatchRequest, branch string, opts Options) []*networking.HTTPMatchRequest {
	if branch == "" {
		return append(ms, base())
	}
	ms = append(ms, withBranch(base(), branch, opts))
	if opts.BaggageKey != "" {
		m := base()
		m.Headers = map[string]*networking.StringMatch{BaggageHeader: regex(baggagePattern(opts.BaggageKey, branch))}
		ms = append(ms, m)
	}
	return ms
}

func withBranch(m *networking.HTTPMatchRequest, branch string, opts Options) *networking.HTTPMatchRequest {
	m.Headers = map[string]*networking.StringMatch{opts.BranchHeader: exact(branch)}
	return m
}

// baggagePattern matches a W3C baggage header holding the member key=value:
// members are separated by commas, each "key=value" with optional white
// space around its parts and ";"-separated properties after it. Envoy matches
// the whole header value (several baggage headers are joined by commas).
func baggagePattern(key, value string) string {
	return baggagePrefix + regexp.QuoteMeta(key) + baggageEquals + regexp.QuoteMeta(value) + baggageSuffix
}

// namingNoBranch holds for a request that names no branch: no branch header
// (or an empty one), no baggage member of the branch key.
func namingNoBranch(opts Options) map[string]*networking.StringMatch {
	m := map[string]*networking.StringMatch{opts.BranchHeader: regex(".+")}
	if opts.BaggageKey != "" {
		m[BaggageHeader] = regex(baggagePrefix + regexp.QuoteMeta(opts.BaggageKey) + baggageEquals + ".*")
	}
	return m
}

const (
	baggagePrefix = `(.*,)?[ \t]*`
	baggageEquals = `[ \t]*=[ \t]*`
	baggageSuffix = `[ \t]*([;,].*)?`
)

// serviceNames are the names a pod in the mesh calls the app's Service by:
// app, app.namespace, app.namespace.svc and app.namespace.svc.domain.
func serviceNames(svc string) []string {
	parts := strings.SplitN(svc, ".", 4)
	names := make([]string, 0, 4)
	for i := 1; i < len(parts); i++ {
		names = append(names, strings.Join(parts[:i], "."))
	}
	return append(names, svc)
}

// authorityPattern matches a Host header naming any of the hosts, in any
// case, with or without a port (Envoy compares the header as sent; its virtual
// hosts ignore case and port).
func authorityPattern(hosts ...string) string {
	quoted := make([]string, len(hosts))
	for i, h := range hosts {
		quoted[i] = regexp.QuoteMeta(h)
	}
	alt := quoted[0]
	if len(quoted) > 1 {
		alt = "(" + strings.Join(quoted, "|") + ")"
	}
	return authorityPrefix + alt + authoritySuffix
}

const (
	authorityPrefix = "(?i)"
	authoritySuffix = "(:[0-9]+)?"
)

// AuthorityHosts reads back the hosts an authority match names.
func AuthorityHosts(sm *networking.StringMatch) []string {
	if e := sm.GetExact(); e != "" {
		return []string{e}
	}
	re := sm.GetRegex()
	if !strings.HasPrefix(re, authorityPrefix) || !strings.HasSuffix(re, authoritySuffix) {
		return nil
	}
	body := strings.TrimSuffix(strings.TrimPrefix(re, authorityPrefix), authoritySuffix)
	body = strings.TrimSuffix(strings.TrimPrefix(body, "("), ")")
	var out []string
	for _, h := range strings.Split(body, "|") {
		out = append(out, strings.ReplaceAll(h, `\.`, "."))
	}
	return out
}

func regex(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
}

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

// MakeDestinationRule is the app's DestinationRule spec: one subset per live
// release, defined from the moment its Deployment exists, so it is there
// before any route names it.
func MakeDestinationRule(namespace, app string, d Decision) *networking.DestinationRule {
	dr := &networking.DestinationRule{Host: ServiceHostIn(namespace, app, d.ClusterDomain), Subsets: make([]*networking.Subset, 0, len(d.Subsets))}
	for _, s := range d.Subsets {
		dr.Subsets = append(dr.Subsets, makeSubset(s))
	}
	return dr
}

// makeSubset is the subset of a release: its pods, by their version label.
func makeSubset(s Destination) *networking.Subset {
	return &networking.Subset{Name: s.Subset, Labels: map[string]string{VersionLabel: s.Subset}}
}
