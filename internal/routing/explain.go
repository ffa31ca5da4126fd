package routing

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// Request is a request as a rule sees it.
type Request struct {
	// Mesh: sent by a sidecar inside the mesh to the app's Service; else it
	// arrives at the ingress gateway.
	Mesh bool
	// Host is the Host (authority) header.
	Host string
	// Headers are the request's headers, by lower-case name.
	Headers map[string]string
	// SourceLabels are the labels of the calling pod (Mesh only); nil: a pod
	// without labels.
	SourceLabels map[string]string
	// SourceNamespace is the calling pod's namespace (Mesh only).
	SourceNamespace string
}

// RuleVerdict says whether one rule of a VirtualService matched a request and why not.
type RuleVerdict struct {
	Rule    string
	Matched bool
	// Why it did not match (empty when it did).
	Why string
}

// Explanation is which rule of a VirtualService serves a request, and why.
type Explanation struct {
	// Tried are the rules in order, up to and including the one that matched.
	Tried []RuleVerdict
	// Rule is the matching rule's name; empty when none matched.
	Rule string
	// Split is the matching rule's destinations.
	Split []Destination
}

// Explain walks a VirtualService's HTTP rules in order, as Envoy does, and
// tells which one serves the request: the first whose match conditions (any
// one of them, each with all its fields) hold. Rules that Istio leaves out of
// the proxy's configuration (bound to other gateways, or for callers with
// other labels) are not walked, as Envoy never sees them.
func Explain(vs *networking.VirtualService, gateway string, req Request) Explanation {
	var ex Explanation
	for i, h := range vs.GetHttp() {
		if !inProxy(h, gateway, req) {
			continue
		}
		name := h.GetName()
		if name == "" {
			name = fmt.Sprintf("rule %d", i)
		}
		why := matchHTTP(h, gateway, req)
		ex.Tried = append(ex.Tried, RuleVerdict{Rule: name, Matched: why == "", Why: why})
		if why != "" {
			continue
		}
		ex.Rule = name
		for _, d := range h.GetRoute() {
			w := d.GetWeight()
			if len(h.GetRoute()) == 1 && w == 0 {
				w = 100
			}
			ex.Split = append(ex.Split, Destination{Subset: d.GetDestination().GetSubset(), Weight: w})
		}
		return ex
	}
	return ex
}

// matchHTTP is "" when a rule matches, else why it does not.
func matchHTTP(h *networking.HTTPRoute, gateway string, req Request) string {
	if len(h.GetMatch()) == 0 {
		return ""
	}
	var whys []string
	for _, m := range h.GetMatch() {
		why := matchOne(m, gateway, req)
		if why == "" {
			return ""
		}
		if !slices.Contains(whys, why) {
			whys = append(whys, why) // in the matches' order: header, then baggage
		}
	}
	return strings.Join(whys, "; ")
}

// inProxy: Istio keeps the rule in the configuration of the proxy the
// request passes (a rule without matches, or with one matchOne does not
// rule out by gateway or source labels).
func inProxy(h *networking.HTTPRoute, gateway string, req Request) bool {
	if len(h.GetMatch()) == 0 {
		return true
	}
	for _, m := range h.GetMatch() {
		if sourceMatch(m, gateway, req) == "" {
			return true
		}
	}
	return false
}

// sourceMatch follows Istio's sourceMatchHTTP: a match that names gateways
// holds at those; one that does not holds at every gateway of the
// VirtualService, but only for a proxy whose pod carries its sourceLabels (a
// gateway's pods carry none of Switchyard's). "" when it holds, else why not.
func sourceMatch(m *networking.HTTPMatchRequest, gateway string, req Request) string {
	if gws := m.GetGateways(); len(gws) > 0 {
		want := gateway
		if req.Mesh {
			want = MeshGateway
		}
		for _, g := range gws {
			if g == want {
				return ""
			}
		}
		return fmt.Sprintf("only for %s", strings.Join(gws, ", "))
	}
	sl := m.GetSourceLabels()
	keys := sortedKeys(sl)
	for _, k := range keys {
		if v, ok := req.SourceLabels[k]; !req.Mesh || !ok || v != sl[k] {
			want := make([]string, len(keys))
			for i, k := range keys {
				want[i] = k + "=" + sl[k]
			}
			return "only for callers labelled " + strings.Join(want, ",")
		}
	}
	if ns := m.GetSourceNamespace(); ns != "" && (!req.Mesh || req.SourceNamespace != ns) {
		return "only for callers in namespace " + ns
	}
	return ""
}

func matchOne(m *networking.HTTPMatchRequest, gateway string, req Request) string {
	if why := sourceMatch(m, gateway, req); why != "" {
		return why
	}
	if a := m.GetAuthority(); a != nil && !stringMatches(a, req.Host) {
		return fmt.Sprintf("host %q is not %s", req.Host, describe(a))
	}
	names := make([]string, 0, len(m.GetHeaders()))
	for k := range m.GetHeaders() {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, ok := req.Headers[strings.ToLower(k)]
		if member := BaggageMember(k, m.GetHeaders()[k]); member != "" && !ok {
			return "no baggage"
		} else if member != "" && !stringMatches(m.GetHeaders()[k], v) {
			return fmt.Sprintf("no baggage member %s", member)
		}
		if !ok {
			return fmt.Sprintf("no header %s", k)
		}
		if !stringMatches(m.GetHeaders()[k], v) {
			return fmt.Sprintf("header %s %q is not %s", k, v, describe(m.GetHeaders()[k]))
		}
	}
	// withoutHeaders: a missing header counts as empty (Istio sets Envoy's
	// treat_missing_header_as_empty on them).
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		if stringMatches(m.GetWithoutHeaders()[k], req.Headers[strings.ToLower(k)]) {
			return fmt.Sprintf("only for requests naming no branch (header %s)", k)
		}
	}
	return ""
}

// BaggageMember reads back "key=value" from a baggage header match that
// Switchyard made (a branch's baggage member); "" for any other match.
func BaggageMember(header string, sm *networking.StringMatch) string {
	re := sm.GetRegex()
	if header != BaggageHeader || !strings.HasPrefix(re, baggagePrefix) || !strings.HasSuffix(re, baggageSuffix) {
		return ""
	}
	k, v, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(re, baggagePrefix), baggageSuffix), baggageEquals)
	if !ok {
		return ""
	}
	unquote := strings.NewReplacer(`\.`, ".", `\-`, "-")
	return unquote.Replace(k) + "=" + unquote.Replace(v)
}

func stringMatches(sm *networking.StringMatch, v string) bool {
	switch t := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return v == t.Exact
	case *networking.StringMatch_Prefix:
		return strings.HasPrefix(v, t.Prefix)
	case *networking.StringMatch_Regex:
		re, err := regexp.Compile("^(?:" + t.Regex + ")$")
		return err == nil && re.MatchString(v)
	}
	return true
}

func describe(sm *networking.StringMatch) string {
	if hosts := AuthorityHosts(sm); sm.GetRegex() != "" && len(hosts) > 0 {
		return fmt.Sprintf("%q (any case, any port)", strings.Join(hosts, `" or "`))
	}
	switch t := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return fmt.Sprintf("%q", t.Exact)
	case *networking.StringMatch_Prefix:
		return fmt.Sprintf("prefixed %q", t.Prefix)
	case *networking.StringMatch_Regex:
		return fmt.Sprintf("matching /%s/", t.Regex)
	}
	return "anything"
}
