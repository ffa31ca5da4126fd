package routing

import (
	"fmt"
	"hash/fnv"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Current is what the app's VirtualService serves now, as far as the
// decision respects incumbency: a host stays with the environment that
// serves it, and a branch that is served keeps its place in the route budget.
type Current struct {
	// HostEnvironments maps each host an environment's split rule serves now
	// (lower case) to that environment.
	HostEnvironments map[string]string
	// Routes are the names of the HTTP routes the VirtualService has now.
	Routes map[string]bool
	// HeldElsewhere maps each host (lower case) that another app in the
	// cluster holds to a description of that app ("app shop in namespace
	// shop"): no environment of this app is served there.
	HeldElsewhere map[string]string
}

// CurrentOf reads a VirtualService spec written by MakeVirtualService (nil:
// none). Rules it did not write are passed over.
func CurrentOf(vs *networking.VirtualService) Current {
	c := Current{HostEnvironments: map[string]string{}, Routes: map[string]bool{}}
	for _, h := range vs.GetHttp() {
		c.Routes[h.GetName()] = true
		env, ok := strings.CutPrefix(h.GetName(), envRoutePrefix)
		if !ok {
			continue
		}
		for _, m := range h.GetMatch() {
			for _, host := range AuthorityHosts(m.GetAuthority()) {
				c.HostEnvironments[strings.ToLower(host)] = env
			}
		}
	}
	return c
}

const (
	envRoutePrefix    = "env-"
	branchRoutePrefix = "branch-"
)

// envRouteName and branchRouteName name an environment's split rule and a
// branch's rule at the gateway. Environments and branches are DNS labels, so
// the dot between them keeps every pair's name its own (with a dash,
// environment a-b with branch c and environment a with branch b-c collided).
func envRouteName(env string) string            { return envRoutePrefix + env }
func branchRouteName(env, branch string) string { return branchRoutePrefix + env + "." + branch }

// meshBranchRouteName and meshRouteName name an environment's rules inside
// the mesh: a branch (selected by header or baggage, or by its calling
// pod's labels), the split.
func meshBranchRouteName(env, branch string) string { return "mesh-branch-" + env + "." + branch }
func meshRouteName(env string) string               { return "mesh-" + env }

// namespaceBranchRouteName and namespaceRouteName name an environment's rules
// for the pods of the namespaces labelled with it; labelledBranchRouteName and
// labelledRouteName the mesh environment's rules for the pods labelled with
// it, which then come before those (see makeRoutes).
func namespaceBranchRouteName(env, branch string) string { return "ns-branch-" + env + "." + branch }
func namespaceRouteName(env string) string               { return "ns-" + env }
func labelledBranchRouteName(env, branch string) string {
	return "mesh-labelled-branch-" + env + "." + branch
}
func labelledRouteName(env string) string { return "mesh-labelled-" + env }

// MeshUnservedRoute names the rule that answers 503 to the mesh's other
// callers when the app has no Available release of the mesh environment (a
// dot: no environment's rule is named so).
const MeshUnservedRoute = "mesh.unserved"

// CompactVirtualService is the part of a VirtualService spec (nil: none) that
// CurrentOf and RoutedSubsets read: each rule's name, the subsets it routes
// to, and the authority matches of environment split rules. Both read the
// same from it as from the whole spec; an app's cache holds this form, about
// a tenth of the whole (each branch's matches, headers and caller labels go).
// The result shares no memory with spec.
func CompactVirtualService(spec *networking.VirtualService) *networking.VirtualService {
	if spec == nil {
		return nil
	}
	out := &networking.VirtualService{Http: make([]*networking.HTTPRoute, 0, len(spec.GetHttp()))}
	for _, h := range spec.GetHttp() {
		rule := &networking.HTTPRoute{Name: h.GetName()}
		if strings.HasPrefix(h.GetName(), envRoutePrefix) {
			for _, m := range h.GetMatch() {
				if a := m.GetAuthority(); a != nil {
					rule.Match = append(rule.Match, &networking.HTTPMatchRequest{Authority: proto.Clone(a).(*networking.StringMatch)})
				}
			}
		}
		for _, d := range h.GetRoute() {
			rule.Route = append(rule.Route, &networking.HTTPRouteDestination{Destination: &networking.Destination{Subset: d.GetDestination().GetSubset()}})
		}
		out.Http = append(out.Http, rule)
	}
	return out
}

// SpecHash identifies a VirtualService or DestinationRule spec: equal specs
// (proto.Equal) have equal hashes, whether built here or decoded from the API
// server. It is 16 hexadecimal digits (FNV-64a of the deterministic protobuf
// encoding); "" for a spec that does not encode.
func SpecHash(spec proto.Message) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return ""
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}
