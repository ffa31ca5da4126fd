package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// report collects the figures as table rows.
type report struct {
	started time.Time
	quick   bool
	// partial: only some steps ran (-only); verbose prints sample traces.
	partial, verbose bool
	rows             []string
	// largest is the namespace of apply-to-routed's largest app, and its size.
	largest  string
	largestN int
}

func (r *report) add(section, figure, value, target, verdict string) {
	r.rows = append(r.rows, fmt.Sprintf("| %s | %s | %s | %s | %s |", section, figure, value, target, verdict))
	fmt.Printf("    %s: %s %s\n", figure, value, verdict) // a run cut short still shows what it measured
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// builder runs the pure builder's Go benchmark.
func (r *report) builder(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "test", "./internal/routing/", "-run", "^$", "-bench", "BenchmarkDecide", "-benchtime", "20x", "-count", "3")
	cmd.Dir = testenv.Root()
	out, err := cmd.Output()
	if err != nil {
		return err
	}
	best := map[string][3]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "BenchmarkDecide/") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(f[0], "BenchmarkDecide/"), "-2")
		if prev, ok := best[name]; !ok || lessNs(f[2], prev[0]) {
			best[name] = [3]string{f[2], f[4], f[6]}
		}
	}
	for _, n := range []string{"releases=10", "releases=1000", "releases=10000"} {
		b := best[n]
		target, ok := "", true
		if n == "releases=10000" {
			var ns float64
			_, _ = fmt.Sscan(b[0], &ns) // not a number: no target checked
			target, ok = "< 50 ms", ns < 50e6
		}
		v := "met"
		if target == "" {
			v = ""
		} else if !ok {
			v = "**missed**"
		}
		r.add("5 builder", n+" (best of 3)", fmt.Sprintf("%s ns/op, %s B/op, %s allocs/op", b[0], b[1], b[2]), target, v)
	}
	return nil
}

func lessNs(a, b string) bool {
	var x, y float64
	_, _ = fmt.Sscan(a, &x) // not numbers: compare as 0
	_, _ = fmt.Sscan(b, &y)
	return x < y
}

// sizes measures bytes per branch route and per owner reference, and the
// route count at which one app's VirtualService would cross etcd's limit.
func (r *report) sizes() error {
	opts := routing.Options{BranchHeader: "x-branch", Gateway: "istio-system/ingressgateway", MeshEnvironment: "production"}
	size := func(n int) (vsBytes, refBytes int) {
		var rs []routing.Release
		for i := range n {
			rs = append(rs, routing.Release{Name: fmt.Sprintf("shop-staging-feature-%04d-7f3a9c1", i), UID: types.UID(fmt.Sprintf("3f2c9d5e-4b1a-4c8e-9a7b-%012d", i)),
				Created: time.Unix(int64(i), 0), Environment: "staging", Hosts: []string{"staging.shop.example.com"},
				Branch: fmt.Sprintf("feature-%04d", i), HasDeployment: true, Available: true})
		}
		d := routing.Decide(rs, opts)
		b, _ := json.Marshal(routing.MakeVirtualService("shop", "shop", d, opts))
		ref, _ := json.Marshal(metav1.OwnerReference{APIVersion: "delivery.switchyard.dev/v1alpha1", Kind: "AppRelease",
			Name: rs[0].Name, UID: rs[0].UID})
		return len(b), len(ref)
	}
	v100, ref := size(100)
	v200, _ := size(200)
	perRoute := (v200 - v100) / 100
	limit := 1536 * 1024
	crossing := limit / (perRoute + ref)
	r.add("6 size", "bytes per branch route (one host)", fmt.Sprintf("%d B", perRoute), "", "")
	r.add("6 size", "bytes per owner reference", fmt.Sprintf("%d B", ref), "", "")
	r.add("6 size", "routes at which one VirtualService crosses 1.5 MiB (route + owner reference each)", fmt.Sprint(crossing),
		"a clear condition before", fmt.Sprintf("--max-routes=1000 (default): beyond it the newest branches wait with RouteBudgetExceeded, at about %d KiB", 1000*(perRoute+ref)/1024))
	return nil
}

