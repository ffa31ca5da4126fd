package controller_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// newNamespace creates a namespace of its own for one test.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t-" + rand.String(6)}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

type relOpt func(*v1alpha1.AppRelease)

func withEnv(env string, hosts ...string) relOpt {
	return func(r *v1alpha1.AppRelease) { r.Spec.Environment, r.Spec.Hosts = env, hosts }
}
func withBuild(n int64) relOpt   { return func(r *v1alpha1.AppRelease) { r.Spec.Build = &n } }
func withBranch(b string) relOpt { return func(r *v1alpha1.AppRelease) { r.Spec.Branch = b } }
func withCanary(w int32) relOpt {
	return func(r *v1alpha1.AppRelease) { r.Spec.Canary = &v1alpha1.Canary{Weight: w} }
}

// newRelease creates a production release of app shop.
func newRelease(ns, name string, opts ...relOpt) *v1alpha1.AppRelease {
	r := &v1alpha1.AppRelease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: "production", Hosts: []string{"shop.example.com"},
			Image: "registry.example.com/shop:" + name},
	}
	for _, o := range opts {
		o(r)
	}
	for i, h := range r.Spec.Hosts {
		r.Spec.Hosts[i] = nsHost(ns, h)
	}
	Expect(k8s.Create(ctx, r)).To(Succeed())
	return r
}

// nsHost makes a test's example.com host its namespace's own: a host is served
// by one app in the whole cluster, and test namespaces outlive their tests.
// Hosts elsewhere (example.org) are left as they are, for tests of sharing.
func nsHost(ns, h string) string {
	if base, ok := strings.CutSuffix(h, ".example.com"); ok {
		return base + "." + ns + ".example.com"
	}
	return h
}

// makeAvailable plays the Deployment controller: it reports the release's
// Deployment Available (envtest runs no kube-controller-manager; the e2e suite does).
func makeAvailable(ns, name string) {
	Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, ReadyReplicas: n,
			AvailableReplicas: n, UpdatedReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
				Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
		g.Expect(k8s.Status().Update(ctx, d)).To(Succeed())
	}).Should(Succeed())
}

func getRelease(ns, name string) func(Gomega) *v1alpha1.AppRelease {
	return func(g Gomega) *v1alpha1.AppRelease {
		r := &v1alpha1.AppRelease{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, r)).To(Succeed())
		return r
	}
}

// phaseOf is "Phase weight Ready/Reason", once the status describes the current generation.
func phaseOf(ns, name string) func(Gomega) string {
	return func(g Gomega) string {
		r := getRelease(ns, name)(g)
		g.Expect(r.Status.ObservedGeneration).To(Equal(r.Generation))
		c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return fmt.Sprintf("%s %d %s/%s", r.Status.Phase, r.Status.Weight, c.Status, c.Reason)
	}
}

// routesOf summarises the app's VirtualService: "route: subset weight, ..." per HTTP route.
func routesOf(ns string) func(Gomega) []string {
	return func(g Gomega) []string {
		vs := &networkingv1.VirtualService{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs)).To(Succeed())
		var out []string
		for _, h := range vs.Spec.Http {
			var ds []string
			for _, d := range h.Route {
				ds = append(ds, fmt.Sprintf("%s %d", d.Destination.Subset, d.Weight))
			}
			out = append(out, h.Name+": "+strings.Join(ds, ", "))
		}
		return out
	}
}

// subsetsOf lists the app's DestinationRule subsets.
func subsetsOf(ns string) func(Gomega) []string {
	return func(g Gomega) []string {
		dr := &networkingv1.DestinationRule{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, dr)).To(Succeed())
		var out []string
		for _, s := range dr.Spec.Subsets {
			out = append(out, s.Name)
		}
		sort.Strings(out)
		return out
	}
}

func gone(obj client.Object) func() bool {
	return func() bool {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return err != nil && client.IgnoreNotFound(err) == nil
	}
}

// writeCounter is a real client that counts every write it is asked to make.
type writeCounter struct {
	client.Client
	writes *[]string
}

// writesMu guards every writeCounter's list: a rebuild patches statuses
// concurrently.
var writesMu sync.Mutex

func (w writeCounter) note(verb string, obj any) {
	writesMu.Lock()
	defer writesMu.Unlock()
	*w.writes = append(*w.writes, fmt.Sprintf("%s %T", verb, obj))
}

func (w writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	w.note("create", obj)
	return w.Client.Create(ctx, obj, opts...)
}
func (w writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	w.note("update", obj)
	return w.Client.Update(ctx, obj, opts...)
}
func (w writeCounter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	w.note("patch", obj)
	return w.Client.Patch(ctx, obj, p, opts...)
}
func (w writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	w.note("delete", obj)
	return w.Client.Delete(ctx, obj, opts...)
}
func (w writeCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	w.note("apply", obj)
	return w.Client.Apply(ctx, obj, opts...)
}
func (w writeCounter) Status() client.SubResourceWriter {
	return statusCounter{SubResourceWriter: w.Client.Status(), w: w}
}

type statusCounter struct {
	client.SubResourceWriter
	w writeCounter
}

func (s statusCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.note("status update", obj)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}
func (s statusCounter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.note("status patch", obj)
	return s.SubResourceWriter.Patch(ctx, obj, p, opts...)
}
