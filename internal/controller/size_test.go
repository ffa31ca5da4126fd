package controller

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// etcdRequestLimit is etcd's default --max-request-bytes.
const etcdRequestLimit = 3 << 19

// TestLargestInputStaysUnderEtcdsLimit: with the largest input the CRD
// accepts (an app and namespace of 63 characters; environments of 16 hosts
// of 253 characters each; 63-character names, branches and environments;
// a thousand branches), the VirtualService the app controller would write,
// owner references included, stays under etcd's request limit with the
// default budgets, and the newest branches wait, saying why. Without the
// byte budget (--max-object-bytes=0) the same input would not.
func TestLargestInputStaysUnderEtcdsLimit(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	hostsOf := func(env string) []string {
		var hs []string
		for i := range 16 {
			label := long(fmt.Sprintf("%s%02d", env[:1], i), 63)
			hs = append(hs, label+"."+long("b", 63)+"."+long("c", 63)+"."+long("d", 61)) // 253 characters
		}
		return hs
	}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var rs []routing.Release
	for e, env := range []string{long("production", 63)[:63], long("staging", 63)} {
		for i := range 500 {
			r := routing.Release{Name: long(fmt.Sprintf("r%d-%04d-", e, i), 63), UID: types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", e*1000+i)),
				Created: t0.Add(time.Duration(i) * time.Second), Environment: env, Hosts: hostsOf(env),
				HasDeployment: true, Available: true, Accepted: true, WasRouted: true}
			if i > 0 {
				r.Branch = long(fmt.Sprintf("b%04d-", i), 63)
			}
			rs = append(rs, r)
		}
	}
	app, ns := long("a", 63), long("n", 63)
	size := func(opts routing.Options) (int, routing.Decision) {
		d := routing.Decide(rs, opts)
		vs, dr, svc := objectSizes(t, ns, app, d, opts)
		if (opts.MaxBytes > 0 && dr > opts.MaxBytes) || svc > dr {
			t.Errorf("the DestinationRule (%d bytes) is over the budget, or the Service (%d) larger than it", dr, svc)
		}
		return vs, d
	}
	opts := routing.Options{BranchHeader: "x-branch", BaggageKey: "x-branch", Gateway: "istio-system/ingressgateway",
		MeshEnvironment: long("production", 63)[:63], KeepPrevious: 1, MaxRoutes: 1000, MaxBytes: 1 << 20, App: app, Namespace: ns}
	n, d := size(opts)
	waiting := 0
	for _, o := range d.Outcomes {
		if o.Reason == v1alpha1.ReasonRouteBudgetExceeded {
			waiting++
			if !strings.Contains(o.Message, "--max-object-bytes") {
				t.Errorf("a waiting branch says %q", o.Message)
			}
		}
	}
	t.Logf("with the budgets: %d bytes (%d routes), %d branches waiting", n, len(d.Routes), waiting)
	if n >= etcdRequestLimit-(64<<10) {
		t.Errorf("the VirtualService is %d bytes: within 64 KiB of etcd's %d (managedFields and metadata need the room)", n, etcdRequestLimit)
	}
	if waiting == 0 {
		t.Error("no branch waits: the input is not large enough to test the budget")
	}
	opts.MaxBytes = 0
	if n, _ := size(opts); n < etcdRequestLimit {
		t.Errorf("without the byte budget the VirtualService is %d bytes, under etcd's limit: the input is not the largest", n)
	}
}

// objectSizes are the JSON sizes of the VirtualService, DestinationRule and
// Service the app controller would write for a decision, owner references
// included.
func objectSizes(t *testing.T, ns, app string, d routing.Decision, opts routing.Options) (vs, dr, svc int) {
	t.Helper()
	size := func(o any) int {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	meta := metav1.ObjectMeta{Name: app, Namespace: ns, Labels: managedLabels(app), OwnerReferences: ownerReferences(d)}
	spec := routing.MakeVirtualService(ns, app, d, opts)
	v := &networkingv1.VirtualService{ObjectMeta: *meta.DeepCopy()}
	v.OwnerReferences = routedOwners(meta.OwnerReferences, spec, d)
	if spec != nil {
		proto.Merge(&v.Spec, spec)
	}
	r := &networkingv1.DestinationRule{ObjectMeta: meta}
	proto.Merge(&r.Spec, routing.MakeDestinationRule(ns, app, d))
	s := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Selector: map[string]string{PodLabelApp: app, LabelManagedBy: ManagedByValue},
		Ports: []corev1.ServicePort{{Name: portName, Port: routing.ServicePort, Protocol: corev1.ProtocolTCP}}}}
	return size(v), size(r), size(s)
}

