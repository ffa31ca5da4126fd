package controller

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

func TestTruncateKeepsEventNotesWithinTheAPILimit(t *testing.T) {
	long := strings.Repeat("shop-staging-feature-0001, ", 200)
	if got := truncate(long); len(got) > 1024 {
		t.Fatalf("note of %d bytes; the API server takes 1024", len(got))
	}
	if got := truncate("short"); got != "short" {
		t.Fatalf("a short note changed: %q", got)
	}
}

// conditionsOf is "Type=Status/Reason" of each condition, in order.
func conditionsOf(st *v1alpha1.AppReleaseStatus) string {
	var out []string
	for _, c := range st.Conditions {
		out = append(out, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return strings.Join(out, " ")
}

func TestStatusSetters(t *testing.T) {
	routed := routing.Outcome{Phase: v1alpha1.PhaseLive, Weight: 100, Ready: true, Reason: v1alpha1.ReasonRouted}
	progressing := routing.Outcome{Phase: v1alpha1.PhaseProgressing, Reason: v1alpha1.ReasonProgressing}
	cases := []struct {
		name string
		o    routing.Outcome
		want string
	}{
		{"routed: Ready, neither Reconciling nor Stalled", routed, "Ready=True/Routed"},
		{"progressing: Reconciling, not Stalled", progressing, "Ready=False/Progressing Reconciling=True/Progressing"},
		{"a refused Deployment of a new release: Failed and Stalled",
			refusedOutcome(progressing, refusal{Reason: v1alpha1.ReasonDeploymentRefused, Message: "invalid"}),
			"Ready=False/DeploymentRefused Stalled=True/DeploymentRefused"},
		{"a Deployment of the same name that is not ours: Stalled",
			refusedOutcome(routing.Outcome{Phase: v1alpha1.PhasePending}, refusal{Reason: v1alpha1.ReasonDeploymentConflict}),
			"Ready=False/DeploymentConflict Stalled=True/DeploymentConflict"},
		{"a routed release whose new spec is refused keeps its traffic, Stalled",
			refusedOutcome(routed, refusal{Reason: v1alpha1.ReasonDeploymentRefused}),
			"Ready=False/DeploymentRefused Stalled=True/DeploymentRefused"},
		{"a refused write of the app's objects: Stalled",
			writeRefusedOutcome(v1alpha1.AppReleaseStatus{Phase: v1alpha1.PhaseLive, Weight: 90}, errors.New("too large")),
			"Ready=False/WriteRefused Stalled=True/WriteRefused"},
		{"a foreign object: Stalled", foreignOutcome(routed, client.ObjectKey{Namespace: "shop", Name: "shop"}, []string{"VirtualService"}),
			"Ready=False/ForeignObject Stalled=True/ForeignObject"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &v1alpha1.AppReleaseStatus{}
			// From a status that said something else, and from one that said
			// nothing: the setters add and remove conditions alike.
			setStatus(st, routing.Outcome{Phase: v1alpha1.PhasePending, Stalled: true, Reason: "Before"}, 1)
			setStatus(st, tc.o, 2)
			if got := conditionsOf(st); got != tc.want {
				t.Errorf("conditions %s, want %s", got, tc.want)
			}
			for _, c := range st.Conditions {
				if c.ObservedGeneration != 2 {
					t.Errorf("condition %s observed generation %d, want 2", c.Type, c.ObservedGeneration)
				}
			}
			if st.Phase != tc.o.Phase || st.Weight != tc.o.Weight || st.ObservedGeneration != 2 {
				t.Errorf("phase %s weight %d generation %d", st.Phase, st.Weight, st.ObservedGeneration)
			}
		})
	}
	t.Run("a refused write keeps the phase and weight the release is served with", func(t *testing.T) {
		o := writeRefusedOutcome(v1alpha1.AppReleaseStatus{Phase: v1alpha1.PhaseLive, Weight: 90, Subset: "v1"}, errors.New("request is too large"))
		if o.Phase != v1alpha1.PhaseLive || o.Weight != 90 || !strings.Contains(o.Message, "request is too large") {
			t.Errorf("got %+v", o)
		}
	})
	t.Run("a refused Deployment of a new release takes no weight", func(t *testing.T) {
		o := refusedOutcome(progressing, refusal{Reason: v1alpha1.ReasonDeploymentRefused, Message: "restartPolicy: Unsupported value"})
		if o.Phase != v1alpha1.PhaseFailed || o.Weight != 0 || o.Message != "restartPolicy: Unsupported value" {
			t.Errorf("got %+v", o)
		}
	})
}

func TestPersistent(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	cases := []struct {
		err  error
		want bool
	}{
		{apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "d", nil), true},
		{apierrors.NewForbidden(gr, "d", errors.New("exceeded quota")), true},
		{apierrors.NewRequestEntityTooLargeError("etcdserver: request is too large"), true},
		{apierrors.NewBadRequest("bad"), true},
		{apierrors.NewConflict(gr, "d", errors.New("changed")), false},
		{apierrors.NewServerTimeout(gr, "apply", 1), false},
		{apierrors.NewTooManyRequests("slow down", 1), false},
		{apierrors.NewInternalError(errors.New("etcd")), false},
		{errors.New("connection refused"), false},
	}
	for _, tc := range cases {
		if got := persistent(fmt.Errorf("apply: %w", tc.err)); got != tc.want {
			t.Errorf("persistent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
