// Package recorder records Kubernetes events (events.k8s.io/v1) in memory
// bounded by constants, whatever the number of objects they regard.
//
// client-go's events.EventBroadcaster keeps every event it sent for 6
// minutes (its series cache is a map cleaned every 6 minutes) and starts a
// goroutine per event: after a burst over 10,000 AppReleases it held about
// 30 MB, more than the operator's cache of those releases. This Recorder
// keeps client-go's event names and fields, and its series: an event that
// repeats one sent in the last 6 minutes, equal but for its note (the same
// object at the same resource version, reason, action and type), counts in
// the first event's series. Unlike client-go, which patches a series' count
// once and then every 6 to 30 minutes, each repeat patches it at once
// (repeats are rare: the key holds the object's resource version). The queue
// and the series cache are bounded, and the cache remembers a key's digest,
// not the event.
package recorder

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// SeriesWindow is how long after an event a repeat of it counts in its
	// series rather than making a new Event (client-go's finishTime).
	SeriesWindow = 6 * time.Minute
	// DefaultQueue is how many events may wait to be written; more are
	// dropped (and logged) rather than held: events are advice, not state.
	DefaultQueue = 1024
	// DefaultSeries is how many series (distinct event keys of the last
	// SeriesWindow) are remembered, about 150 bytes each; past it the least
	// recently seen is forgotten and its next repeat makes a new Event.
	DefaultSeries = 4096
	// maxNoteBytes is events.k8s.io/v1's limit on a note.
	maxNoteBytes = 1024
	// writeTries bounds the attempts of one write, retryDelay (±50%) apart.
	writeTries = 3
	retryDelay = 500 * time.Millisecond
	// drainTimeout bounds the writing of queued events once stopped.
	drainTimeout = 2 * time.Second
)

// Recorder is an events.EventRecorder whose memory is bounded by its queue
// and series limits. It is a manager Runnable: events are written from
// Start until its context ends; those recorded before wait in the queue.
type Recorder struct {
	client     client.Client
	scheme     *runtime.Scheme
	controller string
	instance   string
	queue      chan *eventsv1.Event
	now        func() time.Time

	mu       sync.Mutex
	series   map[[32]byte]*list.Element // of *entry
	lru      list.List                  // most recently seen first
	maxSerie int
}

// entry is a remembered series: where its Event is and how often it was seen.
type entry struct {
	key       [32]byte
	namespace string
	name      string
	count     int32
	last      time.Time
}

var _ events.EventRecorder = (*Recorder)(nil)

// New returns a Recorder that writes events through c for the reporting
// controller name (the instance is name-hostname, as client-go's), with
// queue and series limits (DefaultQueue, DefaultSeries when zero).
func New(c client.Client, scheme *runtime.Scheme, name string, queue, series int) *Recorder {
	if queue <= 0 {
		queue = DefaultQueue
	}
	if series <= 0 {
		series = DefaultSeries
	}
	host, _ := os.Hostname()
	return &Recorder{client: c, scheme: scheme, controller: name, instance: name + "-" + host,
		queue: make(chan *eventsv1.Event, queue), now: time.Now, series: map[[32]byte]*list.Element{}, maxSerie: series}
}

// Eventf queues an event regarding an object (and optionally related to
// another), of type Normal or Warning, with a reason, an action and a note
// formatted from note and args. It never blocks: with the queue full the
// event is dropped and logged.
func (r *Recorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	log := ctrl.Log.WithName("events")
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		log.Error(err, "Cannot refer to the event's object; event dropped", "reason", reason)
		return
	}
	var rel *corev1.ObjectReference
	if related != nil {
		rel, _ = reference.GetReference(r.scheme, related)
	}
	if eventtype != corev1.EventTypeNormal && eventtype != corev1.EventTypeWarning {
		log.Error(nil, "Unsupported event type; event dropped", "type", eventtype, "reason", reason)
		return
	}
	msg := fmt.Sprintf(note, args...)
	if len(msg) > maxNoteBytes {
		// Cut at a character's start: a split one would be encoded as
		// replacement characters, longer than the limit.
		cut := maxNoteBytes - len("...")
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	now := r.now()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ns},
		EventTime:           metav1.MicroTime{Time: now},
		ReportingController: r.controller, ReportingInstance: r.instance,
		Action: action, Reason: reason, Type: eventtype, Note: msg,
		Regarding: *ref, Related: rel,
	}
	log.V(1).Info(msg, "type", eventtype, "object", ref, "reason", reason)
	select {
	case r.queue <- ev:
	default:
		log.V(1).Info("Event queue full; event dropped", "object", ref, "reason", reason)
	}
}