// todaysWay: 50 pipelines editing the shared VirtualService themselves, once
// blind and once with optimistic concurrency, against 50 AppReleases.
func (r *report) todaysWay(ctx context.Context, b *bench, n int) error {
	ns, err := b.namespace(ctx)
	if err != nil {
		return err
	}
	base := func(name string) *networkingv1.VirtualService {
		return &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: networking.VirtualService{Hosts: []string{"staging.shop.example.com"}, Gateways: []string{"istio-system/ingressgateway"},
				Http: []*networking.HTTPRoute{{Name: "default", Route: []*networking.HTTPRouteDestination{{
					Destination: &networking.Destination{Host: "shop", Subset: "stable"}}}}}}}
	}
	route := func(i int) *networking.HTTPRoute {
		return &networking.HTTPRoute{Name: fmt.Sprintf("branch-%d", i),
			Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{
				"x-branch": {MatchType: &networking.StringMatch_Exact{Exact: fmt.Sprintf("b%d", i)}}}}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "shop", Subset: fmt.Sprintf("b%d", i)}}}}
	}
	count := func(name string) int {
		vs := &networkingv1.VirtualService{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, vs); err != nil {
			return -1
		}
		return len(vs.Spec.Http) - 1
	}

	// Blind: read, add the route, write the whole list back (a merge patch, as
	// an edited manifest re-applied would), no resourceVersion.
	if err := b.c.Create(ctx, base("blind")); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			vs := &networkingv1.VirtualService{}
			if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "blind"}, vs); err != nil {
				return
			}
			http := append(vs.Spec.Http, route(i))
			body, _ := json.Marshal(map[string]any{"spec": map[string]any{"http": http}})
			_ = b.c.Patch(ctx, vs, client.RawPatch(types.MergePatchType, body))
		})
	}
	wg.Wait()
	lost := n - count("blind")
	r.add("7 today's way", fmt.Sprintf("%d pipelines, read-modify-write without resourceVersion: routes lost", n), fmt.Sprint(lost), "", "")

	// Optimistic concurrency: update with resourceVersion, retry on conflict.
	if err := b.c.Create(ctx, base("optimistic")); err != nil {
		return err
	}
	var mu sync.Mutex
	writes, conflicts := 0, 0
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for {
				vs := &networkingv1.VirtualService{}
				if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "optimistic"}, vs); err != nil {
					return
				}
				vs.Spec.Http = append(vs.Spec.Http, route(i))
				err := b.c.Update(ctx, vs)
				mu.Lock()
				writes++
				if apierrors.IsConflict(err) {
					conflicts++
				}
				mu.Unlock()
				if !apierrors.IsConflict(err) {
					return
				}
			}
		})
	}
	wg.Wait()
	optimistic := time.Since(start)
	r.add("7 today's way", fmt.Sprintf("%d pipelines with resourceVersion and retries: time until all routed", n), ms(optimistic), "", "")
	r.add("7 today's way", "... VirtualService write attempts (of which conflicts); routes lost",
		fmt.Sprintf("%d (%d); %d lost", writes, conflicts, n-count("optimistic")), "", "")

	// Switchyard: n AppReleases applied at once.
	res, err := b.applyBurst(ctx, "b", n)
	if err != nil {
		return err
	}
	r.add("7 today's way", fmt.Sprintf("Switchyard, %d AppReleases at once: time until all routed (pods becoming Available included)", n),
		fmt.Sprintf("%s (last pod Available → all routed: %s)", ms(res.routed.Sub(res.start)), ms(res.routed.Sub(res.lastAvailable))), "", "")
	r.add("7 today's way", "... VirtualService and DestinationRule writes; routes lost",
		fmt.Sprintf("%.0f + %.0f; 0 lost", res.vsWrites, res.drWrites), "lost: 0", "met")
	return nil
}

// burstResult is what applyBurst saw.
type burstResult struct {
	start, lastAvailable, routed time.Time
	vsWrites, drWrites           float64
}

