package controller

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// recordMeta is the object metadata a deploymentRecord keeps: name,
// namespace, uid, resource version, generation, deletion and finalizers, in
// 104 bytes where a metav1.ObjectMeta takes 232 before any field is set (at
// 10,000 releases, 1.3 MB less heap). It implements metav1.Object, so a
// record is a client.Object for informers and event handlers: what it does
// not keep reads as empty, and setting it does nothing.
type recordMeta struct {
	Name, Namespace   string
	UID               types.UID
	ResourceVersion   string
	Generation        int64
	DeletionTimestamp *metav1.Time
	Finalizers        []string
}

var _ metav1.Object = &recordMeta{}

func (m *recordMeta) GetNamespace() string                { return m.Namespace }
func (m *recordMeta) SetNamespace(namespace string)       { m.Namespace = namespace }
func (m *recordMeta) GetName() string                     { return m.Name }
func (m *recordMeta) SetName(name string)                 { m.Name = name }
func (m *recordMeta) GetGenerateName() string             { return "" }
func (m *recordMeta) SetGenerateName(string)              {}
func (m *recordMeta) GetUID() types.UID                   { return m.UID }
func (m *recordMeta) SetUID(uid types.UID)                { m.UID = uid }
func (m *recordMeta) GetResourceVersion() string          { return m.ResourceVersion }
func (m *recordMeta) SetResourceVersion(version string)   { m.ResourceVersion = version }
func (m *recordMeta) GetGeneration() int64                { return m.Generation }
func (m *recordMeta) SetGeneration(generation int64)      { m.Generation = generation }
func (m *recordMeta) GetSelfLink() string                 { return "" }
func (m *recordMeta) SetSelfLink(string)                  {}
func (m *recordMeta) GetCreationTimestamp() metav1.Time   { return metav1.Time{} }
func (m *recordMeta) SetCreationTimestamp(metav1.Time)    {}
func (m *recordMeta) GetDeletionTimestamp() *metav1.Time  { return m.DeletionTimestamp }
func (m *recordMeta) SetDeletionTimestamp(t *metav1.Time) { m.DeletionTimestamp = t }
func (m *recordMeta) GetDeletionGracePeriodSeconds() *int64 {
	return nil
}
func (m *recordMeta) SetDeletionGracePeriodSeconds(*int64)          {}
func (m *recordMeta) GetLabels() map[string]string                  { return nil }
func (m *recordMeta) SetLabels(map[string]string)                   {}
func (m *recordMeta) GetAnnotations() map[string]string             { return nil }
func (m *recordMeta) SetAnnotations(map[string]string)              {}
func (m *recordMeta) GetFinalizers() []string                       { return m.Finalizers }
func (m *recordMeta) SetFinalizers(finalizers []string)             { m.Finalizers = finalizers }
func (m *recordMeta) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (m *recordMeta) SetOwnerReferences([]metav1.OwnerReference)    {}
func (m *recordMeta) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (m *recordMeta) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

// deepCopy is a copy sharing nothing with m.
func (m recordMeta) deepCopy() recordMeta {
	if m.DeletionTimestamp != nil {
		m.DeletionTimestamp = m.DeletionTimestamp.DeepCopy()
	}
	m.Finalizers = slices.Clone(m.Finalizers)
	return m
}
