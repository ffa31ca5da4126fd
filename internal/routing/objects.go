package routing

import (
	"slices"

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
	var routes []Route
	for _, env := range envs {
		if len(hosts[env]) == 0 {
			continue
		}
		for _, b := range branches[env] {
			routes = append(routes, Route{Name: "branch-" + env + "-" + b.Branch, Gateway: opts.Gateway,
				Hosts: hosts[env], Branch: b.Branch, Environment: env, Destinations: []Destination{b.Destination}})
		}
	}
	for _, env := range envs {
		if len(hosts[env]) == 0 || len(splits[env]) == 0 {
			continue
		}
		routes = append(routes, Route{Name: "env-" + env, Gateway: opts.Gateway, Hosts: hosts[env],
			Environment: env, Destinations: splits[env]})
	}
	mesh := opts.MeshEnvironment
	for _, b := range branches[mesh] {
		routes = append(routes, Route{Name: "mesh-branch-" + b.Branch, Gateway: MeshGateway, Branch: b.Branch,
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
	svc := ServiceHost(namespace, app)
	vs := &networking.VirtualService{}
	var gateway, mesh bool
	for _, r := range d.Routes {
		vs.Hosts = append(vs.Hosts, r.Hosts...)
		if r.Gateway == MeshGateway {
			mesh = true
		} else {
			gateway = true
		}
		vs.Http = append(vs.Http, makeHTTPRoute(svc, r, opts))
	}
	slices.Sort(vs.Hosts)
	vs.Hosts = slices.Compact(vs.Hosts)
	if mesh {
		vs.Hosts = append(vs.Hosts, svc)
	}
	if gateway {
		vs.Gateways = append(vs.Gateways, opts.Gateway)
	}
	if mesh {
		vs.Gateways = append(vs.Gateways, MeshGateway)
	}
	return vs
}

func makeHTTPRoute(svc string, r Route, opts Options) *networking.HTTPRoute {
	route := &networking.HTTPRoute{Name: r.Name}
	hosts := r.Hosts
	if r.Gateway == MeshGateway {
		hosts = []string{""}
	}
	for _, h := range hosts {
		m := &networking.HTTPMatchRequest{Gateways: []string{r.Gateway}}
		if h != "" {
			m.Authority = exact(h)
		}
		if r.Branch != "" {
			m.Headers = map[string]*networking.StringMatch{opts.BranchHeader: exact(r.Branch)}
		}
		route.Match = append(route.Match, m)
	}
	for _, d := range r.Destinations {
		route.Route = append(route.Route, &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: svc, Subset: d.Subset, Port: &networking.PortSelector{Number: ServicePort}},
			Weight:      d.Weight,
		})
	}
	return route
}

func exact(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

// MakeDestinationRule is the app's DestinationRule spec: one subset per live
// release, defined from the moment its Deployment exists, so it is there
// before any route names it.
func MakeDestinationRule(namespace, app string, d Decision) *networking.DestinationRule {
	dr := &networking.DestinationRule{Host: ServiceHost(namespace, app)}
	for _, s := range d.Subsets {
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: s.Subset, Labels: map[string]string{VersionLabel: s.Subset}})
	}
	return dr
}
