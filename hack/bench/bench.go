package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/localcluster"
	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// bench is the cluster, the operator and a client the figures share.
type bench struct {
	cluster    *localcluster.Cluster
	c          client.WithWatch
	bin        string
	op         *testenv.Operator
	metricsURL string
	pprofURL   string
	nsCount    int
	// operatorArgs are extra flags for the operator (-operator-args).
	operatorArgs []string
}

func newBench(ctx context.Context, operatorArgs []string) (*bench, error) {
	cluster, err := testenv.StartCluster(ctx, os.Stdout)
	if err != nil {
		return nil, err
	}
	b := &bench{cluster: cluster, operatorArgs: operatorArgs}
	if err := os.MkdirAll(filepath.Dir(b.operatorLog()), 0o755); err != nil {
		return nil, err
	}
	_ = os.Remove(b.operatorLog())
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	cfg := *cluster.Config
	cfg.QPS, cfg.Burst = 1000, 2000
	if b.c, err = client.NewWithWatch(&cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if b.bin, err = testenv.BuildManager(ctx); err != nil {
		return nil, err
	}
	return b, b.startOperator()
}

func (b *bench) startOperator() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pprofPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b.pprofURL = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", pprofPort)
	args := append([]string{fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port), "--metrics-secure=false", fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", pprofPort),
		"--zap-log-level=error", "--max-routes=5000"}, b.operatorArgs...)
	b.op, err = testenv.StartOperator(b.bin, b.cluster.Kubeconfig, b.operatorLog(), args...)
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { _, err := b.scrape(); return err == nil, nil })
}

// operatorLog is where the operator writes its log: bin/bench/switchyard.log,
// kept after the run.
func (b *bench) operatorLog() string {
	return filepath.Join(testenv.Root(), "bin", "bench", "switchyard.log")
}

func (b *bench) close() {
	if b.op != nil {
		b.op.Stop()
	}
	_ = b.cluster.Stop()
	_ = os.RemoveAll(b.cluster.Dir)
}

func (b *bench) namespace(ctx context.Context) (string, error) {
	b.nsCount++
	ns := fmt.Sprintf("bench-%d", b.nsCount)
	return ns, b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
}

// apply is a pipeline's server-side apply of an AppRelease.
func (b *bench) apply(ctx context.Context, ns, app, name string, spec map[string]any) error {
	spec["app"] = app
	if hosts, ok := spec["hosts"].([]any); ok {
		// A host is served by one app in the whole cluster: each app gets its own.
		own := make([]any, len(hosts))
		for i, h := range hosts {
			own[i] = strings.TrimSuffix(h.(string), "example.com") + app + "." + ns + ".example.com"
		}
		spec["hosts"] = own
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AppRelease",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec,
	}}
	return b.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("ci-pipeline"), client.ForceOwnership)
}

func branchSpec(name string) map[string]any {
	return map[string]any{"environment": "staging", "hosts": []any{"staging.shop.example.com"},
		"branch": name, "image": "registry.example.com/shop:" + name}
}

// applyAll applies releases from n concurrent pipelines.
func (b *bench) applyAll(ctx context.Context, ns, app string, names []string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 200)
	for _, n := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := b.apply(ctx, ns, app, n, branchSpec(n)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// observer records, from watches, when each Deployment of a namespace first
// became Available and when each subset first appeared in a route.
type observer struct {
	mu        sync.Mutex
	created   map[string]time.Time
	available map[string]time.Time
	subset    map[string]time.Time
	routed    map[string]time.Time
	stop      func()
}

func (b *bench) observe(ctx context.Context, ns, app string) (*observer, error) {
	o := &observer{created: map[string]time.Time{}, available: map[string]time.Time{},
		subset: map[string]time.Time{}, routed: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(ctx)
	o.stop = cancel
	dw, err := b.c.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		return nil, err
	}
	vw, err := b.c.Watch(ctx, &networkingv1.VirtualServiceList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		return nil, err
	}
	dr, err := b.c.Watch(ctx, &networkingv1.DestinationRuleList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		return nil, err
	}
	go o.loop(dw, func(obj runtime.Object, now time.Time) {
		d := obj.(*appsv1.Deployment)
		if _, ok := o.created[d.Name]; !ok {
			o.created[d.Name] = now
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue && d.Status.AvailableReplicas > 0 {
				if _, ok := o.available[d.Name]; !ok {
					o.available[d.Name] = now
				}
			}
		}
	})
	go o.loop(vw, func(obj runtime.Object, now time.Time) {
		vs := obj.(*networkingv1.VirtualService)
		if vs.Name != app {
			return
		}
		for _, h := range vs.Spec.Http {
			for _, d := range h.Route {
				if _, ok := o.routed[d.Destination.Subset]; !ok {
					o.routed[d.Destination.Subset] = now
				}
			}
		}
	})
	go o.loop(dr, func(obj runtime.Object, now time.Time) {
		d := obj.(*networkingv1.DestinationRule)
		if d.Name != app {
			return
		}
		for _, ss := range d.Spec.Subsets {
			if _, ok := o.subset[ss.Name]; !ok {
				o.subset[ss.Name] = now
			}
		}
	})
	return o, nil
}

func (o *observer) loop(w watch.Interface, record func(runtime.Object, time.Time)) {
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type != watch.Added && ev.Type != watch.Modified {
			continue
		}
		now := time.Now()
		o.mu.Lock()
		record(ev.Object, now)
		o.mu.Unlock()
	}
}

// waitRouted waits until every named release is routed and returns when each was.
func (o *observer) waitRouted(ctx context.Context, names []string, timeout time.Duration) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, n := range names {
			t, ok := o.routed[routing.SubsetName(n)]
			if !ok {
				return false, nil
			}
			out[n] = t
		}
		return true, nil
	})
	return out, err
}

// trace is when the release's Deployment, subset, availability and route were
// first seen, relative to start (for -v).
func (o *observer) trace(name string, start time.Time) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	at := func(m map[string]time.Time, k string) string {
		t, ok := m[k]
		if !ok {
			return "-"
		}
		return t.Sub(start).Round(time.Millisecond).String()
	}
	sub := routing.SubsetName(name)
	return fmt.Sprintf("deployment %s, subset %s, available %s, routed %s",
		at(o.created, name), at(o.subset, sub), at(o.available, name), at(o.routed, sub))
}

func (o *observer) availableAt(name string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.available[name]
	return t, ok
}

// scrape reads the operator's metrics.
func (b *bench) scrape() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(b.metricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// sum adds the series of a family whose labels include want (a value of "*" matches any).
func sum(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := families[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && (v == "*" || strings.Contains(","+v+",", ","+l.GetValue()+",")) {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += m.Histogram.GetSampleSum()
		}
	}
	return total
}

// writes are the operator's writes to the VirtualService and DestinationRule so far.
func (b *bench) writes() (vs, dr float64, err error) {
	f, err := b.scrape()
	if err != nil {
		return 0, 0, err
	}
	return sum(f, "switchyard_object_writes_total", map[string]string{"kind": "VirtualService"}),
		sum(f, "switchyard_object_writes_total", map[string]string{"kind": "DestinationRule"}), nil
}

// saveHeap writes the operator's heap profile to bin/bench/NAME.pprof, for
// `go tool pprof`.
func (b *bench) saveHeap(name string) {
	resp, err := http.Get(b.pprofURL + "heap?gc=1")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(filepath.Dir(b.operatorLog()), name+".pprof"))
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// rss is the operator's resident memory in bytes.
func (b *bench) rss() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.op.Pid()))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// quantiles are p50 and p99 of durations (nearest rank).
func quantiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.50), rank(0.99)
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}
