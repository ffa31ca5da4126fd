package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AppReleaseSpec is one CI build of an application, deployed into one environment,
// optionally as a feature branch or a canary.
// +kubebuilder:validation:XValidation:rule="!(has(self.branch) && has(self.canary))",message="canary is not allowed together with branch: a branch release takes all of its branch's traffic"
// +kubebuilder:validation:XValidation:rule="has(self.branch) == has(oldSelf.branch)",message="branch is immutable: apply a new AppRelease for another branch"
// +kubebuilder:validation:XValidation:rule="has(self.build) == has(oldSelf.build)",message="build is immutable: apply a new AppRelease for another build"
type AppReleaseSpec struct {
	// app groups the releases of one application: they share one Service, one
	// VirtualService and one DestinationRule named after it. A DNS-1123 label; immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
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
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
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

	// image is the container image of this build.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.trim() != ''",message="image must not be blank"
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
	// missing) gets the image and port above.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Template *corev1.PodTemplateSpec `json:"template,omitempty"`
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
	ReasonNoHosts             = "NoHosts"
	ReasonRouteBudgetExceeded = "RouteBudgetExceeded"
	ReasonDeploymentConflict  = "DeploymentConflict"
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