// Start writes queued events until ctx ends, then for at most
// drainTimeout those still queued (the controllers stop after the
// recorders, so their last events would otherwise be lost).
func (r *Recorder) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			defer cancel()
			for {
				select {
				case ev := <-r.queue:
					r.write(drain, ev)
				default:
					return nil
				}
				if drain.Err() != nil {
					return nil
				}
			}
		case ev := <-r.queue:
			r.write(ctx, ev)
		}
	}
}

// NeedLeaderElection is false: every replica may report what it does.
func (r *Recorder) NeedLeaderElection() bool { return false }

// write creates ev, or, when it repeats an event of the last SeriesWindow,
// patches that Event's series; a patch of an Event gone (expired by the API
// server's TTL) creates it anew with its series. A write that fails for the
// transport or a busy API server is tried up to writeTries times; one the
// API server refuses is logged and dropped, and its series forgotten.
func (r *Recorder) write(ctx context.Context, ev *eventsv1.Event) {
	log := ctrl.Log.WithName("events")
	key := keyOf(ev)
	if ns, name, count, ok := r.observe(key, ev); ok {
		series := &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.MicroTime{Time: ev.EventTime.Time}}
		patch, _ := json.Marshal(map[string]any{"series": series})
		target := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		err := retry(ctx, func() error { return r.client.Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)) })
		if err == nil {
			return
		}
		if !apierrors.IsNotFound(err) {
			log.Info("Event series not updated", "event", name, "error", err.Error())
			return
		}
		r.remember(key, ev, count)
		ev.Series = series
	}
	if err := retry(ctx, func() error { return r.client.Create(ctx, ev) }); err != nil {
		r.forget(key)
		log.Info("Event not written", "object", ev.Regarding.Name, "reason", ev.Reason, "error", err.Error())
	}
}

// retry calls write until it succeeds, fails for good (the API server
// refused it), writeTries have failed, or ctx ends.
func retry(ctx context.Context, write func() error) error {
	var err error
	for try := 1; ; try++ {
		err = write()
		if err == nil || try == writeTries || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait.Jitter(retryDelay, 0.5)):
		}
	}
}

// transient: the write may succeed if tried again (no answer, a timeout, a
// busy or failing API server), as client-go's event sink judges it.
func transient(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err)
}

// forget drops the series of key.
func (r *Recorder) forget(key [32]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.series[key]; ok {
		r.lru.Remove(el)
		delete(r.series, key)
	}
}

// observe counts ev in its series and returns the series' Event and count
// when ev repeats one seen within SeriesWindow; otherwise it remembers ev as
// a new series.
func (r *Recorder) observe(key [32]byte, ev *eventsv1.Event) (string, string, int32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.series[key]; ok {
		e := el.Value.(*entry)
		if ev.EventTime.Sub(e.last) <= SeriesWindow {
			e.count++
			e.last = ev.EventTime.Time
			r.lru.MoveToFront(el)
			return e.namespace, e.name, e.count, true
		}
	}
	r.rememberLocked(key, ev)
	return "", "", 0, false
}

// remember makes ev the Event of key's series, seen count times.
func (r *Recorder) remember(key [32]byte, ev *eventsv1.Event, count int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rememberLocked(key, ev)
	r.series[key].Value.(*entry).count = count
}

// rememberLocked starts a new series at ev, seen once.
func (r *Recorder) rememberLocked(key [32]byte, ev *eventsv1.Event) {
	if el, ok := r.series[key]; ok {
		r.lru.Remove(el)
	}
	r.series[key] = r.lru.PushFront(&entry{key: key, namespace: ev.Namespace, name: ev.Name, count: 1, last: ev.EventTime.Time})
	for len(r.series) > r.maxSerie {
		oldest := r.lru.Back()
		r.lru.Remove(oldest)
		delete(r.series, oldest.Value.(*entry).key)
	}
}

// Series returns how many series the Recorder remembers (at most its limit).
func (r *Recorder) Series() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.series)
}

// keyOf is the digest of what makes events isomorphic in client-go (all
// but the note and times): type, action, reason, reporter, regarding and
// related objects.
func keyOf(ev *eventsv1.Event) [32]byte {
	h := sha256.New()
	ref := func(o corev1.ObjectReference) {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00", o.Kind, o.Namespace, o.Name, o.UID, o.APIVersion, o.ResourceVersion, o.FieldPath)
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00", ev.Type, ev.Action, ev.Reason, ev.ReportingController, ev.ReportingInstance)
	ref(ev.Regarding)
	if ev.Related != nil {
		ref(*ev.Related)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}