// applyBurst applies n releases from n concurrent pipelines into a new
// namespace and waits until all are routed.
func (b *bench) applyBurst(ctx context.Context, prefix string, n int) (burstResult, error) {
	var res burstResult
	ns, err := b.namespace(ctx)
	if err != nil {
		return res, err
	}
	obs, err := b.observe(ctx, ns, "shop")
	if err != nil {
		return res, err
	}
	defer obs.stop()
	vs0, dr0, err := b.writes()
	if err != nil {
		return res, err
	}
	rel := names(prefix, n)
	res.start = time.Now()
	if err := b.applyAll(ctx, ns, "shop", rel); err != nil {
		return res, err
	}
	at, err := obs.waitRouted(ctx, rel, 10*time.Minute)
	if err != nil {
		return res, fmt.Errorf("switchyard did not route all %d: %w", n, err)
	}
	res.routed = latest(at)
	for _, name := range rel {
		if t, ok := obs.availableAt(name); ok && t.After(res.lastAvailable) {
			res.lastAvailable = t
		}
	}
	// Let the last rebuilds settle before counting writes.
	time.Sleep(2 * time.Second)
	vs1, dr1, err := b.writes()
	res.vsWrites, res.drWrites = vs1-vs0, dr1-dr0
	return res, err
}

func latest(m map[string]time.Time) time.Time {
	var t time.Time
	for _, v := range m {
		if v.After(t) {
			t = v
		}
	}
	return t
}

// applyToRouted: from apply of a release whose pods go Ready at once to its
// route, with 1, 100 and 1,000 live releases, against the floor.
func (r *report) applyToRouted(ctx context.Context, b *bench, sizes []int, samples map[int]int) error {
	for _, size := range sizes {
		ns, obs, err := b.liveApp(ctx, size)
		if err != nil {
			return err
		}
		r.largest, r.largestN = ns, size+samples[size]
		var total, afterAvailable, floors, deployFloors, fullFloors []time.Duration
		var rebuild time.Duration
		for i := range samples[size] {
			// One CI apply at a time, as pipelines do: the write allowance
			// (--min-write-interval) is back to full between samples.
			time.Sleep(2 * time.Second)
			name := fmt.Sprintf("probe-%04d", i)
			f0, _ := b.scrape()
			start := time.Now()
			routedAt, err := b.applyRouted(ctx, obs, ns, "shop", name, branchSpec(name))
			if err != nil {
				obs.stop()
				return err
			}
			f1, _ := b.scrape()
			if r.verbose {
				fmt.Printf("    %s: %s\n", name, obs.trace(name, start))
			}
			total = append(total, routedAt.Sub(start))
			if avail, ok := obs.availableAt(name); ok {
				afterAvailable = append(afterAvailable, routedAt.Sub(avail))
			}
			rebuild += time.Duration((sum(f1, "switchyard_route_rebuild_duration_seconds", nil) - sum(f0, "switchyard_route_rebuild_duration_seconds", nil)) * 1e9)
			floor, err := b.floor(ctx, ns)
			if err != nil {
				obs.stop()
				return err
			}
			floors = append(floors, floor)
			df, err := b.deploymentFloor(ctx, ns, name, obs)
			if err != nil {
				obs.stop()
				return err
			}
			deployFloors = append(deployFloors, df)
			fullFloors = append(fullFloors, df+floor)
		}
		obs.stop()
		t50, t99 := quantiles(total)
		a50, a99 := quantiles(afterAvailable)
		f50, f99 := quantiles(floors)
		label := fmt.Sprintf("%d live releases", size)
		r.add("1 apply-to-routed", label+": apply → routed p50/p99 (pods included)", ms(t50)+" / "+ms(t99), "", "")
		r.add("1 apply-to-routed", label+": floor (apply of a VirtualService + DestinationRule of the app's size) p50/p99",
			ms(f50)+" / "+ms(f99), "", "")
		d50, d99 := quantiles(deployFloors)
		r.add("1 apply-to-routed", label+": a plain Deployment of the same pods, create → Available p50/p99 (the cluster, not Switchyard)",
			ms(d50)+" / "+ms(d99), "", "")
		g50, g99 := quantiles(fullFloors)
		r.add("1 apply-to-routed", label+": apply → routed as a ratio to the whole floor (that Deployment + the VirtualService and DestinationRule apply)",
			fmt.Sprintf("%s / %s = %.1f× / %.1f×", ms(t50), ms(t99), float64(t50)/float64(g50), float64(t99)/float64(g99)), "", "")
		r50, r99 := float64(a50)/float64(f50), float64(a99)/float64(f99)
		r.add("1 apply-to-routed", label+": Deployment Available → routed p50/p99, as a ratio to the floor",
			fmt.Sprintf("%s / %s = %.1f× / %.1f×", ms(a50), ms(a99), r50, r99), "p50 ≤ 1.5×, p99 ≤ 2.5×", verdict(r50 <= 1.5 && r99 <= 2.5))
		r.add("1 apply-to-routed", label+": share of apply → routed spent in the operator's rebuilds",
			fmt.Sprintf("%.0f%% (the rest: the Deployment becoming Available, the API server, watch delivery)", 100*float64(rebuild)/float64(sumD(total))), "", "")
	}
	return nil
}

