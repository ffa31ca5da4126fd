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
	// Once the app settles, the next change comes alone, even in a burst.
	r.settled(key)
	if wait := rebuild(); wait != 0 {
		t.Fatalf("a change after the app settled held back %s", wait)
	}
}

// stream is what playStream saw: the writes, the longest a change waited to
// be written, when the last write was and when the changes stopped.
type stream struct {
	writes               int
	worst                time.Duration
	lastWrite, streamEnd time.Time
	r                    *AppReconciler
	now                  *time.Time
	rebuild, change      func()
	retrying             func() bool
}

// playStream plays n pods becoming Available one by one, one every every,
// against the throttle, in an app whose writes take writeTime (the changes
// that arrive during a write are seen by the rebuild after it; a rebuild that
// finds nothing to write settles the app), and 6 s more.
func playStream(t *testing.T, every, writeTime time.Duration, n int) *stream {
	t.Helper()
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	now := start
	r := &AppReconciler{Config: Config{MinWriteInterval: 500 * time.Millisecond, BurstMaxHold: 4 * time.Second},
		Now: func() time.Time { return now }}
	key := client.ObjectKey{Namespace: "shop", Name: "shop"}
	var (
		available        int // releases Available so far: the desired state
		written          int
		pending          bool // a rebuild is queued
		retryAt, busyTil time.Time
		changedAt        = map[int]time.Time{}
	)
	out := &stream{r: r, now: &now}
	decision := func() routing.Decision {
		d := routing.Decision{Outcomes: map[string]routing.Outcome{}}
		for i := range available {
			name := fmt.Sprintf("b%03d", i)
			d.Outcomes[name] = routing.Outcome{Phase: v1alpha1.PhaseLive, Weight: 100, Subset: name}
		}
		return d
	}
	// rebuild is one reconcile: it writes the desired state, or asks to be retried.
	out.rebuild = func() {
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
		out.writes++
		written, out.lastWrite, busyTil = available, now, now.Add(writeTime)
		// Every change up to this one is now written.
		for i, at := range changedAt {
			out.worst = max(out.worst, now.Sub(at))
			delete(changedAt, i)
		}
	}
	out.change = func() { changedAt[available] = now; available++ }
	out.retrying = func() bool { return !retryAt.IsZero() }
	tick := 10 * time.Millisecond
	out.streamEnd = start.Add(time.Duration(n) * every)
	for ; now.Before(out.streamEnd.Add(6 * time.Second)); now = now.Add(tick) {
		if now.Before(out.streamEnd) && now.Sub(start)%every == 0 {
			out.change()
			pending = true
		}
		if !retryAt.IsZero() && !now.Before(retryAt) {
			pending = true
		}
		if pending && !now.Before(busyTil) {
			out.rebuild()
		}
	}
	if len(changedAt) > 0 {
		t.Fatalf("%d changes of the stream were never written", len(changedAt))
	}
	return out
}

// TestThrottleShapesABurst: 200 pods becoming Available one every 50 ms, in
// an app whose writes take 150 ms (each rebuild finds 3 new releases, the
// app never settles), coalesce into a few writes; then a lone change goes
// out at once.
func TestThrottleShapesABurst(t *testing.T) {
	p := playStream(t, 50*time.Millisecond, 150*time.Millisecond, 200)
	if limit := writeBurst + 10/4 + 2; p.writes > limit {
		t.Errorf("a 10 s burst of 200 changes took %d writes, want at most %d", p.writes, limit)
	}
	if p.worst > 4*time.Second+150*time.Millisecond+10*time.Millisecond {
		t.Errorf("a change of the burst waited %s, more than --burst-max-hold", p.worst)
	}
	if end := p.lastWrite.Sub(p.streamEnd); end > burstEnd+10*time.Millisecond {
		t.Errorf("the burst's last change was written %s after the burst ended, want within %s", end, burstEnd)
	}
	t.Logf("200 changes over 10 s: %d writes, the longest wait %s", p.writes, p.worst)

	// Once the burst is over (the rebuild after its last write found
	// nothing to write), a lone change goes out at once.
	p.rebuild()
	*p.now = p.now.Add(burstEnd)
	before := p.writes
	p.change()
	p.rebuild()
	if p.writes != before+1 || p.retrying() {
		t.Errorf("a lone change after the burst was held back")
	}
}

// TestThrottleNeverHoldsAStreamOfSingleChanges: a pipeline working through
// an app whose writes take 100 ms, a change every 100 ms (each rebuild finds
// one or two new releases, the app seldom settles), is never held: each
// write carries what came during the one before, and no change waits longer
// than a write. (Pacing such a stream, as an earlier throttle did, measured
// 29 times the floor in make bench's sequential row.)
func TestThrottleNeverHoldsAStreamOfSingleChanges(t *testing.T) {
	p := playStream(t, 100*time.Millisecond, 100*time.Millisecond, 200)
	if limit := 100*time.Millisecond + 10*time.Millisecond; p.worst > limit {
		t.Errorf("a change waited %s, more than a write", p.worst)
	}
	t.Logf("200 single changes over 20 s: %d writes, the longest wait %s", p.writes, p.worst)
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
