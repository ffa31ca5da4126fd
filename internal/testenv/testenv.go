// Package testenv finds what Switchyard's test suites install into the API
// servers they start: Switchyard's CRDs and Istio's, from the istio.io/api
// module the operator is built with.
package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CRDPaths are the CRD files every test API server gets: Switchyard's, and
// Istio's from the istio.io/api module in go.mod.
func CRDPaths() ([]string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = Root()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locate the istio.io/api module: %w", err)
	}
	istio := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	return []string{filepath.Join(Root(), "config", "crd", "bases"), istio}, nil
}

// ControlPlaneDir holds the etcd and Kubernetes binaries hack/build-controlplane.sh builds.
func ControlPlaneDir() string {
	return filepath.Join(Root(), "bin", "controlplane", "v1.37.2")
}
