package recorder_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/switchyard-dev/switchyard/internal/recorder"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// k8s is a client of a real kube-apiserver started for this package.
var k8s client.Client

func TestMain(m *testing.M) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = testenv.ControlPlaneDir()
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		panic("the control plane is not built: run 'make test' or hack/build-controlplane.sh")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		panic(err)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// subject makes a ConfigMap for events to regard in a fresh namespace.
func subject(t *testing.T, ctx context.Context, name string) *corev1.ConfigMap {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "events-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}}
	if err := k8s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

// eventsOf waits until the namespace holds want Events and returns them.
func eventsOf(t *testing.T, ctx context.Context, ns string, want int) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return len(list.Items) >= want, nil
	})
	if err != nil {
		t.Fatalf("want %d events in %s, have %d: %v", want, ns, len(list.Items), err)
	}
	return list.Items
}

// start runs r until the test ends.
func start(t *testing.T, r *recorder.Recorder) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = r.Start(ctx) }()
	return ctx
}

func TestWritesClientGosEventAndCountsARepeatInItsSeries(t *testing.T) {
	r := recorder.New(k8s, clientgoscheme.Scheme, "switchyard-test", 0, 0)
	ctx := start(t, r)
	cm := subject(t, ctx, "shop-v1")

	r.Eventf(cm, nil, corev1.EventTypeNormal, "Routed", "Route", "routed at %d%%", 100)
	first := eventsOf(t, ctx, cm.Namespace, 1)[0]
	if first.Regarding.Name != "shop-v1" || first.Regarding.Kind != "ConfigMap" || first.Reason != "Routed" ||
		first.Action != "Route" || first.Note != "routed at 100%" || first.ReportingController != "switchyard-test" ||
		first.Type != corev1.EventTypeNormal || first.Series != nil {
		t.Fatalf("event: %+v", first)
	}

	// The same again (its note aside) is the first Event's series; another
	// reason is an Event of its own.
	r.Eventf(cm, nil, corev1.EventTypeNormal, "Routed", "Route", "routed again")
	r.Eventf(cm, nil, corev1.EventTypeWarning, "Stalled", "Route", "stalled")
	all := eventsOf(t, ctx, cm.Namespace, 2)
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		var ev eventsv1.Event
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&first), &ev); err != nil {
			return false, err
		}
		return ev.Series != nil && ev.Series.Count == 2, nil
	})
	if err != nil {
		t.Fatalf("the repeat did not count in the first event's series: %v", err)
	}
	if len(all) != 2 {
		t.Fatalf("want 2 Events (Routed with a series, Stalled), have %d", len(all))
	}
}

func TestRemembersAtMostItsLimitOfSeries(t *testing.T) {
	r := recorder.New(k8s, clientgoscheme.Scheme, "switchyard-test", 0, 2)
	ctx := start(t, r)
	cm := subject(t, ctx, "shop-v2")
	for _, reason := range []string{"A", "B", "C"} {
		r.Eventf(cm, nil, corev1.EventTypeNormal, reason, "Route", "%s", reason)
	}
	eventsOf(t, ctx, cm.Namespace, 3)
	if n := r.Series(); n != 2 {
		t.Fatalf("remembers %d series, limit 2", n)
	}
	// A, the least recently seen, is forgotten: its repeat is a new Event.
	r.Eventf(cm, nil, corev1.EventTypeNormal, "A", "Route", "A again")
	all := eventsOf(t, ctx, cm.Namespace, 4)
	for _, ev := range all {
		if ev.Series != nil {
			t.Fatalf("a forgotten series was patched: %+v", ev)
		}
	}
}

func TestAFullQueueDropsRatherThanBlocks(t *testing.T) {
	r := recorder.New(k8s, clientgoscheme.Scheme, "switchyard-test", 1, 0)
	ctx := context.Background()
	cm := subject(t, ctx, "shop-v3")
	done := make(chan struct{})
	go func() {
		// Not started: the second and third wait for no one.
		for _, reason := range []string{"A", "B", "C"} {
			r.Eventf(cm, nil, corev1.EventTypeNormal, reason, "Route", "%s", reason)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Eventf blocked on a full queue")
	}
	// Started, it writes what the queue held, then a marker: had B or C
	// been queued, they would come before it (the queue is first in, first out).
	start(t, r)
	eventsOf(t, ctx, cm.Namespace, 1)
	r.Eventf(cm, nil, corev1.EventTypeNormal, "D", "Route", "marker")
	var reasons []string
	for _, ev := range eventsOf(t, ctx, cm.Namespace, 2) {
		reasons = append(reasons, ev.Reason)
	}
	slices.Sort(reasons)
	if !slices.Equal(reasons, []string{"A", "D"}) {
		t.Fatalf("events written: %v, want the one queued (A) and the marker (D)", reasons)
	}
}

func TestALongNoteIsCutToALegalOne(t *testing.T) {
	r := recorder.New(k8s, clientgoscheme.Scheme, "switchyard-test", 0, 0)
	ctx := start(t, r)
	cm := subject(t, ctx, "shop-v4")
	// Two-byte characters: a cut at an odd byte (the limit less "...")
	// splits one, which JSON would encode longer than the limit.
	r.Eventf(cm, nil, corev1.EventTypeNormal, "Long", "Route", "%s", strings.Repeat("é", 600))
	ev := eventsOf(t, ctx, cm.Namespace, 1)[0]
	if len(ev.Note) > 1024 || !utf8.ValidString(ev.Note) || !strings.HasSuffix(ev.Note, "é...") {
		t.Fatalf("note of %d bytes, valid UTF-8 %v: %q", len(ev.Note), utf8.ValidString(ev.Note), ev.Note[len(ev.Note)-8:])
	}
}
