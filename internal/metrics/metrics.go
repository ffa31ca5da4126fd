// Package metrics holds Switchyard's domain metrics, served with
// controller-runtime's own on the manager's metrics endpoint.
package metrics

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

var (
	// Rebuilds counts the app controller's rebuilds of an app's routing, by result.
	Rebuilds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_route_rebuilds_total",
		Help: "Rebuilds of an app's routing from its releases, by result (success, error).",
	}, []string{"result"})

	// RebuildDuration is how long a rebuild takes, writes included.
	RebuildDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchyard_route_rebuild_duration_seconds",
		Help:    "Time a rebuild of an app's routing takes, its writes included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})

	// Writes counts writes to the objects the app controller owns, by kind and operation.
	Writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_object_writes_total",
		Help: "Writes to the app's shared objects, by kind (VirtualService, DestinationRule, Service) and operation (apply, delete).",
	}, []string{"kind", "operation"})
)

// SpecBytesAnnotation is set by the operator's cache (never written) on a
// VirtualService it holds in compact form: the whole spec's JSON size, in
// bytes, which the size metric reports.
const SpecBytesAnnotation = "switchyard.dev/cached-spec-bytes"

// Register adds Switchyard's metrics to controller-runtime's registry; the
// per-object gauges are computed from the manager's cache at scrape time.
func Register(cache client.Reader) {
	ctrlmetrics.Registry.MustRegister(Rebuilds, RebuildDuration, Writes, &collector{cache: cache})
}

var (
	releasesDesc = prometheus.NewDesc("switchyard_releases",
		"AppReleases by namespace, app, environment and phase.",
		[]string{"namespace", "app", "environment", "phase"}, nil)
	vsBytesDesc = prometheus.NewDesc("switchyard_virtualservice_bytes",
		"Size in bytes of the spec of an app's VirtualService, as JSON.",
		[]string{"namespace", "app"}, nil)
)

// collector computes gauges from the cache at scrape time.
type collector struct {
	cache client.Reader
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- releasesDesc
	ch <- vsBytesDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	releases := &v1alpha1.AppReleaseList{}
	if err := c.cache.List(ctx, releases); err == nil {
		type key struct{ ns, app, env, phase string }
		counts := map[key]int{}
		for _, r := range releases.Items {
			phase := string(r.Status.Phase)
			if phase == "" {
				phase = "Unknown"
			}
			counts[key{r.Namespace, r.Spec.App, r.Spec.Environment, phase}]++
		}
		for k, n := range counts {
			ch <- prometheus.MustNewConstMetric(releasesDesc, prometheus.GaugeValue, float64(n), k.ns, k.app, k.env, k.phase)
		}
	}
	vss := &networkingv1.VirtualServiceList{}
	if err := c.cache.List(ctx, vss); err == nil {
		for _, vs := range vss.Items {
			// The cache holds VirtualServices compacted, their whole spec's
			// size noted (see the controller's compact).
			size, err := strconv.Atoi(vs.Annotations[SpecBytesAnnotation])
			if err != nil {
				b, err := json.Marshal(&vs.Spec)
				if err != nil {
					continue
				}
				size = len(b)
			}
			ch <- prometheus.MustNewConstMetric(vsBytesDesc, prometheus.GaugeValue, float64(size), vs.Namespace, vs.Name)
		}
	}
}
