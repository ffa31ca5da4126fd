// Package istio judges Switchyard's routing by Istio's own code: its
// validation of VirtualServices and DestinationRules, and the Envoy route
// configuration its generator (istiod's) builds from them.
//
// It lives in a Go module of its own: istio.io/istio has only pseudo-versions
// and pins release candidates of many k8s.io modules, which must stay out of
// the operator's go.mod.
package istio
