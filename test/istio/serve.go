package istio

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	core3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/networking/core"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/kube/krt"
	"istio.io/istio/pkg/log"
	"istio.io/istio/pkg/test"

	"github.com/switchyard-dev/switchyard/internal/routing"
)

// IngressGateway is the Gateway the judge's ingress gateway serves:
// "namespace/name", as the operator's gateway flag and a VirtualService's
// gateways name it. Its pods carry the label istio=ingressgateway and it
// serves plain HTTP on port 80 for every host.
const IngressGateway = "istio-system/ingressgateway"

// servicePort is the port of the app's Service.
const servicePort = routing.ServicePort

// Via is where a request enters the mesh.
type Via int

const (
	// Gateway: the request arrives at the ingress gateway, on port 80.
	Gateway Via = iota
	// Mesh: a sidecar in the app's namespace sends the request to port 80.
	Mesh
	// MeshElsewhere: a sidecar in another namespace (OtherNamespace) sends
	// the request to port 80: another team's pod.
	MeshElsewhere
)

// OtherNamespace is the namespace of the MeshElsewhere sidecar.
const OtherNamespace = "another-team"

func (v Via) String() string {
	switch v {
	case Gateway:
		return "gateway"
	case Mesh:
		return "mesh"
	case MeshElsewhere:
		return "mesh (" + OtherNamespace + ")"
	}
	return fmt.Sprintf("Via(%d)", int(v))
}

// Errors Serve (and Explain) return, wrapped, when no subset of the app serves the request.
var (
	// ErrNoVirtualHost: no virtual host of the route configuration takes the request's host.
	ErrNoVirtualHost = errors.New("no virtual host matched")
	// ErrNoRoute: the virtual host has no route whose match holds for the request (Envoy answers 404).
	ErrNoRoute = errors.New("no route matched")
	// ErrNotApp: the matched route does not forward to the app's Service (a redirect, a direct
	// response, or another cluster, such as the sidecar's PassthroughCluster).
	ErrNotApp = errors.New("not forwarded to the app's Service")
)

// Caller is a pod that calls the app from inside the mesh: the judge builds
// its sidecar's routes for its namespace and labels, as istiod does (a rule's
// sourceLabels hold for a pod that carries them all).
type Caller struct {
	// Namespace is the pod's namespace; "" is the app's.
	Namespace string
	// Labels are the pod's labels.
	Labels map[string]string
}

