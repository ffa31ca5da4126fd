package routing

import (
	"fmt"
	"hash/fnv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// SubsetName is the DestinationRule subset, and the pods' version label, of a
// release. It is the release's name when that is a DNS-1123 label (what Istio
// requires of a subset name); otherwise a readable prefix of it and a hash of
// the whole name, so that it stays unique per release.
func SubsetName(release string) string {
	if isDNSLabel(release) {
		return release
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(release))
	prefix := strings.ReplaceAll(release, ".", "-")
	if len(prefix) > 54 {
		prefix = prefix[:54]
	}
	prefix = strings.TrimRight(prefix, "-")
	return fmt.Sprintf("%s-%08x", prefix, h.Sum32())
}

// isDNSLabel is validation.IsDNS1123Label without its regular expression
// (this runs for every release on every rebuild).
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > validation.DNS1123LabelMaxLength || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// DefaultClusterDomain is Kubernetes' default cluster DNS domain.
const DefaultClusterDomain = "cluster.local"

// ServiceHost is the app's Service's name in the default cluster domain.
func ServiceHost(namespace, app string) string {
	return ServiceHostIn(namespace, app, DefaultClusterDomain)
}

// ServiceHostIn is the app's Service's fully qualified name in a cluster
// domain ("" for the default): app.namespace.svc.domain.
func ServiceHostIn(namespace, app, domain string) string {
	if domain == "" {
		domain = DefaultClusterDomain
	}
	return app + "." + namespace + ".svc." + domain
}
