//go:build tools

// Package controlplane pins the Kubernetes and etcd binaries that the local
// control plane (envtest, e2e, make demo) runs. They are built from the Go
// module proxy by hack/build-controlplane.sh and cached under bin/.
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
