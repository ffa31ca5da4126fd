package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

const (
	// containerName is the container that runs the release's image.
	containerName = "app"
	// portName is the container port the app's Service targets by name, so each
	// release may listen on its own port number.
	portName = "http"
	// annotationSpecHash records the desired Deployment a write carried, so an
	// unchanged release is never written again.
	annotationSpecHash = "switchyard.dev/spec-hash"
)

// MakeDeployment is the desired Deployment of a release: its pod template is
// spec.template with the generated labels, image and port laid over it.
func MakeDeployment(r *v1alpha1.AppRelease) *appsv1.Deployment {
	subset := routing.SubsetName(r.Name)
	selector := map[string]string{PodLabelApp: r.Spec.App, routing.VersionLabel: subset}

	var tmpl corev1.PodTemplateSpec
	if r.Spec.Template != nil {
		r.Spec.Template.DeepCopyInto(&tmpl)
	}
	tmpl.CreationTimestamp = metav1.Time{}
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	for k, v := range selector {
		tmpl.Labels[k] = v
	}
	tmpl.Labels[LabelManagedBy] = ManagedByValue
	tmpl.Spec.Containers = withAppContainer(tmpl.Spec.Containers, r.Spec.Image, r.Spec.Port)

	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      r.Name,
			Namespace: r.Namespace,
			Labels: map[string]string{
				LabelManagedBy: ManagedByValue, LabelApp: r.Spec.App, LabelRelease: r.Name,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "AppRelease", Name: r.Name, UID: r.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(ptr.Deref(r.Spec.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: tmpl,
		},
	}
	d.Annotations = map[string]string{annotationSpecHash: specHash(d)}
	return d
}

// withAppContainer sets the image and named port of the "app" container,
// adding it first when the template has none.
func withAppContainer(cs []corev1.Container, image string, port int32) []corev1.Container {
	i := -1
	for j := range cs {
		if cs[j].Name == containerName {
			i = j
		}
	}
	if i < 0 {
		cs = append([]corev1.Container{{Name: containerName}}, cs...)
		i = 0
	}
	c := &cs[i]
	c.Image = image
	ports := []corev1.ContainerPort{{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	for _, p := range c.Ports {
		if p.Name != portName && p.ContainerPort != port {
			ports = append(ports, p)
		}
	}
	c.Ports = ports
	return cs
}

func specHash(d *appsv1.Deployment) string {
	b, _ := json.Marshal(struct {
		Labels map[string]string
		Owners []metav1.OwnerReference
		Spec   appsv1.DeploymentSpec
	}{d.Labels, d.OwnerReferences, d.Spec})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// deploymentAvailable: the Deployment reports Available for its current spec
// and has a pod up. It admits a release to routing; once routed, a release
// stays routable while any of its pods is up (a Deployment reports itself
// unavailable as soon as one pod too many is down, and during every rollout).
func deploymentAvailable(d *appsv1.Deployment) bool {
	if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas < 1 {
		return false
	}
	c := deploymentCondition(d, appsv1.DeploymentAvailable)
	return c != nil && c.Status == corev1.ConditionTrue
}

// deploymentFailed: the Deployment gave up progressing.
func deploymentFailed(d *appsv1.Deployment) bool {
	c := deploymentCondition(d, appsv1.DeploymentProgressing)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded"
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// rolledOut: the Deployment runs the release's current spec on all its
// replicas, so Ready can say the release is as asked.
func rolledOut(d *appsv1.Deployment, r *v1alpha1.AppRelease) bool {
	want := MakeDeployment(r).Annotations[annotationSpecHash]
	return d.Annotations[annotationSpecHash] == want && d.Status.ObservedGeneration >= d.Generation &&
		d.Status.UpdatedReplicas == ptr.Deref(d.Spec.Replicas, 1) && d.Status.Replicas == d.Status.UpdatedReplicas
}
