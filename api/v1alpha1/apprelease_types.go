package v1alpha1

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "sigs.k8s.io/json"
)

// AppReleaseSpec is one CI build of an application, deployed into one environment,
// optionally as a feature branch or a canary.
// +kubebuilder:validation:XValidation:rule="!(has(self.branch) && has(self.canary))",message="canary is not allowed together with branch: a branch release takes all of its branch's traffic"
// +kubebuilder:validation:XValidation:rule="has(self.branch) == has(oldSelf.branch)",message="branch is immutable: apply a new AppRelease for another branch"
// +kubebuilder:validation:XValidation:rule="has(self.build) == has(oldSelf.build)",message="build is immutable: apply a new AppRelease for another build"
type AppReleaseSpec struct {
	// app groups the releases of one application: they share one Service, one
	// VirtualService and one DestinationRule named after it. A DNS-1035 label
	// (what a Service name must be: lower case, starting with a letter); immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="app is immutable: apply a new AppRelease instead"
	App string `json:"app"`

	// environment is the environment this release belongs to, such as staging or
	// production. A DNS-1123 label; immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="environment is immutable: apply a new AppRelease instead"
	Environment string `json:"environment"`

	// hosts are the environment's hostnames at the ingress gateway. When the
	// releases of one environment disagree, the newest routed release's hosts win.
	// Names inside the cluster are refused (a name without a dot,
	// service.namespace.svc[.domain], *.local): a VirtualService for them
	// would take the mesh traffic of another Service.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(h, h.contains('.') && !h.matches('^[^.]+[.][^.]+[.]svc([.].*)?$') && !h.endsWith('.local'))",message="hosts must be public hostnames: names inside the cluster (without a dot, service.namespace.svc[.domain], *.local) belong to Services"
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hosts []string `json:"hosts,omitempty"`

	// branch makes this a feature-branch release: requests to the environment's
	// hosts carrying the branch header with this value go to it. A DNS-1123 label; immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="branch is immutable: apply a new AppRelease for another branch"
	Branch string `json:"branch,omitempty"`

	// build orders the releases of one lineage (an environment's stable line,
	// or one branch of an environment): the CI run or pipeline number, or a
	// commit timestamp. The higher build wins whatever the order of apply; a
	// release without one counts as build 0, and equal builds fall back to
	// creation time, then name. A release older than the live one of its
	// lineage never takes traffic (reason OlderBuild). Immutable.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="build is immutable: apply a new AppRelease for another build"
	Build *int64 `json:"build,omitempty"`

	// image is the container image of this build, without white space (the
	// kubelet refuses such an image on every pod).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.trim() != ''",message="image must not be blank"
	// +kubebuilder:validation:XValidation:rule="!self.matches('[ \\t\\r\\n]')",message="image must not contain white space"
	Image string `json:"image"`

	// port is the container port the app listens on; the app's Service forwards
	// port 80 to it.
	// +optional
	// +kubebuilder:default=8080
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// replicas is the number of pods of this release.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Replicas *int32 `json:"replicas,omitempty"`

	// canary makes this release a canary of its environment: it takes weight
	// percent of the environment's host traffic once Available. Weight 100 (or no
	// canary at all) makes it the environment's stable release.
	// +optional
	Canary *Canary `json:"canary,omitempty"`

	// template is merged under the generated pod template: its labels, annotations,
	// volumes and containers are kept, and the container named "app" (added when
	// missing) gets the image and port above. Its schema is Kubernetes' own
	// PodTemplateSpec, so a template Go cannot decode (an annotation value true
	// instead of "true", a malformed quantity) is refused at apply time.
	// +optional
	Template *corev1.PodTemplateSpec `json:"template,omitempty"`

	// TemplateError is why spec.template could not be decoded, when it could
	// not (an object stored before the CRD had a schema for it); the template
	// is then nil. Never serialized: one such object must not stop the
	// operator's informer, so it is decoded leniently and refused on its own.
	TemplateError string `json:"-"`

	// TemplateHash stands for spec.template where a cache dropped it to save
	// memory (the operator's cache does: only the Deployment's writer reads
	// the template, from the API server): the template's hash, as the
	// operator computes it. Never serialized.
	TemplateHash string `json:"-"`
}

// UnmarshalJSON decodes a spec, and one whose template does not decode
// without the template, saying why in TemplateError: a single malformed
// object must never fail the list that every release's informer decodes.
func (s *AppReleaseSpec) UnmarshalJSON(b []byte) error {
	type plain AppReleaseSpec
	err := utiljson.UnmarshalCaseSensitivePreserveInts(b, (*plain)(s))
	if err == nil {
		return nil
	}
	var rest map[string]json.RawMessage
	if utiljson.UnmarshalCaseSensitivePreserveInts(b, &rest) != nil || rest["template"] == nil {
		return err
	}
	delete(rest, "template")
	without, merr := json.Marshal(rest)
	if merr != nil {
		return err
	}
	*s = AppReleaseSpec{}
	if err2 := utiljson.UnmarshalCaseSensitivePreserveInts(without, (*plain)(s)); err2 != nil {
		return err2
	}
	s.TemplateError = err.Error()
	return nil
}

