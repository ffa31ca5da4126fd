package routing

import (
	"regexp"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// ServicePort is the port of the app's Service; it forwards to each release's container port.
const ServicePort = 80

// VersionLabel is the pod label a release's subset selects.
const VersionLabel = "version"

// makeRoutes lays out the routing table: every environment's branch routes,
// then every environment's host split, then the mesh's branches and split.
func makeRoutes(envs []string, hosts map[string][]string, splits map[string][]Destination,
	branches map[string][]branchHead, opts Options) []Route {
	n := 2*len(envs) + len(branches[opts.MeshEnvironment]) + 1
	for _, env := range envs {
		n += len(branches[env])
	}
	routes := make([]Route, 0, n)
	for _, env := range envs {
		if len(hosts[env]) == 0 {
			continue
		}
		for _, b := range branches[env] {
			routes = append(routes, Route{Name: branchRouteName(env, b.Branch), Gateway: opts.Gateway,
				Hosts: hosts[env], Branch: b.Branch, Environment: env, Destinations: []Destination{b.Destination}})
		}
	}
	for _, env := range envs {
		if len(hosts[env]) == 0 || len(splits[env]) == 0 {
			continue
		}
		routes = append(routes, Route{Name: envRouteName(env), Gateway: opts.Gateway, Hosts: hosts[env],
			Environment: env, Destinations: splits[env]})
	}
	mesh := opts.MeshEnvironment
	for _, b := range branches[mesh] {
		routes = append(routes, Route{Name: meshBranchRouteName(b.Branch), Gateway: MeshGateway, Branch: b.Branch,
			Environment: mesh, Destinations: []Destination{b.Destination}})
	}
	if len(splits[mesh]) > 0 {
		routes = append(routes, Route{Name: "mesh-" + mesh, Gateway: MeshGateway, Environment: mesh, Destinations: splits[mesh]})
	}
	return routes
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
		// the environments' hosts, which the host rules above serve.
		route.Match = append(route.Match, withBranch(&networking.HTTPMatchRequest{
			Gateways: []string{MeshGateway}, Authority: pattern(patterns, serviceNames(svc)...),
		}, r.Branch, opts))
	} else {
		// No gateway binding: a host rule serves its hosts wherever a request
		// for them arrives, at the ingress gateway or (when the VirtualService
		// is bound to the mesh) at a sidecar.
		for _, h := range r.Hosts {
			route.Match = append(route.Match, withBranch(&networking.HTTPMatchRequest{Authority: pattern(patterns, h)}, r.Branch, opts))
		}
	}
	for _, d := range r.Destinations {
		route.Route = append(route.Route, &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: svc, Subset: d.Subset, Port: &networking.PortSelector{Number: ServicePort}},
			Weight:      d.Weight,
		})
	}
	return route
}

func withBranch(m *networking.HTTPMatchRequest, branch string, opts Options) *networking.HTTPMatchRequest {
	if branch != "" {
		m.Headers = map[string]*networking.StringMatch{opts.BranchHeader: exact(branch)}
	}
	return m
}

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
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: s.Subset, Labels: map[string]string{VersionLabel: s.Subset}})
	}
	return dr
}
