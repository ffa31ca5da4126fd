package main

import (
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// The manager's scheme holds every kind the operator reads, writes, watches
// or records events about through the manager's client and cache (the
// envtest suite builds its manager with client-go's whole scheme, so only
// this test and e2e exercise this one).
func TestSchemeHoldsTheKindsTheOperatorUses(t *testing.T) {
	s := newScheme()
	for _, obj := range []runtime.Object{
		&corev1.Namespace{}, &corev1.NamespaceList{}, &corev1.Service{}, &corev1.ServiceList{},
		&appsv1.Deployment{}, &appsv1.DeploymentList{}, &eventsv1.Event{}, &eventsv1.EventList{},
		&networkingv1.VirtualService{}, &networkingv1.VirtualServiceList{},
		&networkingv1.DestinationRule{}, &networkingv1.DestinationRuleList{},
		&v1alpha1.AppRelease{}, &v1alpha1.AppReleaseList{},
	} {
		if _, _, err := s.ObjectKinds(obj); err != nil {
			t.Errorf("%T: %v", obj, err)
		}
	}
}
