// Package routing decides, purely, how one app's releases are routed: the
// app's releases (and their Deployments' availability) in; the desired
// VirtualService and DestinationRule specs and each release's outcome out.
//
// Nothing here talks to the API server, reads a clock or a global setting.
// The same input gives byte-identical output, so an unchanged world produces
// no write.
package routing

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// MeshGateway is Istio's name for the sidecars of the mesh in a VirtualService.
const MeshGateway = "mesh"

// Options are the operator-wide settings the decision depends on.
type Options struct {
	// BranchHeader is the HTTP header whose value selects a feature branch.
	BranchHeader string
	// Gateway is the ingress gateway ("namespace/name") the environments' hosts are served at.
	Gateway string
	// BaggageKey is the W3C baggage member (RFC: w3.org/TR/baggage) whose
	// value selects a feature branch inside the mesh, as the branch header
	// does: OpenTelemetry SDKs propagate baggage from call to call without
	// code in the app. Empty: baggage is not read.
	BaggageKey string
	// MeshEnvironment is the environment that traffic inside the mesh gets
	// from callers of no environment the app has: pods without an
	// EnvironmentLabel, or labelled with an environment the app lacks.
	MeshEnvironment string
	// NamespaceEnvironments maps a namespace to the environment its
	// EnvironmentLabel names (the Namespace object's label): a pod there is
	// that environment's caller unless its own label names another
	// environment of the app. Read from the cluster for each rebuild.
	NamespaceEnvironments map[string]string
	// ServedByHeader names a response header set to the name of the
	// AppRelease that served the request, so a tester sees where a request
	// went. Empty: no header.
	ServedByHeader string
	// KeepPrevious is how many previous stable releases of an environment are
	// kept as Standby rollback targets.
	KeepPrevious int
	// ExportTo restricts which namespaces' proxies see the app's
	// VirtualService (Istio's exportTo) to the app's own and these, which
	// must include the ingress gateway pods' namespace; empty or "*": every
	// namespace (Istio's default). Restricted, a sidecar in another team's
	// namespace never takes routing from an app it does not know (for a
	// public host its pods call), and calls to the app's Service from an
	// unlisted namespace are not routed by environment.
	ExportTo []string
	// ClusterDomain is the cluster's DNS domain ("" or "cluster.local" by
	// default): the app's Service is app.namespace.svc.ClusterDomain.
	ClusterDomain string
	// MaxRoutes caps the HTTP routes of an app's VirtualService (0: no cap).
	// Every route costs API-server time on each write, istiod memory and
	// Envoy matching time per request; the newest branches wait beyond it.
	MaxRoutes int
	// MaxBytes caps the serialized size of each of the app's objects, in
	// bytes (0: no cap), as estimated from above with owner references (and
	// their entries in managedFields): the VirtualService (an owner per
	// release it routes or keeps as Standby), the DestinationRule and, smaller
	// than it, the Service (a subset and an owner per release). etcd refuses
	// a request over 1.5 MiB (--max-request-bytes), so beyond it the newest
	// branches wait, as beyond MaxRoutes, and then the newest releases no
	// route names yet, without a subset.
	MaxBytes int
	// App and Namespace name the app being decided, for the size estimate
	// of MaxBytes; empty, the estimate takes the longest names the API
	// accepts.
	App, Namespace string
}

// Release is what the decision needs to know of one AppRelease.
type Release struct {
	// Name is the AppRelease's name; UID its uid (for owner references).
	Name string
	UID  types.UID
	// Build and Created order the releases of one lineage: the higher build
	// (spec.build, 0 when absent) wins, then the later created, then the greater name.
	Build   int64
	Created time.Time
	// Environment, Branch, Hosts and Canary are the release's spec.
	Environment string
	Branch      string
	Hosts       []string
	// Canary is the asked canary weight; nil when the release is not a canary.
	Canary *int32

	// Accepted: the operator has taken the release in (its drain finalizer is
	// on), so its subset may be defined before its Deployment exists: the
	// DestinationRule is written while the pods start, and only the route is
	// left for when they are Available.
	Accepted bool
	// HasDeployment: the release's Deployment exists and belongs to it.
	HasDeployment bool
	// Available: the Deployment is Available, its status is current and at least one pod is up.
	Available bool
	// Failed: the Deployment gave up progressing (ProgressDeadlineExceeded).
	Failed bool
	// Deleting: the AppRelease is being deleted; its routes and subset must go.
	Deleting bool
	// Superseded: an earlier decision superseded it; that is final.
	Superseded bool
	// WasRouted: an earlier decision routed it (Live) or kept it (Standby). A
	// release older than its lineage's live one may stand by only if it was.
	WasRouted bool
}

// Outcome is what the decision made of one release: its status.
type Outcome struct {
	Phase  v1alpha1.Phase
	Weight int32
	Subset string
	// Ready is True once routed as asked (or kept as Standby).
	Ready bool
	// Stalled: it cannot progress without a change elsewhere.
	Stalled bool
	// Reason (CamelCase) and Message explain Ready.
	Reason  string
	Message string
}

// Reconciling is True while the release is still on its way to its final phase.
func (o Outcome) Reconciling() bool {
	return !o.Ready && !o.Stalled
}

// Route is one rule of the routing table, in the order Envoy tries them.
type Route struct {
	// Name of the HTTP route in the VirtualService.
	Name string
	// Gateway is the ingress gateway, or MeshGateway for traffic inside the mesh.
	Gateway string
	// Hosts the rule matches (the Host header); empty matches any host of the app's Service (mesh).
	Hosts []string
	// Branch is the branch header (or baggage member) value the rule matches;
	// empty matches any request.
	Branch string
	// SourceEnvironment is the EnvironmentLabel a calling pod must carry for
	// a mesh rule to apply (Istio's sourceLabels, evaluated per sidecar);
	// empty: any caller.
	SourceEnvironment string
	// SourceBranch, on a mesh branch rule, also serves the calls of that
	// branch's own pods (EnvironmentLabel Environment, BranchLabel
	// SourceBranch) whose request names no branch.
	SourceBranch string
	// SourceNamespaces are the namespaces whose pods a mesh rule is for
	// (Istio's sourceNamespace, one match each): the namespaces labelled with
	// its environment. Set, SourceEnvironment is not.
	SourceNamespaces []string
	// Environment the rule serves.
	Environment string
	// Destinations with their weights, summing to 100, in subset order; none
	// for the mesh's unserved rule, which answers 503 (see makeRoutes).
	Destinations []Destination
}

// Destination is a subset and the share of a route's traffic it takes.
type Destination struct {
	Release string
	Subset  string
	Weight  int32
}