// applyRouted applies one release as a pipeline does and returns when it
// was first routed (within 2 minutes).
func (b *bench) applyRouted(ctx context.Context, obs *observer, ns, app, name string, spec map[string]any) (time.Time, error) {
	if err := b.apply(ctx, ns, app, name, spec); err != nil {
		return time.Time{}, err
	}
	at, err := obs.waitRouted(ctx, []string{name}, 2*time.Minute)
	return at[name], err
}

// liveApp makes an app "shop" of size-1 live branch releases in a new
// namespace, observed, and waits until all are routed.
func (b *bench) liveApp(ctx context.Context, size int) (string, *observer, error) {
	ns, err := b.namespace(ctx)
	if err != nil {
		return "", nil, err
	}
	obs, err := b.observe(ctx, ns, "shop")
	if err != nil {
		return "", nil, err
	}
	existing := names("live", size-1)
	if err := b.applyAll(ctx, ns, "shop", existing); err != nil {
		obs.stop()
		return "", nil, err
	}
	if _, err := obs.waitRouted(ctx, existing, 10*time.Minute); err != nil {
		obs.stop()
		return "", nil, fmt.Errorf("set up %d live releases: %w", size, err)
	}
	return ns, obs, nil
}

func sumD(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// floor applies a copy of the app's VirtualService and DestinationRule under
// another name, changed as a rebuild changes them, and times both writes.
func (b *bench) floor(ctx context.Context, ns string) (time.Duration, error) {
	return b.floorOf(ctx, ns, "shop")
}

// floorOf is floor for the app named app.
func (b *bench) floorOf(ctx context.Context, ns, app string) (time.Duration, error) {
	vs := &networkingv1.VirtualService{}
	dr := &networkingv1.DestinationRule{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, vs); err != nil {
		return 0, err
	}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, dr); err != nil {
		return 0, err
	}
	mk := func(kind string, spec any, refs []metav1.OwnerReference) (*unstructured.Unstructured, error) {
		raw, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		var s map[string]any
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		// A changed route name, as each rebuild changes the object.
		s["exportTo"] = []any{"."}
		if kind == "VirtualService" && len(vs.Spec.Http) > 0 {
			s["http"].([]any)[0].(map[string]any)["name"] = fmt.Sprintf("floor-%d", time.Now().UnixNano())
		}
		var owners []any
		for _, o := range refs {
			owners = append(owners, map[string]any{"apiVersion": o.APIVersion, "kind": o.Kind, "name": o.Name, "uid": string(o.UID)})
		}
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": kind,
			"metadata": map[string]any{"name": "floor", "namespace": ns, "ownerReferences": owners}, "spec": s}}, nil
	}
	uvs, err := mk("VirtualService", &vs.Spec, vs.OwnerReferences)
	if err != nil {
		return 0, err
	}
	udr, err := mk("DestinationRule", &dr.Spec, dr.OwnerReferences)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for _, u := range []*unstructured.Unstructured{udr, uvs} {
		if err := b.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("floor"), client.ForceOwnership); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// deploymentFloor creates a plain Deployment (no AppRelease, not selected by
// the app's Service) with the pods of the release just measured, and times it
// from create to Available: what the cluster takes before any routing can.
func (b *bench) deploymentFloor(ctx context.Context, ns, release string, obs *observer) (time.Duration, error) {
	src := &appsv1.Deployment{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: release}, src); err != nil {
		return 0, err
	}
	name := "floor-" + release
	labels := map[string]string{"bench-floor": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: src.Spec.Replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: *src.Spec.Template.DeepCopy()},
	}
	d.Spec.Template.Labels = labels
	start := time.Now()
	if err := b.c.Create(ctx, d); err != nil {
		return 0, err
	}
	var took time.Duration
	err := wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		at, ok := obs.availableAt(name)
		took = at.Sub(start)
		return ok, nil
	})
	if err != nil {
		return 0, fmt.Errorf("plain Deployment %s never became Available: %w", name, err)
	}
	return took, b.c.Delete(ctx, d, client.PropagationPolicy(metav1.DeletePropagationBackground))
}

