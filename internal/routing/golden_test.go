package routing_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/routing/routingtest"
)

// TestGolden renders each scenario's VirtualService and DestinationRule and
// compares them with testdata/golden; REFRESH_GOLDEN=true rewrites them. What
// the objects serve is judged by Istio's own generator in the test/ module,
// on the same scenarios.
func TestGolden(t *testing.T) {
	for _, sc := range routingtest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			d := routing.Decide(sc.Releases, routingtest.Options)
			objs := map[string]any{
				"virtualService":  routing.MakeVirtualService("shop", "shop", d, routingtest.Options),
				"destinationRule": routing.MakeDestinationRule("shop", "shop", d),
			}
			js, err := json.Marshal(objs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.JSONToYAML(js)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", sc.Name+".yaml")
			if os.Getenv("REFRESH_GOLDEN") == "true" {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (REFRESH_GOLDEN=true writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from its golden file (REFRESH_GOLDEN=true rewrites it):\n%s", sc.Name, got)
			}
			// Switchyard's own explanation serves each request as the scenario says.
			vs := routing.MakeVirtualService("shop", "shop", d, routingtest.Options)
			for _, req := range sc.Requests {
				ex := routing.Explain(vs, routingtest.Options.Gateway, routing.Request{Mesh: req.Mesh, Host: req.Host, Headers: req.Headers, SourceLabels: req.From})
				got := map[string]int32{}
				for _, dst := range ex.Split {
					got[dst.Subset] = dst.Weight
				}
				if !equalSplit(got, req.Want) {
					t.Errorf("%s: explain serves %v, want %v", req, got, req.Want)
				}
			}
		})
	}
}

func equalSplit(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