// TestSubsetsStayUnderTheByteBudget: releases that no route names (builds
// newer than the stable one whose pods are not up yet, branches waiting for
// room in the VirtualService) each add a subset and an owner reference; with
// thousands of them, the DestinationRule and the Service stay within
// --max-object-bytes, the newest waiting without a subset, saying why, and
// every routed release keeps its subset. Without the budget the
// DestinationRule would pass etcd's limit.
func TestSubsetsStayUnderTheByteBudget(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var rs []routing.Release
	for i := range 5000 {
		r := routing.Release{Name: long(fmt.Sprintf("r-%04d-", i), 63), UID: types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", i)),
			Created: t0.Add(time.Duration(i) * time.Second), Environment: "production", Hosts: []string{"shop.example.com"},
			HasDeployment: true, Accepted: true, Available: i == 0, WasRouted: i == 0}
		if i%2 == 1 {
			r.Branch = long(fmt.Sprintf("b%04d-", i), 63)
			r.Available = i < 200
		}
		rs = append(rs, r)
	}
	// The rollback target: the previous stable, never routed now, created
	// before every other release.
	rs = append(rs, routing.Release{Name: "shop-previous", UID: "00000000-0000-0000-0000-999999999999", Created: t0.Add(-time.Hour),
		Environment: "production", Hosts: []string{"shop.example.com"}, HasDeployment: true, Accepted: true, Available: true,
		WasRouted: true})
	app, ns := long("a", 63), long("n", 63)
	opts := routing.Options{BranchHeader: "x-branch", BaggageKey: "x-branch", Gateway: "istio-system/ingressgateway",
		MeshEnvironment: "production", KeepPrevious: 1, MaxRoutes: 1000, MaxBytes: 1 << 20, App: app, Namespace: ns}
	d := routing.Decide(rs, opts)
	if o := d.Outcomes["shop-previous"]; o.Phase != v1alpha1.PhaseStandby || o.Subset == "" {
		t.Errorf("the rollback target is %s with subset %q, want Standby with its subset", o.Phase, o.Subset)
	}
	vs, dr, svc := objectSizes(t, ns, app, d, opts)
	t.Logf("with the budget: VirtualService %d bytes, DestinationRule %d (%d subsets), Service %d", vs, dr, len(d.Subsets), svc)
	for _, n := range []int{vs, dr, svc} {
		if n > opts.MaxBytes+(64<<10) {
			t.Errorf("an object of %d bytes, over the budget of %d and its margin", n, opts.MaxBytes)
		}
	}
	subsets := map[string]bool{}
	for _, s := range d.Subsets {
		subsets[s.Release] = true
	}
	routed := 0
	for _, r := range d.Routes {
		for _, dst := range r.Destinations {
			routed++
			if !subsets[dst.Release] {
				t.Errorf("route %s names release %s, which has no subset", r.Name, dst.Release)
			}
		}
	}
	waiting := 0
	for name, o := range d.Outcomes {
		if o.Reason == v1alpha1.ReasonRouteBudgetExceeded {
			waiting++
			if strings.Contains(o.Message, "DestinationRule") && (subsets[name] || o.Subset != "") {
				t.Errorf("release %s waits for room in the DestinationRule but has a subset", name)
			}
		}
	}
	if routed < 200 || waiting == 0 {
		t.Errorf("%d destinations routed, %d releases waiting: the input does not test the budget", routed, waiting)
	}
	opts.MaxBytes = 0
	if _, dr, _ := objectSizes(t, ns, app, routing.Decide(rs, opts), opts); dr < etcdRequestLimit {
		t.Errorf("without the byte budget the DestinationRule is %d bytes, under etcd's limit: the input is not large enough", dr)
	}
}