// burst: n releases applied by n concurrent clients.
func (r *report) burst(ctx context.Context, b *bench, n int) error {
	res, err := b.applyBurst(ctx, "burst", n)
	if err != nil {
		return err
	}
	gap := res.routed.Sub(res.lastAvailable)
	if r.verbose {
		fmt.Printf("    burst: applied at 0, last pod Available at %s, all routed at %s\n",
			res.lastAvailable.Sub(res.start).Round(time.Millisecond), res.routed.Sub(res.start).Round(time.Millisecond))
	}
	w := res.vsWrites + res.drWrites
	r.add("2 burst", fmt.Sprintf("%d releases by %d clients: last pod Available → all routed", n, n), ms(gap), "≤ 5 s", verdict(gap <= 5*time.Second))
	r.add("2 burst", "... VirtualService + DestinationRule writes", fmt.Sprintf("%.0f + %.0f = %.0f", res.vsWrites, res.drWrites, w), "≤ 20", verdict(w <= 20))
	return nil
}

// idle: every release of apply-to-routed's largest app live, the operator
// restarted (a full resync): the writes it makes, and its memory.
func (r *report) idle(ctx context.Context, b *bench) error {
	total := b.countReleases(ctx)
	rssBefore, _ := b.rss()
	writes, err := b.restartOperator(ctx, "")
	if err != nil {
		return err
	}
	rss, _ := b.rss()
	r.add("3 idle", fmt.Sprintf("%d live releases in one app (%d in the cluster), operator restarted: API writes during the full resync", r.largestN, total),
		fmt.Sprintf("%.0f", writes), "0", verdict(writes == 0))
	r.add("4 memory", fmt.Sprintf("operator RSS with %d AppReleases in the cluster (before restart / after resync)", total),
		fmt.Sprintf("%.0f MB / %.0f MB", float64(rssBefore)/1e6, float64(rss)/1e6), "", "")
	return nil
}

// restartOperator stops the operator and starts it again (with GOMEMLIMIT
// set when memLimit is not empty), and waits until its full resync is done;
// it returns the API writes the resync made.
func (b *bench) restartOperator(ctx context.Context, memLimit string) (float64, error) {
	b.op.Stop()
	if memLimit != "" {
		os.Setenv("GOMEMLIMIT", memLimit)
		defer os.Unsetenv("GOMEMLIMIT")
	}
	if err := b.startOperator(); err != nil {
		return 0, err
	}
	return b.waitQuiet(ctx)
}

// countReleases is the number of AppReleases in the cluster (-1 when the list fails).
func (b *bench) countReleases(ctx context.Context) int {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("delivery.switchyard.dev/v1alpha1")
	list.SetKind("AppReleaseList")
	if err := b.c.List(ctx, list); err != nil {
		return -1
	}
	return len(list.Items)
}

// waitQuiet waits until a (re)started operator has gone through every app
// and every release once and is quiet, and returns the API writes it made.
func (b *bench) waitQuiet(ctx context.Context) (float64, error) {
	var last float64 = -1
	_ = wait.PollUntilContextTimeout(ctx, 2*time.Second, 10*time.Minute, false, func(context.Context) (bool, error) {
		f, err := b.scrape()
		if err != nil {
			return false, nil
		}
		done := sum(f, "controller_runtime_reconcile_total", map[string]string{"controller": "app,apprelease"})
		quiet := done > 0 && done == last
		last = done
		return quiet, nil
	})
	f, err := b.scrape()
	if err != nil {
		return 0, err
	}
	return sum(f, "rest_client_requests_total", map[string]string{"method": "POST,PUT,PATCH,DELETE"}), nil
}

