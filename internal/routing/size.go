package routing

import (
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	networking "istio.io/api/networking/v1alpha3"
)

// sizer estimates the serialized size of an app's VirtualService, in
// bytes, from above. Without opts.App and opts.Namespace, the app's Service
// is named as long as the API allows (a 63-character app in a 63-character
// namespace), so the estimate holds for any app.
type sizer struct {
	// off: no byte budget; nothing is serialized, every size is 0.
	off      bool
	svc      string
	opts     Options
	patterns map[string]*networking.StringMatch
}

func newSizer(opts Options) *sizer {
	ns, app := opts.Namespace, opts.App
	if ns == "" || app == "" {
		ns, app = strings.Repeat("n", 63), strings.Repeat("a", 63)
	}
	return &sizer{off: opts.MaxBytes <= 0, svc: ServiceHostIn(ns, app, opts.ClusterDomain), opts: opts,
		patterns: map[string]*networking.StringMatch{}}
}

// route is one HTTP route's JSON size, and its comma.
func (z *sizer) route(r Route) int {
	if z.off {
		return 0
	}
	b, err := protojson.Marshal(makeHTTPRoute(z.svc, r, z.opts, z.patterns))
	if err != nil {
		return 0
	}
	return len(b) + 1
}

// Per-object overheads of the estimate, in bytes.
const (
	// objectOverhead: apiVersion, kind, metadata (name, namespace, labels,
	// annotations, uid, timestamps, the field managers' entries), gateways,
	// exportTo.
	objectOverhead = 4096
	// ownerReferenceBytes: one owner reference (apiVersion, kind, a name of
	// up to 63 characters, uid, flags) and its managedFields entry.
	ownerReferenceBytes = 320
)

// fixed is the size of what does not depend on the branches: the object's
// metadata, the owner references of its owners other than branches (owners:
// how many), the hosts.
func (z *sizer) fixed(hosts map[string][]string, owners int) int {
	if z.off {
		return 0
	}
	n := objectOverhead + owners*ownerReferenceBytes + len(z.svc) + 3
	for _, hs := range hosts {
		for _, h := range hs {
			n += len(h) + 3
		}
	}
	return n
}

// ownerReference is the size of one owner reference.
func (z *sizer) ownerReference() int {
	if z.off {
		return 0
	}
	return ownerReferenceBytes
}

// Placeholders of a branch template: upper case, which no DNS name, and so
// none of the strings they stand for, contains.
const (
	placeholderBranch  = "QQBRANCHQQ"
	placeholderSubset  = "QQSUBSETQQ"
	placeholderRelease = "QQRELEASEQQ"
)

// branchTemplate is the size of the rules one branch of an environment adds,
// with the branch's, its subset's and its release's names as placeholders.
type branchTemplate struct {
	routes                   []Route
	size                     int
	branches, subsets, names int // how many times each placeholder occurs
}

// branchTemplate makes an environment's template: the rules makeRoutes adds
// for a placeholder branch to the table base (made without branches).
func (z *sizer) branchTemplate(envs []string, hosts map[string][]string, splits map[string][]Destination, base []Route, env string) branchTemplate {
	head := branchHead{Branch: placeholderBranch, Destination: Destination{Release: placeholderRelease, Subset: placeholderSubset, Weight: 100}}
	var t branchTemplate
	for _, r := range makeRoutes(envs, hosts, splits, map[string][]branchHead{env: {head}}, z.opts) {
		if slices.ContainsFunc(base, func(o Route) bool { return o.Name == r.Name }) {
			continue
		}
		t.routes = append(t.routes, r)
		if z.off {
			continue
		}
		b, err := protojson.Marshal(makeHTTPRoute(z.svc, r, z.opts, z.patterns))
		if err != nil {
			continue
		}
		t.size += len(b) + 1
		t.branches += strings.Count(string(b), placeholderBranch)
		t.subsets += strings.Count(string(b), placeholderSubset)
		t.names += strings.Count(string(b), placeholderRelease)
	}
	return t
}

// bytes is the size of the rules of branch h (its names are DNS names, which
// JSON and regular expressions carry as they are, a dot in a release's name
// escaped by a backslash at most).
func (t branchTemplate) bytes(h branchHead) int {
	return t.size + t.branches*(len(h.Branch)-len(placeholderBranch)) + t.subsets*(len(h.Subset)-len(placeholderSubset)) +
		t.names*(2*len(h.Release)-len(placeholderRelease))
}

// subsetBytes is a subset's share of the DestinationRule's JSON, from above:
// the subset as MakeDestinationRule writes it, its comma, and its release's
// owner reference (the Service carries the same owner references and no
// subsets, so it is smaller).
func subsetBytes(s Destination) int {
	return subsetTemplate() + 2*len(s.Subset) + 1 + ownerReferenceBytes
}

// subsetTemplate is the JSON size of a subset less its name's two
// occurrences (as name and label value; subset names are DNS labels, which
// JSON carries as they are).
var subsetTemplate = sync.OnceValue(func() int {
	b, err := protojson.Marshal(makeSubset(Destination{Subset: "q"}))
	if err != nil {
		panic(err) // a constant message always encodes
	}
	return len(b) - 2
})
