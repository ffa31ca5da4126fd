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
	fp := uint64(1)
	rebuild := func() time.Duration { fp += 2; return r.throttle(&appScope{key: key, fp: fp}) }

	// A pipeline applying a release, waiting until it is routed, deleting it
	// and applying the next: each change finds the app settled, and goes out
	// at once, however many there are and however close together.
	for i := range 100 {
		now = now.Add(10 * time.Millisecond)
		if wait := rebuild(); wait != 0 {
			t.Fatalf("change %d of a sequence, each written and read back before the next, held back %s", i+1, wait)
		}
		r.settled(key)
	}
	for i := range writeBurst {
		if wait := rebuild(); wait != 0 {
			t.Fatalf("rebuild %d in a row held back %s", i+1, wait)
		}
	}
	first := rebuild()
	if first <= 0 {
		t.Fatal("changes beyond the allowance, none read back, are not held back")
	}
	if first > r.Config.MinWriteInterval {
		t.Fatalf("a burst waits %s, more than the interval", first)
	}
	// Within one rebuild, the writes after the first are never held back.
	s := &appScope{key: key, writing: true}
	if wait := r.throttle(s); wait != 0 {
		t.Fatalf("a rebuild's second write held back %s", wait)
	}
	// Once the app settles, the next change comes alone.
	r.settled(key)
	if wait := rebuild(); wait != 0 {
		t.Fatalf("a change after the app settled held back %s", wait)
	}
}

// TestThrottleShapesABurst plays a burst against the clock: a change every
// 100 ms for 20 s (200 pods becoming Available one by one, faster than the
// app's writes settle: each rebuild finds a new change), then a lone change.
func TestThrottleShapesABurst(t *testing.T) {
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	now := start
	r := &AppReconciler{Config: Config{MinWriteInterval: 500 * time.Millisecond, BurstMaxHold: 4 * time.Second},
		Now: func() time.Time { return now }}
	key := client.ObjectKey{Namespace: "shop", Name: "shop"}

	var (
		desired, written uint64
		retryAt          time.Time
		writes           int
		changedAt        = map[uint64]time.Time{}
		worst            time.Duration
		lastWrite        time.Time
	)
	// rebuild is one reconcile: it writes the desired state, or asks to be retried.
	rebuild := func() {
		wait := r.throttle(&appScope{key: key, fp: desired})
		if wait > 0 {
			retryAt = now.Add(wait)
			return
		}
		retryAt = time.Time{}
		if desired != written {
			writes++
			written, lastWrite = desired, now
			// Every change up to this one is now written.
			for fp, at := range changedAt {
				worst = max(worst, now.Sub(at))
				delete(changedAt, fp)
			}
		}
	}
	change := func() {
		desired++
		changedAt[desired] = now
		rebuild()
	}
	tick := 10 * time.Millisecond
	for ; now.Before(start.Add(20 * time.Second)); now = now.Add(tick) {
		if now.Sub(start)%(100*time.Millisecond) == 0 {
			change()
		} else if !retryAt.IsZero() && !now.Before(retryAt) {
			rebuild()
		}
	}
	streamEnd := now
	for ; now.Before(streamEnd.Add(5 * time.Second)); now = now.Add(tick) {
		if !retryAt.IsZero() && !now.Before(retryAt) {
			rebuild()
		}
	}
	if len(changedAt) > 0 {
		t.Fatalf("%d changes of the burst were never written", len(changedAt))
	}
	if limit := writeBurst + 20/4 + 1; writes > limit {
		t.Errorf("a 20 s burst of 200 changes took %d writes, want at most %d", writes, limit)
	}
	if worst > 4*time.Second+tick {
		t.Errorf("a change of the burst waited %s, more than --burst-max-hold", worst)
	}
	if end := lastWrite.Sub(streamEnd); end > burstEnd {
		t.Errorf("the burst's last change was written %s after the burst ended, want within %s", end, burstEnd)
	}

	t.Logf("200 changes over 20 s: %d writes, the longest wait %s", writes, worst)

	// Once the burst is over (the rebuild after its last write found
	// nothing to write), a lone change goes out at once.
	r.settled(key)
	now = now.Add(burstEnd)
	before := writes
	change()
	if writes != before+1 || !retryAt.IsZero() {
		t.Errorf("a lone change after the burst was held back (retry at %s)", retryAt.Sub(now))
	}
}