func (r *report) render(b *bench) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Benchmarks\n\n`make bench` on %s, %s. Kubernetes v1.37.2 (local cluster: etcd, kube-apiserver,\n", r.started.UTC().Format("2006-01-02 15:04 UTC"), machine())
	sb.WriteString("kube-controller-manager, kube-scheduler, kwok v0.8.0), Istio CRDs from istio.io/api v1.31.4.\n")
	sb.WriteString("Shared machines are noisy: each figure with a reference is a ratio measured side by side in the same run.\n")
	if r.quick {
		sb.WriteString("\n**Quick run (`-quick`): smaller sizes and fewer samples than the targets name.**\n")
	}
	if r.partial {
		sb.WriteString("\n**Partial run (`-only`): some figures were not measured.**\n")
	}
	sb.WriteString("\n| # | figure | value | target | verdict |\n|---|---|---|---|---|\n")
	for _, row := range r.rows {
		sb.WriteString(row + "\n")
	}
	fmt.Fprintf(&sb, "\nTook %s.\n", time.Since(r.started).Round(time.Second))
	return sb.String()
}

// scale: apps × perApp releases across namespaces of ten apps each, applied by
// 50 concurrent pipelines, every one routed; the operator's memory at about
// 1,000 and 10,000 AppReleases, and after a restart (the cache rebuilt from a
// full list) with the writes of that resync.
func (r *report) scale(ctx context.Context, b *bench, apps, perApp int) error {
	type appKey struct{ ns, app string }
	var keys []appKey
	for i := range apps {
		if i%10 == 0 {
			ns, err := b.namespace(ctx)
			if err != nil {
				return err
			}
			for j := range min(10, apps-i) {
				keys = append(keys, appKey{ns: ns, app: fmt.Sprintf("app-%02d", i+j)})
			}
		}
	}
	// routed counts the releases every app's VirtualService routes to (its
	// subsets: a branch has two rules, one at the gateway, one in the mesh).
	routed := func() int {
		n := 0
		for _, k := range keys {
			vs := &networkingv1.VirtualService{}
			if err := b.c.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: k.app}, vs); err == nil {
				n += len(routing.RoutedSubsets(&vs.Spec))
			}
		}
		return n
	}
	waitRouted := func(want int) (time.Duration, error) {
		start, last := time.Now(), time.Now()
		err := wait.PollUntilContextTimeout(ctx, 5*time.Second, 60*time.Minute, true, func(context.Context) (bool, error) {
			n := routed()
			if time.Since(last) > 30*time.Second {
				fmt.Printf("    %d of %d releases routed (%s)\n", n, want, time.Since(start).Round(time.Second))
				last = time.Now()
			}
			return n >= want, nil
		})
		return time.Since(start), err
	}
	apply := func(ks []appKey) error {
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		sem := make(chan struct{}, 50)
		for _, k := range ks {
			for j := range perApp {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					name := fmt.Sprintf("%s-feature-%03d", k.app, j)
					spec := map[string]any{"environment": "staging", "hosts": []any{"staging." + k.app + ".example.com"},
						"branch": fmt.Sprintf("feature-%03d", j), "image": "registry.example.com/" + k.app + ":" + name}
					if err := b.apply(ctx, k.ns, k.app, name, spec); err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	before := routed()
	first := keys[:min(10, len(keys))]
	start := time.Now()
	if err := apply(first); err != nil {
		return err
	}
	if _, err := waitRouted(before + len(first)*perApp); err != nil {
		return fmt.Errorf("route the first %d apps: %w", len(first), err)
	}
	if _, err := b.waitQuiet(ctx); err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	rss1k, _ := b.rss()
	n1k := b.countReleases(ctx)
	fmt.Printf("    %d AppReleases in the cluster: operator RSS %.0f MB\n", n1k, float64(rss1k)/1e6)
	if err := apply(keys[len(first):]); err != nil {
		return err
	}
	if _, err := waitRouted(before + len(keys)*perApp); err != nil {
		return fmt.Errorf("route %d apps: %w", len(keys), err)
	}
	allRouted := time.Since(start)
	// Every status written, every drain and event done: the operator is idle.
	if _, err := b.waitQuiet(ctx); err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	rss10k, _ := b.rss()
	b.saveHeap("heap-scale")
	n10k := b.countReleases(ctx)
	fmt.Printf("    %d AppReleases in the cluster: operator RSS %.0f MB\n", n10k, float64(rss10k)/1e6)

	writes, err := b.restartOperator(ctx, "")
	if err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	rssRestart, _ := b.rss()
	b.saveHeap("heap-scale-restarted") // after a forced garbage collection
	f, _ := b.scrape()
	live := sum(f, "go_memstats_heap_alloc_bytes", nil)
	target := 100e6
	judge := func(rss int64) string {
		if n10k < 10000 {
			return "not judged: fewer than 10,000 (-quick)"
		}
		return verdict(float64(rss) < target)
	}
	r.add("4 memory", fmt.Sprintf("operator RSS with %d AppReleases in the cluster (%d apps of %d releases applied by this step, all routed)", n1k, len(first), perApp),
		fmt.Sprintf("%.0f MB", float64(rss1k)/1e6), "", "")
	r.add("4 memory", fmt.Sprintf("operator RSS with %d AppReleases across %d+ apps (all routed; %s from the first apply)", n10k, len(keys), allRouted.Round(time.Second)),
		fmt.Sprintf("%.0f MB", float64(rss10k)/1e6), "< 100 MB at 10,000", judge(rss10k))
	r.add("4 memory", fmt.Sprintf("... the operator restarted on %d AppReleases, default Go runtime settings: RSS once its resync is done (live heap after a garbage collection)", n10k),
		fmt.Sprintf("%.0f MB (%.0f MB)", float64(rssRestart)/1e6, live/1e6), "< 100 MB at 10,000", judge(rssRestart))
	r.add("3 idle", fmt.Sprintf("%d AppReleases across %d+ apps, operator restarted: API writes during the full resync", n10k, len(keys)),
		fmt.Sprintf("%.0f", writes), "0", verdict(writes == 0))

	// The same, with Go's soft memory limit as the chart sets it from the
	// container's memory limit (here resources.limits.memory: 128Mi).
	if _, err := b.restartOperator(ctx, "128MiB"); err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	rssLimited, _ := b.rss()
	b.saveHeap("heap-scale-memlimit")
	f, _ = b.scrape()
	r.add("4 memory", fmt.Sprintf("... restarted on %d AppReleases with GOMEMLIMIT=128MiB (the chart sets it from resources.limits.memory): RSS (live heap)", n10k),
		fmt.Sprintf("%.0f MB (%.0f MB)", float64(rssLimited)/1e6, sum(f, "go_memstats_heap_alloc_bytes", nil)/1e6), "< 100 MB at 10,000", judge(rssLimited))
	return nil
}

// sequential: a pipeline that applies a branch release, waits until it is
// routed, deletes it and applies the next, with no pause, in an app of each
// size: Deployment Available → routed against the floor, p50/p90.
func (r *report) sequential(ctx context.Context, b *bench, sizes []int, samples int) error {
	for _, size := range sizes {
		ns, obs, err := b.liveApp(ctx, size)
		if err != nil {
			return err
		}
		var gaps, floors []time.Duration
		for i := range samples {
			name := fmt.Sprintf("seq-%04d", i)
			at, err := b.applyRouted(ctx, obs, ns, "shop", name, branchSpec(name))
			if err != nil {
				obs.stop()
				return err
			}
			if avail, ok := obs.availableAt(name); ok {
				gaps = append(gaps, at.Sub(avail))
			}
			if err := b.c.Delete(ctx, &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
				obs.stop()
				return err
			}
			// The floor is measured every fourth sample, so that the
			// pipeline's cycles follow one another as a pipeline's do.
			if i%4 == 3 {
				floor, err := b.floor(ctx, ns)
				if err != nil {
					obs.stop()
					return err
				}
				floors = append(floors, floor)
			}
		}
		obs.stop()
		a50, a90 := quantile(gaps, 0.5), quantile(gaps, 0.9)
		f50, f90 := quantile(floors, 0.5), quantile(floors, 0.9)
		r50, r90 := float64(a50)/float64(f50), float64(a90)/float64(f90)
		r.add("1b sequential", fmt.Sprintf("%d releases, apply → routed → delete → next, %d times: Deployment Available → routed p50/p90, as a ratio to the floor (%s / %s)",
			size, samples, ms(f50), ms(f90)), fmt.Sprintf("%s / %s = %.1f× / %.1f×", ms(a50), ms(a90), r50, r90),
			"p50 ≤ 1.5×, p90 ≤ 2.5×", verdict(r50 <= 1.5 && r90 <= 2.5))
	}
	return nil
}

// crowded: a one-release app's Deployment Available → routed on an idle
// cluster, then while another app of big live releases takes a burst.
func (r *report) crowded(ctx context.Context, b *bench, big, burst, samples int) error {
	quiet, err := b.namespace(ctx)
	if err != nil {
		return err
	}
	obs, err := b.observe(ctx, quiet, "quiet")
	if err != nil {
		return err
	}
	defer obs.stop()
	probe := func(prefix string, n int, pause time.Duration) ([]time.Duration, error) {
		var out []time.Duration
		for i := range n {
			time.Sleep(pause)
			name := fmt.Sprintf("%s-%04d", prefix, i)
			at, err := b.applyRouted(ctx, obs, quiet, "quiet", name, map[string]any{"environment": "production",
				"hosts": []any{"quiet.example.com"}, "image": "registry.example.com/quiet:" + name})
			if err != nil {
				return nil, err
			}
			if avail, ok := obs.availableAt(name); ok {
				out = append(out, at.Sub(avail))
				if r.verbose {
					fmt.Printf("      %s: available %s, routed %s later (%s)\n", name, avail.UTC().Format("15:04:05.000"),
						at.Sub(avail).Round(100*time.Microsecond), obs.trace(name, avail))
				}
			}
		}
		return out, nil
	}
	idle, err := probe("idle", samples, 2*time.Second)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}

	busy, err := b.namespace(ctx)
	if err != nil {
		return err
	}
	live := names("live", big)
	if err := b.applyAll(ctx, busy, "shop", live); err != nil {
		return err
	}
	bobs, err := b.observe(ctx, busy, "shop")
	if err != nil {
		return err
	}
	defer bobs.stop()
	if _, err := bobs.waitRouted(ctx, live, 15*time.Minute); err != nil {
		return fmt.Errorf("set up %d live releases: %w", big, err)
	}
	burstDone := make(chan error, 1)
	go func() {
		rel := names("burst", burst)
		if err := b.applyAll(ctx, busy, "shop", rel); err != nil {
			burstDone <- err
			return
		}
		_, err := bobs.waitRouted(ctx, rel, 10*time.Minute)
		burstDone <- err
	}()
	var crowded, loadedFloors []time.Duration
	for {
		got, err := probe(fmt.Sprintf("busy%04d", len(crowded)), 1, 100*time.Millisecond)
		if err != nil {
			return fmt.Errorf("crowded: %w", err)
		}
		crowded = append(crowded, got...)
		// The same cluster's floor under the same load: a plain apply of the
		// quiet app's VirtualService and DestinationRule.
		if f, err := b.floorOf(ctx, quiet, "quiet"); err == nil {
			loadedFloors = append(loadedFloors, f)
		}
		select {
		case err := <-burstDone:
			if err != nil {
				return fmt.Errorf("the burst: %w", err)
			}
			i50, i99 := quantiles(idle)
			c50, c99 := quantiles(crowded)
			r50, r99 := float64(c50)/float64(i50), float64(c99)/float64(i99)
			r.add("1c one app never delays another", fmt.Sprintf("a 1-release app, Deployment Available → routed p50/p99: idle cluster (%d samples)", len(idle)),
				ms(i50)+" / "+ms(i99), "", "")
			r.add("1c one app never delays another", fmt.Sprintf("... while an app of %d live releases takes a %d-release burst (%d samples), and the ratio to idle", big, burst, len(crowded)),
				fmt.Sprintf("%s / %s = %.1f× / %.1f×", ms(c50), ms(c99), r50, r99), "≤ 1.5×", verdict(r50 <= 1.5 && r99 <= 1.5))
			f50, f99 := quantiles(loadedFloors)
			r.add("1c one app never delays another", fmt.Sprintf("... the cluster's own floor under that load (a plain apply of the quiet app's VirtualService and DestinationRule, %d samples), and the quiet app's figure as a ratio to it", len(loadedFloors)),
				fmt.Sprintf("%s / %s; %.1f× / %.1f×", ms(f50), ms(f99), float64(c50)/float64(f50), float64(c99)/float64(f99)), "", "")
			return nil
		default:
		}
	}
}

// quantile is the q-quantile (0 < q ≤ 1) of ds, nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
