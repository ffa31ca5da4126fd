package controller

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
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
		spec := routing.MakeVirtualService(ns, app, d, opts)
		vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns,
			Labels: managedLabels(app), OwnerReferences: ownerReferences(d)}}
		proto.Merge(&vs.Spec, spec)
		b, err := json.Marshal(vs)
		if err != nil {
			t.Fatal(err)
		}
		return len(b), d
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
