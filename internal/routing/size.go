package routing

import (
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	networking "istio.io/api/networking/v1alpha3"
)

// sizer estimates the serialized size of an app's VirtualService, in
// bytes, from above. Without opts.App and opts.Namespace, the app's Service
// is named as long as the API allows (a 63-character app in a 63-character
// namespace), so the estimate holds for any app.
type sizer struct {
	svc      string
	opts     Options
	patterns map[string]*networking.StringMatch
}

func newSizer(opts Options) *sizer {
	ns, app := opts.Namespace, opts.App
	if ns == "" || app == "" {
		ns, app = strings.Repeat("n", 63), strings.Repeat("a", 63)
	}
	return &sizer{svc: ServiceHostIn(ns, app, opts.ClusterDomain), opts: opts, patterns: map[string]*networking.StringMatch{}}
}

// route is one HTTP route's JSON size, and its comma.
func (z *sizer) route(r Route) int {
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

// fixed is the size of what does not depend on the rules: the object's
// metadata, the owner reference of each of the live releases, the hosts.
func (z *sizer) fixed(hosts map[string][]string, live int) int {
	n := objectOverhead + live*ownerReferenceBytes + len(z.svc) + 3
	for _, hs := range hosts {
		for _, h := range hs {
			n += len(h) + 3
		}
	}
	return n
}
