package controller

import (
	"errors"
	"net/http"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// refusal is why a release's Deployment could not be written, for the
// generation of the release it was tried for.
type refusal struct {
	Generation int64
	// Reason is one of v1alpha1.ReasonDeploymentRefused, ReasonDeploymentConflict
	// and ReasonInvalidTemplate; Message carries the API server's words.
	Reason, Message string
}

// refusals carries what the release controller could not write to the app
// controller, the single writer of statuses, which reports it as Stalled. It
// is memory, not state: after a restart the release controller tries again
// and finds the same refusal.
type refusals struct {
	mu sync.Mutex
	m  map[types.NamespacedName]refusal
	// changed tells the app controller that a release's refusal changed.
	changed chan event.GenericEvent
}

// newRefusals makes an empty set; a nil *refusals records and finds nothing.
func newRefusals() *refusals {
	return &refusals{m: map[types.NamespacedName]refusal{}, changed: make(chan event.GenericEvent, 1024)}
}

// set records a refusal of rel (nil: none), and tells the app controller when it changed.
func (f *refusals) set(rel *v1alpha1.AppRelease, why *refusal) {
	if f == nil {
		return
	}
	key := types.NamespacedName{Namespace: rel.Namespace, Name: rel.Name}
	f.mu.Lock()
	prev, had := f.m[key]
	switch {
	case why == nil && !had:
		f.mu.Unlock()
		return
	case why == nil:
		delete(f.m, key)
	case had && prev == *why:
		f.mu.Unlock()
		return
	default:
		f.m[key] = *why
	}
	f.mu.Unlock()
	select {
	case f.changed <- event.GenericEvent{Object: rel.DeepCopy()}:
	default:
		// The app controller is far behind; it rebuilds on the release's next change.
	}
}

// get is the refusal of rel's current generation, if any.
func (f *refusals) get(rel *v1alpha1.AppRelease) (refusal, bool) {
	if f == nil {
		return refusal{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	why, ok := f.m[types.NamespacedName{Namespace: rel.Namespace, Name: rel.Name}]
	return why, ok && why.Generation == rel.Generation
}

// forget drops what is known of a release that is gone.
func (f *refusals) forget(key types.NamespacedName) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, key)
}

// persistent tells a refusal that retrying the same write will not cure (an
// invalid object, a denial by RBAC, a quota or an admission policy, a request
// too large) from a passing fault (a conflict, a timeout, a restarting API
// server), which is retried quietly.
func persistent(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	switch status.Status().Code {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusNotAcceptable, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}
