package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

func TestSlimDeploymentKeepsWhatTheControllersRead(t *testing.T) {
	d := MakeDeployment(&v1alpha1.AppRelease{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: "shop", UID: "uid-1"},
		Spec:       v1alpha1.AppReleaseSpec{App: "shop", Environment: "production", Image: "registry.example.com/shop:v1"},
	})
	d.Generation = 3
	d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "switchyard"}}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	want := d.DeepCopy()
	out, err := slimDeployment(d)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*appsv1.Deployment)
	if len(slim.Spec.Template.Spec.Containers) != 0 || slim.Spec.Selector != nil || slim.ManagedFields != nil {
		t.Errorf("the cached Deployment keeps its template, selector or managed fields")
	}
	if !equality.Semantic.DeepEqual(slim.Status, want.Status) || *slim.Spec.Replicas != *want.Spec.Replicas ||
		slim.Annotations[annotationSpecHash] != want.Annotations[annotationSpecHash] ||
		!equality.Semantic.DeepEqual(slim.OwnerReferences, want.OwnerReferences) || slim.Generation != 3 {
		t.Errorf("the cached Deployment lost what the controllers read: %+v", slim)
	}
	if !rolledOut(slim, &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: "shop-v1", Namespace: "shop", UID: "uid-1"},
		Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: "production", Image: "registry.example.com/shop:v1"}}) {
		t.Errorf("a slim copy of a rolled-out Deployment does not read as rolled out")
	}
}
