package istio

import (
	"maps"
	"testing"

	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/routing/routingtest"
)

// TestScenariosServedByIstio: the builder's golden scenarios (internal/routing
// testdata/golden) serve every request as the scenario says, by Istio's own
// validation and Envoy route generator.
func TestScenariosServedByIstio(t *testing.T) {
	for _, sc := range routingtest.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			d := routing.Decide(sc.Releases, routingtest.Options)
			vs := routing.MakeVirtualService("shop", "shop", d, routingtest.Options)
			dr := routing.MakeDestinationRule("shop", "shop", d)
			if err := Validate("shop", "shop", vs, dr); err != nil {
				t.Fatal(err)
			}
			var callers []Caller
			for _, req := range sc.Requests {
				if req.From != nil {
					callers = append(callers, Caller{Labels: req.From})
				}
			}
			j, err := NewJudge("shop", "shop", vs, dr, callers...)
			if err != nil {
				t.Fatal(err)
			}
			for _, req := range sc.Requests {
				via := Gateway
				if req.Mesh {
					via = Mesh
				}
				got, err := j.Serve(via, req.Host, req.Headers)
				if req.From != nil {
					got, err = j.ServeFrom(Caller{Labels: req.From}, req.Host, req.Headers)
				}
				switch {
				case len(req.Want) == 0 && err == nil && len(got) > 0:
					t.Errorf("%s: served %v, want not routed to the app", req, got)
				case len(req.Want) > 0 && err != nil:
					t.Errorf("%s: %v, want %v", req, err, req.Want)
				case len(req.Want) > 0 && !maps.Equal(got, req.Want):
					t.Errorf("%s: Istio serves %v, want %v", req, got, req.Want)
				}
			}
		})
	}
}
