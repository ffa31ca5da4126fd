package istio

import (
	"errors"
	"fmt"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/validation"
)

// Validate runs Istio's own validation (what istiod and istioctl apply) on a
// VirtualService and a DestinationRule spec; nil specs are skipped.
func Validate(namespace, name string, vs *networking.VirtualService, dr *networking.DestinationRule) error {
	var errs []error
	if vs != nil {
		cfg := config.Config{Meta: config.Meta{GroupVersionKind: gvk.VirtualService, Name: name, Namespace: namespace}, Spec: vs}
		if _, err := validation.ValidateVirtualService(cfg); err != nil {
			errs = append(errs, fmt.Errorf("VirtualService %s/%s: %w", namespace, name, err))
		}
	}
	if dr != nil {
		cfg := config.Config{Meta: config.Meta{GroupVersionKind: gvk.DestinationRule, Name: name, Namespace: namespace}, Spec: dr}
		if _, err := validation.ValidateDestinationRule(cfg); err != nil {
			errs = append(errs, fmt.Errorf("DestinationRule %s/%s: %w", namespace, name, err))
		}
	}
	return errors.Join(errs...)
}
