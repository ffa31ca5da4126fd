package controller

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

func TestThrottleLetsLoneChangesOutAndCoalescesBursts(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	r := &AppReconciler{Config: Config{MinWriteInterval: 500 * time.Millisecond}, Now: func() time.Time { return now }}
	key := client.ObjectKey{Namespace: "shop", Name: "shop"}
	fp := uint64(1)
	// Each change routes step more releases.
	step, releases := 1, 0
	rebuild := func() time.Duration {
		fp += 2
		releases += step
		d := routing.Decision{Outcomes: map[string]routing.Outcome{}}
		for i := range releases {
			d.Outcomes[fmt.Sprint(i)] = routing.Outcome{Phase: v1alpha1.PhaseLive, Weight: 100, Subset: fmt.Sprint(i)}
		}
		return r.throttle(&appScope{key: key, fp: fp, decision: d})
	}

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
	// A pipeline's steps that come before the app settled go out at once too.
	for i := range 3 * writeBurst {
		if wait := rebuild(); wait != 0 {
			t.Fatalf("step %d of a pipeline, the app not settled, held back %s", i+1, wait)
		}
	}
	// Changes of several releases each, the app never settling: a burst.
	step = pipelineStep + 1
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

// TestThrottleShapesABurst plays a burst against the clock: 200 pods
// becoming Available one by one, one every 50 ms for 10 s, in an app whose
// writes take 150 ms (the changes that arrive during a write are seen by the
// rebuild after it, and the app never settles); then a lone change.
func TestThrottleShapesABurst(t *testing.T) {
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	now := start
	r := &AppReconciler{Config: Config{MinWriteInterval: 500 * time.Millisecond, BurstMaxHold: 4 * time.Second},
		Now: func() time.Time { return now }}
	key := client.ObjectKey{Namespace: "shop", Name: "shop"}
	const writeTime = 150 * time.Millisecond

	var (
		available        int // releases Available so far: the desired state
		written          int
		pending          bool // a rebuild is queued
		retryAt, busyTil time.Time
		writes           int
		changedAt        = map[int]time.Time{}
		worst            time.Duration
		lastWrite        time.Time
	)
	decision := func() routing.Decision {
		d := routing.Decision{Outcomes: map[string]routing.Outcome{}}
		for i := range available {
			name := fmt.Sprintf("b%03d", i)
			d.Outcomes[name] = routing.Outcome{Phase: v1alpha1.PhaseLive, Weight: 100, Subset: name}
		}
		return d
	}
	// rebuild is one reconcile: it writes the desired state, or asks to be retried.
	rebuild := func() {
		pending = false
		if available == written {
			r.settled(key)
			return
		}
		wait := r.throttle(&appScope{key: key, fp: uint64(2*available + 1), decision: decision()})
		if wait > 0 {
			retryAt = now.Add(wait)
			return
		}
		retryAt = time.Time{}
		writes++
		written, lastWrite, busyTil = available, now, now.Add(writeTime)
		// Every change up to this one is now written.
		for i, at := range changedAt {
			worst = max(worst, now.Sub(at))
			delete(changedAt, i)
		}
	}
	tick := 10 * time.Millisecond
	streamEnd := start.Add(10 * time.Second)
	for ; now.Before(streamEnd.Add(6 * time.Second)); now = now.Add(tick) {
		if now.Before(streamEnd) && now.Sub(start)%(50*time.Millisecond) == 0 {
			changedAt[available] = now
			available++
			pending = true
		}
		if !retryAt.IsZero() && !now.Before(retryAt) {
			pending = true
		}
		if pending && !now.Before(busyTil) {
			rebuild()
		}
	}
	if len(changedAt) > 0 {
		t.Fatalf("%d changes of the burst were never written", len(changedAt))
	}
	if limit := writeBurst + 10/4 + 2; writes > limit {
		t.Errorf("a 10 s burst of 200 changes took %d writes, want at most %d", writes, limit)
	}
	if worst > 4*time.Second+writeTime+tick {
		t.Errorf("a change of the burst waited %s, more than --burst-max-hold", worst)
	}
	if end := lastWrite.Sub(streamEnd); end > burstEnd+tick {
		t.Errorf("the burst's last change was written %s after the burst ended, want within %s", end, burstEnd)
	}
	t.Logf("200 changes over 10 s: %d writes, the longest wait %s", writes, worst)

	// Once the burst is over (the rebuild after its last write found
	// nothing to write), a lone change goes out at once.
	rebuild()
	now = now.Add(burstEnd)
	before := writes
	available++
	rebuild()
	if writes != before+1 || !retryAt.IsZero() {
		t.Errorf("a lone change after the burst was held back (retry at %s)", retryAt.Sub(now))
	}
}

func TestChangedReleasesCountsAPipelinesStepAsOne(t *testing.T) {
	live := func(s string) releaseRouting {
		return releaseRouting{phase: v1alpha1.PhaseLive, weight: 100, subset: s}
	}
	standby := func(s string) releaseRouting { return releaseRouting{phase: v1alpha1.PhaseStandby, subset: s} }
	pending := func(s string) releaseRouting { return releaseRouting{phase: v1alpha1.PhaseProgressing, subset: s} }
	before := map[string]releaseRouting{"v1": {phase: v1alpha1.PhaseStandby, subset: "v1"}, "v2": live("v2"), "b1": live("b1"), "b2": live("b2"), "b3": live("b3")}
	for _, tc := range []struct {
		name   string
		change func(map[string]releaseRouting)
		want   int
	}{
		{"a new stable promoted: its predecessors move down the line", func(m map[string]releaseRouting) {
			m["v3"], m["v2"], m["v1"] = live("v3"), standby("v2"), releaseRouting{phase: v1alpha1.PhaseSuperseded}
		}, 1},
		{"a branch deleted and the next applied", func(m map[string]releaseRouting) {
			m["b1"] = releaseRouting{phase: v1alpha1.PhaseRetiring, subset: "b1"}
			m["b4"] = pending("b4")
		}, 2},
		{"a branch gone for good", func(m map[string]releaseRouting) { delete(m, "b1") }, 1},
		{"three branches' pods fail at once", func(m map[string]releaseRouting) {
			m["b1"], m["b2"], m["b3"] = pending("b1"), pending("b2"), pending("b3")
		}, 3},
		{"a canary's weight", func(m map[string]releaseRouting) {
			m["b1"] = releaseRouting{phase: v1alpha1.PhaseLive, weight: 10, subset: "b1"}
		}, 1},
	} {
		after := maps.Clone(before)
		tc.change(after)
		if got := changedReleases(before, after); got != tc.want {
			t.Errorf("%s: %d changed, want %d", tc.name, got, tc.want)
		}
	}
}
