// Package v1alpha1 contains the AppRelease API of Switchyard.
// +kubebuilder:object:generate=true
// +groupName=delivery.switchyard.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of Switchyard's API.
	GroupVersion = schema.GroupVersion{Group: "delivery.switchyard.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion} //nolint:staticcheck // kubebuilder's API scaffold; its replacement is not in this controller-runtime yet

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
