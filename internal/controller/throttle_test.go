package controller

import (
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestThrottleLetsLoneChangesOutAndCoalescesBursts(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	r := &AppReconciler{Config: Config{MinWriteInterval: 500 * time.Millisecond}, Now: func() time.Time { return now }}
	key := client.ObjectKey{Namespace: "shop", Name: "shop"}
	rebuild := func() time.Duration { return r.throttle(&appScope{key: key}) }

	for i := range writeBurst {
		if wait := rebuild(); wait != 0 {
			t.Fatalf("rebuild %d of a fresh app held back %s", i+1, wait)
		}
	}
	first := rebuild()
	if first <= 0 {
		t.Fatal("a burst beyond the allowance is not held back")
	}
	if first > r.Config.MinWriteInterval {
		t.Fatalf("a burst waits %s, more than the interval", first)
	}
	// Within one rebuild, the writes after the first are never held back.
	s := &appScope{key: key, writing: true}
	if wait := r.throttle(s); wait != 0 {
		t.Fatalf("a rebuild's second write held back %s", wait)
	}
	// A quiet spell refills the allowance.
	now = now.Add(time.Minute)
	for i := range writeBurst {
		if wait := rebuild(); wait != 0 {
			t.Fatalf("rebuild %d after a quiet minute held back %s", i+1, wait)
		}
	}
}