func (c Caller) String() string {
	keys := slices.Sorted(maps.Keys(c.Labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + c.Labels[k]
	}
	return c.Namespace + "{" + strings.Join(parts, ",") + "}"
}

// Judge answers which subsets of an app serve a request, by the Envoy route
// configuration istiod's own generator builds from the app's VirtualService and
// DestinationRule, for the ingress gateway and for a sidecar of the mesh.
//
// The configuration is generated once, in NewJudge; Serve only reads it, so a
// Judge may be asked any number of questions, from any goroutine.
type Judge struct {
	namespace, app string
	// routes by Via: the route configuration the request's listener names (RDS).
	routes map[Via]*route.RouteConfiguration
	// callers: each caller's sidecar's route configuration, by Caller.String
	// with the namespace filled in.
	callers map[string]*route.RouteConfiguration
}

// NewJudge generates the Envoy configuration of an app whose Service is
// <app>.<namespace>.svc.cluster.local, port 80 (HTTP), given its VirtualService
// and DestinationRule specs (either may be nil), both named <app> in <namespace>.
// The world around them is the IngressGateway's Gateway (in istio-system, for
// every host on port 80) and the app's Service, as a ServiceEntry.
//
// Besides the gateway and the two unlabelled sidecars (Mesh, MeshElsewhere),
// it builds the sidecar of each caller given, for ExplainFrom (CheckRoutes
// asks from RouteCallers). Each sidecar is a generation of its own: give
// the callers a question needs, not every one a large VirtualService names.
//
// It needs no testing.T: istio's fake config generator runs under test.Wrap,
// whose failures come back as the error, so a Ginkgo suite can call it too.
// It takes some 16 ms (the first call about 100 ms). The first call turns
// istiod's loggers off: they report every controller's sync, and its stop
// as errors; a failure to generate comes back as the error.
func NewJudge(namespace, app string, vs *networking.VirtualService, dr *networking.DestinationRule, callers ...Caller) (*Judge, error) {
	quietOnce.Do(quiet)
	gwNamespace, gwName, _ := strings.Cut(IngressGateway, "/")
	now := time.Now()
	meta := func(k config.GroupVersionKind, namespace, name string) config.Meta {
		return config.Meta{GroupVersionKind: k, Namespace: namespace, Name: name, CreationTimestamp: now}
	}
	configs := []config.Config{
		{Meta: meta(gvk.Gateway, gwNamespace, gwName), Spec: &networking.Gateway{
			Selector: map[string]string{"istio": "ingressgateway"},
			Servers: []*networking.Server{{
				Port:  &networking.Port{Number: 80, Name: "http", Protocol: "HTTP"},
				Hosts: []string{"*/*"},
			}},
		}},
		{Meta: meta(gvk.ServiceEntry, namespace, app), Spec: &networking.ServiceEntry{
			Hosts:      []string{serviceHost(namespace, app)},
			Ports:      []*networking.ServicePort{{Number: servicePort, Name: "http", Protocol: "HTTP"}},
			Location:   networking.ServiceEntry_MESH_INTERNAL,
			Resolution: networking.ServiceEntry_STATIC,
			Endpoints:  []*networking.WorkloadEntry{{Address: "10.0.0.1"}},
		}},
	}
	if vs != nil {
		configs = append(configs, config.Config{Meta: meta(gvk.VirtualService, namespace, app), Spec: proto.Clone(vs)})
	}
	if dr != nil {
		configs = append(configs, config.Config{Meta: meta(gvk.DestinationRule, namespace, app), Spec: proto.Clone(dr)})
	}

	byKey := map[string]Caller{}
	for _, c := range callers {
		if c.Namespace == "" {
			c.Namespace = namespace
		}
		byKey[c.String()] = c
	}

	j := &Judge{namespace: namespace, app: app, routes: map[Via]*route.RouteConfiguration{},
		callers: map[string]*route.RouteConfiguration{}}
	err := test.Wrap(func(t test.Failer) {
		cg := core.NewConfigGenTest(t, core.TestOptions{Configs: configs})
		labels := map[string]string{"istio": "ingressgateway"}
		gateway := cg.SetupProxy(&model.Proxy{
			Type: model.Router, ConfigNamespace: gwNamespace, Labels: labels,
			Metadata: &model.NodeMetadata{Namespace: gwNamespace, Labels: labels},
		})
		sidecar := cg.SetupProxy(&model.Proxy{ConfigNamespace: namespace})
		elsewhere := cg.SetupProxy(&model.Proxy{ConfigNamespace: OtherNamespace})
		for via, p := range map[Via]*model.Proxy{Gateway: gateway, Mesh: sidecar, MeshElsewhere: elsewhere} {
			want := RouteConfigName(via)
			var names []string
			for _, rc := range cg.Routes(p) {
				names = append(names, rc.GetName())
				if rc.GetName() == want {
					j.routes[via] = rc
				}
			}
			if j.routes[via] == nil {
				t.Fatalf("the %v proxy has no route configuration %q, only %q", via, want, names)
			}
		}
		// The unlabelled sidecars are callers too.
		j.callers[Caller{Namespace: namespace}.String()] = j.routes[Mesh]
		j.callers[Caller{Namespace: OtherNamespace}.String()] = j.routes[MeshElsewhere]
		for key, c := range byKey {
			if j.callers[key] != nil {
				continue
			}
			p := cg.SetupProxy(&model.Proxy{ConfigNamespace: c.Namespace, Labels: c.Labels,
				Metadata: &model.NodeMetadata{Namespace: c.Namespace, Labels: c.Labels}})
			want := RouteConfigName(Mesh)
			for _, rc := range cg.Routes(p) {
				if rc.GetName() == want {
					j.callers[key] = rc
				}
			}
			if j.callers[key] == nil {
				t.Fatalf("the sidecar of caller %s has no route configuration %q", key, want)
			}
		}
	})
	forgetDebugCollections()
	if err != nil {
		return nil, fmt.Errorf("generating the Envoy configuration of %s/%s: %w", namespace, app, err)
	}
	return j, nil
}

var quietOnce sync.Once

func quiet() {
	for _, s := range log.Scopes() {
		s.SetOutputLevel(log.NoneLevel)
	}
}

// forgetDebugCollections empties krt's GlobalDebugHandler, with which the
// fake generator registers its collections: it would otherwise keep every
// generator alive, some 0.75 MB each, for the life of the process. The
// handler only serves istiod's debug dumps; its fields are unexported, so
// this reaches them by reflection, under the handler's own lock, and does
// nothing if their names or types change.
func forgetDebugCollections() {
	h := reflect.ValueOf(krt.GlobalDebugHandler).Elem()
	mu, cols := h.FieldByName("mu"), h.FieldByName("debugCollections")
	if !mu.IsValid() || mu.Type() != reflect.TypeFor[sync.RWMutex]() || !cols.IsValid() || cols.Kind() != reflect.Slice {
		return
	}
	lock := (*sync.RWMutex)(unsafe.Pointer(mu.UnsafeAddr()))
	lock.Lock()
	defer lock.Unlock()
	reflect.NewAt(cols.Type(), unsafe.Pointer(cols.UnsafeAddr())).Elem().SetZero()
}

// RouteConfigName is the route configuration (RDS) that the listener a
// request to port 80 reaches names: the gateway's HTTP server on port 80, or
// the sidecar's outbound 0.0.0.0:80 listener.
func RouteConfigName(via Via) string {
	if via == Gateway {
		return "http." + strconv.Itoa(servicePort)
	}
	return strconv.Itoa(servicePort)
}

// RouteConfiguration is the Envoy route configuration the judge reads for
// requests via the gateway or the mesh, for inspection.
func (j *Judge) RouteConfiguration(via Via) *route.RouteConfiguration {
	return j.routes[via]
}

// Served is how Envoy serves a request.
type Served struct {
	// VirtualHost is the name of the virtual host Envoy picked.
	VirtualHost string
	// Route is the name of the route that matched: the VirtualService's HTTP
	// route name (with ".<match name>" when the match is named).
	Route string
	// Subsets take the request in these shares, in percent of the route's
	// total weight (rounded; they sum to 100 when the weights allow). A subset
	// "" is the app's whole Service, without a subset. Clusters of weight 0
	// are left out.
	Subsets map[string]int32
	// Clusters are the Envoy clusters and their weights as Envoy has them.
	Clusters map[string]uint32
	// Status is the status of a direct response (0 for a forwarded request).
	Status uint32
	// Walked is how many routes of the virtual host Envoy tried, the one
	// that matched included; Regexes how many regular-expression matchers it
	// evaluated on the way (each route's matchers in order, up to the first
	// that fails, as Envoy does). Counted from the generated configuration:
	// no Envoy is run.
	Walked, Regexes int
	// ResponseHeaders are the headers Envoy sets on the response, by subset:
	// the route's own and the subset's cluster's.
	ResponseHeaders map[string]map[string]string
}

// Serve says which subsets of the app serve a plain-HTTP GET / request to
// host (the Host header, :authority, as sent: a port in it counts) with the
// given headers (names case-insensitive, values as sent), entering via the
// gateway or the mesh, and in what shares (percent). In the mesh, host is the
// name the caller uses: the Service's host, its short names, or any other.
//
// When no subset serves it, the map is empty (not nil) and the error wraps
// ErrNoVirtualHost, ErrNoRoute or ErrNotApp; a route whose match the judge
// cannot evaluate (dynamic metadata, runtime fractions, ...) gives an error
// wrapping none of them.
//
// Envoy is not run: the judge evaluates the generated configuration by
// Envoy's documented rules for virtual hosts (matchVirtualHost) and route
// matches (routeMatches, headerMatches).
func (j *Judge) Serve(via Via, host string, headers map[string]string) (map[string]int32, error) {
	s, err := j.Explain(via, host, headers)
	if s.Subsets == nil {
		s.Subsets = map[string]int32{}
	}
	return s.Subsets, err
}

// Explain is Serve, telling also which virtual host and route served the request.
func (j *Judge) Explain(via Via, host string, headers map[string]string) (Served, error) {
	rc := j.routes[via]
	if rc == nil {
		return Served{}, fmt.Errorf("no route configuration for %v", via)
	}
	return j.explain(via, rc, host, headers)
}

// ServeFrom is Serve for a request the caller's sidecar sends.
func (j *Judge) ServeFrom(c Caller, host string, headers map[string]string) (map[string]int32, error) {
	s, err := j.ExplainFrom(c, host, headers)
	if s.Subsets == nil {
		s.Subsets = map[string]int32{}
	}
	return s.Subsets, err
}

// ExplainFrom is Explain for a request the caller's sidecar sends. The
// caller must have been given to NewJudge (an unlabelled one in the app's
// namespace or OtherNamespace is always there).
func (j *Judge) ExplainFrom(c Caller, host string, headers map[string]string) (Served, error) {
	if c.Namespace == "" {
		c.Namespace = j.namespace
	}
	rc := j.callers[c.String()]
	if rc == nil {
		return Served{}, fmt.Errorf("no sidecar was built for caller %s", c)
	}
	return j.explain(Mesh, rc, host, headers)
}

func (j *Judge) explain(via Via, rc *route.RouteConfiguration, host string, headers map[string]string) (Served, error) {
	req := map[string]string{}
	for k, v := range headers {
		req[strings.ToLower(k)] = v
	}
	req[":authority"] = host
	req[":path"] = "/"
	req[":method"] = "GET"
	req[":scheme"] = "http"

	vh := matchVirtualHost(rc, host)
	if vh == nil {
		return Served{}, fmt.Errorf("%v, route configuration %s, host %q: %w", via, rc.GetName(), host, ErrNoVirtualHost)
	}
	s := Served{VirtualHost: vh.GetName()}
	r, err := matchRoute(vh, req, &s)
	if err != nil {
		return s, fmt.Errorf("%v, virtual host %s: %w", via, vh.GetName(), err)
	}
	if r == nil {
		return s, fmt.Errorf("%v, virtual host %s, headers %v: %w", via, vh.GetName(), headers, ErrNoRoute)
	}
	s.Route = r.GetName()
	action := r.GetRoute()
	s.Status = r.GetDirectResponse().GetStatus()
	if action == nil {
		return s, fmt.Errorf("%v, route %q is a %T: %w", via, r.GetName(), r.GetAction(), ErrNotApp)
	}
	s.Clusters = map[string]uint32{}
	headersOf := map[string]map[string]string{}
	addHeaders := func(cluster string, hs []*core3.HeaderValueOption) {
		if headersOf[cluster] == nil {
			headersOf[cluster] = map[string]string{}
		}
		for _, h := range r.GetResponseHeadersToAdd() {
			headersOf[cluster][strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
		for _, h := range hs {
			headersOf[cluster][strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
	}
	switch {
	case action.GetCluster() != "":
		s.Clusters[action.GetCluster()] = 1
		addHeaders(action.GetCluster(), nil)
	case action.GetWeightedClusters() != nil:
		for _, c := range action.GetWeightedClusters().GetClusters() {
			s.Clusters[c.GetName()] += c.GetWeight().GetValue()
			addHeaders(c.GetName(), c.GetResponseHeadersToAdd())
		}
	default:
		return s, fmt.Errorf("%v, route %q picks its cluster by %T: %w", via, r.GetName(), action.GetClusterSpecifier(), ErrNotApp)
	}
	var total uint64
	for _, w := range s.Clusters {
		total += uint64(w)
	}
	if total == 0 {
		return s, fmt.Errorf("%v, route %q has weights summing to 0: %w", via, r.GetName(), ErrNotApp)
	}
	svc := serviceHost(j.namespace, j.app)
	s.Subsets = map[string]int32{}
	for name, w := range s.Clusters {
		dir, subset, h, port := model.ParseSubsetKey(name)
		if dir != model.TrafficDirectionOutbound || string(h) != svc || port != servicePort {
			return Served{VirtualHost: s.VirtualHost, Route: s.Route, Clusters: s.Clusters},
				fmt.Errorf("%v, route %q sends to cluster %q: %w", via, r.GetName(), name, ErrNotApp)
		}
		if w > 0 {
			s.Subsets[subset] += int32(math.Round(float64(w) * 100 / float64(total)))
			if len(headersOf[name]) > 0 {
				if s.ResponseHeaders == nil {
					s.ResponseHeaders = map[string]map[string]string{}
				}
				s.ResponseHeaders[subset] = headersOf[name]
			}
		}
	}
	return s, nil
}

// CheckRoutes asks, for every route of a routing decision, a request made as
// the route expects it: via its gateway (Gateway for IngressGateway, Mesh for
// routing.MeshGateway), to each of its hosts (in the mesh, the app's Service
// host), from a pod with the route's source labels, with the branch header
// (and, apart, the branch's baggage member when opts.BaggageKey is set) when
// the route has a branch. Each must be served by that route (by name), to
// exactly the route's destinations and weights. It returns one error per
// request that is not.
func (j *Judge) CheckRoutes(routes []routing.Route, opts routing.Options) []error {
	var errs []error
	for _, r := range routes {
		via, hosts := Gateway, r.Hosts
		var caller *Caller
		switch r.Gateway {
		case routing.MeshGateway:
			via, hosts = Mesh, []string{serviceHost(j.namespace, j.app)}
			if r.SourceEnvironment != "" {
				caller = &Caller{Labels: routing.CallerLabels(r.SourceEnvironment, "")}
			}
			if len(r.SourceNamespaces) > 0 {
				caller = &Caller{Namespace: r.SourceNamespaces[0]}
			}
		case IngressGateway:
		default:
			errs = append(errs, fmt.Errorf("route %s is bound to gateway %s; the judge has only %s and the mesh",
				r.Name, r.Gateway, IngressGateway))
			continue
		}
		type ask struct {
			caller  *Caller
			headers map[string]string
		}
		var asks []ask
		headerSets := []map[string]string{nil}
		if r.Branch != "" {
			headerSets = []map[string]string{{opts.BranchHeader: r.Branch}}
			if opts.BaggageKey != "" {
				headerSets = append(headerSets, map[string]string{routing.BaggageHeader: "tenant=7," + opts.BaggageKey + "=" + r.Branch})
			}
		}
		want := map[string]int32{}
		for _, d := range r.Destinations {
			want[d.Subset] += d.Weight
		}
		for _, headers := range headerSets {
			asks = append(asks, ask{caller, headers})
		}
		if r.SourceBranch != "" {
			// The branch's own pods, naming no branch.
			asks = append(asks, ask{&Caller{Labels: routing.CallerLabels(r.Environment, r.SourceBranch)}, nil})
		}
		for _, a := range asks {
			caller, headers := a.caller, a.headers
			for _, h := range hosts {
				got, err := j.Explain(via, h, headers)
				from := ""
				if caller != nil {
					got, err = j.ExplainFrom(*caller, h, headers)
					from = " from " + caller.String()
				}
				if len(r.Destinations) == 0 && errors.Is(err, ErrNotApp) && got.Route == r.Name && got.Status == 503 {
					continue // the unserved rule answers 503
				}
				if err != nil || got.Route != r.Name || !maps.Equal(got.Subsets, want) {
					errs = append(errs, fmt.Errorf("route %s: a request via %v%s to %s with headers %v is served %v by route %q (error: %v); want %v",
						r.Name, via, from, h, headers, got.Subsets, got.Route, err, want))
				}
			}
		}
	}
	return errs
}

// RouteCallers are the callers CheckRoutes asks from: a pod carrying each
// mesh route's source labels, in the app's namespace.
func RouteCallers(routes []routing.Route) []Caller {
	var out []Caller
	for _, r := range routes {
		if r.Gateway == routing.MeshGateway && r.SourceEnvironment != "" {
			out = append(out, Caller{Labels: routing.CallerLabels(r.SourceEnvironment, "")})
		}
		if r.Gateway == routing.MeshGateway && r.SourceBranch != "" {
			out = append(out, Caller{Labels: routing.CallerLabels(r.Environment, r.SourceBranch)})
		}
		for _, ns := range r.SourceNamespaces {
			out = append(out, Caller{Namespace: ns})
		}
	}
	return out
}

func serviceHost(namespace, app string) string {
	return routing.ServiceHost(namespace, app)
}

// matchVirtualHost picks the virtual host as Envoy does: domains match
// case-insensitively, an exact domain first, then the longest suffix wildcard
// ("*.foo.com"), then the longest prefix wildcard ("foo.*"), then "*"; a
// wildcard never matches the empty string. With ignore_port_in_host_matching
// (which Istio sets) a port in the host is ignored for this choice only.
func matchVirtualHost(rc *route.RouteConfiguration, host string) *route.VirtualHost {
	host = strings.ToLower(host)
	if rc.GetIgnorePortInHostMatching() {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
			if strings.Contains(h, ":") {
				host = "[" + h + "]"
			}
		}
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if strings.ToLower(d) == host {
				return vh
			}
		}
	}
	best := func(ok func(d string) bool) *route.VirtualHost {
		var found *route.VirtualHost
		longest := 0
		for _, vh := range rc.GetVirtualHosts() {
			for _, d := range vh.GetDomains() {
				d = strings.ToLower(d)
				if d != "*" && len(d) > longest && len(host) >= len(d) && ok(d) {
					found, longest = vh, len(d)
				}
			}
		}
		return found
	}
	if vh := best(func(d string) bool { return d[0] == '*' && strings.HasSuffix(host, d[1:]) }); vh != nil {
		return vh
	}
	if vh := best(func(d string) bool { return d[len(d)-1] == '*' && strings.HasPrefix(host, d[:len(d)-1]) }); vh != nil {
		return vh
	}
	for _, vh := range rc.GetVirtualHosts() {
		if slices.Contains(vh.GetDomains(), "*") {
			return vh
		}
	}
	return nil
}

// matchRoute is the first route of the virtual host whose match holds for the
// request, or an error when a route uses a matcher the judge cannot evaluate.
func matchRoute(vh *route.VirtualHost, req map[string]string, cost *Served) (*route.Route, error) {
	for _, r := range vh.GetRoutes() {
		cost.Walked++
		ok, err := routeMatches(r.GetMatch(), req, &cost.Regexes)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.GetName(), err)
		}
		if ok {
			return r, nil
		}
	}
	return nil, nil
}

func routeMatches(m *route.RouteMatch, req map[string]string, regexes *int) (bool, error) {
	if m.GetGrpc() != nil || m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 ||
		m.GetRuntimeFraction() != nil || m.GetFilterState() != nil {
		return false, fmt.Errorf("unsupported route match %v", m)
	}
	path := req[":path"]
	caseSensitive := m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()
	fold := func(s string) string {
		if caseSensitive {
			return s
		}
		return strings.ToLower(s)
	}
	switch p := m.GetPathSpecifier().(type) {
	case *route.RouteMatch_Prefix:
		if !strings.HasPrefix(fold(path), fold(p.Prefix)) {
			return false, nil
		}
	case *route.RouteMatch_Path:
		if fold(path) != fold(p.Path) {
			return false, nil
		}
	case *route.RouteMatch_PathSeparatedPrefix:
		pre := fold(p.PathSeparatedPrefix)
		if rest, ok := strings.CutPrefix(fold(path), pre); !ok || (rest != "" && rest[0] != '/' && rest[0] != '?') {
			return false, nil
		}
	case *route.RouteMatch_SafeRegex:
		ok, err := fullMatch(p.SafeRegex.GetRegex(), path)
		if err != nil || !ok {
			return false, err
		}
	default:
		return false, fmt.Errorf("unsupported path match %T", p)
	}
	for _, h := range m.GetHeaders() {
		if h.GetSafeRegexMatch() != nil || h.GetStringMatch().GetSafeRegex() != nil {
			*regexes++
		}
		ok, err := headerMatches(h, req)
		if err != nil || !ok {
			return false, err
		}
	}
	// The request has no query string, and every query parameter matcher
	// (Istio's are present or string matches) needs its parameter.
	if len(m.GetQueryParameters()) > 0 {
		return false, nil
	}
	return true, nil
}

// headerMatches follows Envoy's HeaderUtility::HeaderData::matchesHeaders.
func headerMatches(h *route.HeaderMatcher, req map[string]string) (bool, error) {
	value, present := req[strings.ToLower(h.GetName())]
	if _, isPresent := h.GetHeaderMatchSpecifier().(*route.HeaderMatcher_PresentMatch); !present && !h.GetTreatMissingHeaderAsEmpty() {
		if h.GetInvertMatch() {
			return isPresent && h.GetPresentMatch(), nil
		}
		return isPresent && !h.GetPresentMatch(), nil
	}
	var ok bool
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *route.HeaderMatcher_PresentMatch:
		ok = present == s.PresentMatch
	case *route.HeaderMatcher_StringMatch:
		var err error
		if ok, err = stringMatches(s.StringMatch, value); err != nil {
			return false, fmt.Errorf("header %s: %w", h.GetName(), err)
		}
	case *route.HeaderMatcher_ExactMatch:
		ok = value == s.ExactMatch
	case *route.HeaderMatcher_PrefixMatch:
		ok = strings.HasPrefix(value, s.PrefixMatch)
	case *route.HeaderMatcher_SuffixMatch:
		ok = strings.HasSuffix(value, s.SuffixMatch)
	case *route.HeaderMatcher_ContainsMatch:
		ok = strings.Contains(value, s.ContainsMatch)
	case *route.HeaderMatcher_SafeRegexMatch:
		var err error
		if ok, err = fullMatch(s.SafeRegexMatch.GetRegex(), value); err != nil {
			return false, fmt.Errorf("header %s: %w", h.GetName(), err)
		}
	case *route.HeaderMatcher_RangeMatch:
		n, err := strconv.ParseInt(value, 10, 64)
		ok = err == nil && n >= s.RangeMatch.GetStart() && n < s.RangeMatch.GetEnd()
	case nil:
		// No specifier: the header is present (Envoy's HeaderMatchType::Present).
		ok = present
	default:
		return false, fmt.Errorf("header %s: unsupported match %T", h.GetName(), s)
	}
	return ok != h.GetInvertMatch(), nil
}

func stringMatches(m *matcher.StringMatcher, value string) (bool, error) {
	fold := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		return fold(value) == fold(p.Exact), nil
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(fold(value), fold(p.Prefix)), nil
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(fold(value), fold(p.Suffix)), nil
	case *matcher.StringMatcher_Contains:
		return strings.Contains(fold(value), fold(p.Contains)), nil
	case *matcher.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), value)
	}
	return false, fmt.Errorf("unsupported string match %v", m)
}

// fullMatch: Envoy's safe_regex is RE2 and must match the whole value.
func fullMatch(re, value string) (bool, error) {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		return false, fmt.Errorf("regex %q: %w", re, err)
	}
	return r.MatchString(value), nil
}