// Canary is a release's share of its environment's traffic.
type Canary struct {
	// weight is the percentage of the environment's host traffic this release
	// takes once Available, 0 to 100.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
}

// Phase summarises where a release is in its life.
// +kubebuilder:validation:Enum=Pending;Progressing;Live;Standby;Superseded;Retiring;Failed
type Phase string

const (
	// PhasePending: seen, nothing routed yet (no Deployment status yet, or blocked).
	PhasePending Phase = "Pending"
	// PhaseProgressing: the Deployment is not Available yet; traffic stays where it was.
	PhaseProgressing Phase = "Progressing"
	// PhaseLive: routed.
	PhaseLive Phase = "Live"
	// PhaseStandby: a previous stable kept, with its pods and subset, as a rollback target.
	PhaseStandby Phase = "Standby"
	// PhaseSuperseded: replaced by a newer release of its lineage; it never takes traffic again.
	PhaseSuperseded Phase = "Superseded"
	// PhaseRetiring: being deleted; its routes and subset are leaving.
	PhaseRetiring Phase = "Retiring"
	// PhaseFailed: cannot be routed until something outside it changes (see conditions).
	PhaseFailed Phase = "Failed"
)

// Condition types and reasons of an AppRelease. Ready, Reconciling and Stalled
// are the types kstatus (kubectl wait, Flux, Argo CD) understands.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"

	ReasonRouted              = "Routed"
	ReasonStandby             = "Standby"
	ReasonProgressing         = "Progressing"
	ReasonRollingOut          = "RollingOut"
	ReasonDeploymentFailed    = "DeploymentFailed"
	ReasonSuperseded          = "Superseded"
	ReasonOlderBuild          = "OlderBuild"
	ReasonRetiring            = "Retiring"
	ReasonForeignObject       = "ForeignObject"
	ReasonHostsConflict       = "HostsConflict"
	ReasonWeightConflict      = "WeightConflict"
	ReasonRouteBudgetExceeded = "RouteBudgetExceeded"
	ReasonDeploymentConflict  = "DeploymentConflict"
	// ReasonDeploymentRefused: the API server refused the release's Deployment
	// (an invalid template, a quota, an admission policy); its message says why.
	ReasonDeploymentRefused = "DeploymentRefused"
	// ReasonInvalidTemplate: spec.template cannot be decoded (stored before the
	// CRD had a schema for it).
	ReasonInvalidTemplate = "InvalidTemplate"
	// ReasonDeploymentDrift: someone changed the release's Deployment in
	// fields Switchyard does not set, which it cannot put back by itself.
	ReasonDeploymentDrift = "DeploymentDrift"
	// ReasonWriteRefused: the API server refused a write of the app's Service,
	// VirtualService or DestinationRule that the release's routing needs.
	ReasonWriteRefused = "WriteRefused"
)

// AppReleaseStatus is what Switchyard has made of a release.
type AppReleaseStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarises where the release is in its life.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// weight is the share, in percent, of its environment's host traffic routed to
	// this release now (for a branch release: of its branch's traffic).
	// +optional
	Weight int32 `json:"weight"`

	// subset is the name of the release's subset in the app's DestinationRule.
	// +optional
	Subset string `json:"subset,omitempty"`

	// drainingSince is when the last route to the release's subset left the
	// app's VirtualService; the subset, and the release's pods, stay at least
	// until drainingSince plus the operator's --drain-delay, so every proxy has
	// the new routes first. Unset while routed, or once its subset has left;
	// kept while its subset stays defined (a Standby), so a later supersession
	// still honours it. Kept here so a drain survives an operator restart or a
	// leader handover.
	// +optional
	DrainingSince *metav1.Time `json:"drainingSince,omitempty"`

	// conditions: Ready is True once the release is routed as asked (or kept as
	// a Standby rollback target); Reconciling while it progresses; Stalled when it
	// cannot progress without a change elsewhere.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AppRelease is one CI build of an application. Switchyard runs its Deployment
// and routes it, together with every other live release of the same app, in the
// app's single VirtualService and DestinationRule.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || self.metadata.name.size() <= 63",message="metadata.name must be at most 63 characters: it is the value of its Deployment's and pods' labels",optionalOldSelf=true
// +kubebuilder:resource:shortName=ar,categories=switchyard
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.app`
// +kubebuilder:printcolumn:name="Env",type=string,JSONPath=`.spec.environment`
// +kubebuilder:printcolumn:name="Branch",type=string,JSONPath=`.spec.branch`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`
// +kubebuilder:printcolumn:name="Build",type=integer,JSONPath=`.spec.build`,priority=10
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.status.weight`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=10
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=10
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AppRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the build to run and how to route it.
	// +required
	Spec AppReleaseSpec `json:"spec"`

	// status is what Switchyard has made of it.
	// +optional
	Status AppReleaseStatus `json:"status,omitempty"`
}

// AppReleaseList is a list of AppReleases.
// +kubebuilder:object:root=true
type AppReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AppRelease `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AppRelease{}, &AppReleaseList{})
}
