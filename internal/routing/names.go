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
	if len(validation.IsDNS1123Label(release)) == 0 {
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

// ServiceHost is the fully qualified name of the app's Service inside the mesh.
func ServiceHost(namespace, app string) string {
	return app + "." + namespace + ".svc.cluster.local"
}
