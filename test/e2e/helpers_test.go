package e2e

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/test/istio"
)

const app = "shop"

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6)}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// spec is an AppRelease spec as a pipeline writes it.
type spec map[string]any

func prod(image string) spec {
	return spec{"app": app, "environment": "production", "hosts": []any{"shop.example.com"}, "image": image}
}

func staging(image string) spec {
	return spec{"app": app, "environment": "staging", "hosts": []any{"staging.shop.example.com"}, "image": image}
}

func (s spec) with(k string, v any) spec {
	out := spec{}
	for key, val := range s {
		out[key] = val
	}
	out[k] = v
	return out
}

// nsHost makes a test's example.com host its namespace's own: a host is served
// by one app in the whole cluster, and test namespaces outlive their tests.
func nsHost(ns, h string) string {
	if base, ok := strings.CutSuffix(h, ".example.com"); ok {
		return base + "." + ns + ".example.com"
	}
	return h
}

// apply is `kubectl apply --server-side` of an AppRelease, as a CI pipeline
// runs it (its example.com hosts made the namespace's own: nsHost).
func apply(ns, name string, s spec) error {
	if hosts, ok := s["hosts"].([]any); ok {
		own := make([]any, len(hosts))
		for i, h := range hosts {
			own[i] = nsHost(ns, h.(string))
		}
		s = s.with("hosts", own)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AppRelease",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": map[string]any(s),
	}}
	return k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("ci-pipeline"), client.ForceOwnership)
}

func mustApply(ns, name string, s spec) {
	ExpectWithOffset(1, apply(ns, name, s)).To(Succeed())
}

func deleteRelease(ns, name string) {
	err := k8s.Delete(ctx, &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	ExpectWithOffset(1, client.IgnoreNotFound(err)).To(Succeed())
}

// state is "Phase weight Ready/Reason" of a release, once its status describes its spec.
func state(ns, name string) func(Gomega) string {
	return func(g Gomega) string {
		r := &v1alpha1.AppRelease{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, r)).To(Succeed())
		g.Expect(r.Status.ObservedGeneration).To(Equal(r.Generation))
		c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return fmt.Sprintf("%s %d %s/%s", r.Status.Phase, r.Status.Weight, c.Status, c.Reason)
	}
}

func gone(obj client.Object) func() bool {
	return func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)) }
}

func releaseGone(ns, name string) func() bool {
	return gone(&v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
}

// snapshot is one consistent view of an app's routing: neither the
// VirtualService nor the DestinationRule changed while the Deployments were read.
type snapshot struct {
	vs          *networkingv1.VirtualService
	dr          *networkingv1.DestinationRule
	deployments map[string]appsv1.Deployment // by version label
	releases    map[string]bool              // AppReleases not being deleted, by name
}

func takeSnapshot(g Gomega, ns string) snapshot {
	for {
		var s snapshot
		vs1 := &networkingv1.VirtualService{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, vs1)
		if apierrors.IsNotFound(err) {
			vs1 = nil
		} else {
			g.Expect(err).NotTo(HaveOccurred())
		}
		s.dr = &networkingv1.DestinationRule{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, s.dr); apierrors.IsNotFound(err) {
			s.dr = nil
		} else {
			g.Expect(err).NotTo(HaveOccurred())
		}
		list := &appsv1.DeploymentList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		s.deployments = map[string]appsv1.Deployment{}
		for _, d := range list.Items {
			s.deployments[d.Spec.Template.Labels[routing.VersionLabel]] = d
		}
		rels := &v1alpha1.AppReleaseList{}
		g.Expect(k8s.List(ctx, rels, client.InNamespace(ns))).To(Succeed())
		s.releases = map[string]bool{}
		for _, r := range rels.Items {
			if r.DeletionTimestamp.IsZero() {
				s.releases[routing.SubsetName(r.Name)] = true
			}
		}
		vs2 := &networkingv1.VirtualService{}
		err = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, vs2)
		dr2 := &networkingv1.DestinationRule{}
		drErr := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, dr2)
		drSame := (s.dr == nil && apierrors.IsNotFound(drErr)) || (s.dr != nil && drErr == nil && s.dr.ResourceVersion == dr2.ResourceVersion)
		switch {
		case !drSame:
		case vs1 == nil && apierrors.IsNotFound(err):
			return s
		case vs1 != nil && err == nil && vs1.ResourceVersion == vs2.ResourceVersion:
			s.vs = vs1
			return s
		}
	}
}

// checkSnapshot holds in every state the app passes through: Istio accepts
// both objects; every route's weights sum to 100; every subset a request can
// reach is defined and selects the pods of an Available Deployment; every
// subset selects an existing Deployment, or belongs to a release that is
// coming up (defined while its pods start) and is not routed.
func checkSnapshot(g Gomega, s snapshot) {
	var vsSpec = s.vs
	if vsSpec != nil {
		g.Expect(s.dr).NotTo(BeNil(), "a VirtualService without its DestinationRule")
		g.Expect(istio.Validate(s.vs.Namespace, s.vs.Name, &s.vs.Spec, &s.dr.Spec)).To(Succeed())
	} else if s.dr != nil {
		g.Expect(istio.Validate(s.dr.Namespace, s.dr.Name, nil, &s.dr.Spec)).To(Succeed())
	}
	defined := map[string]bool{}
	if s.dr != nil {
		for _, sub := range s.dr.Spec.Subsets {
			defined[sub.Name] = true
			_, ok := s.deployments[sub.Labels[routing.VersionLabel]]
			g.Expect(ok || s.releases[sub.Name]).To(BeTrue(), "subset %s selects no Deployment and belongs to no live release", sub.Name)
		}
	}
	if s.vs == nil {
		return
	}
	for _, h := range s.vs.Spec.Http {
		if h.DirectResponse != nil {
			// A mesh rule for callers of an environment without an Available release.
			g.Expect(h.DirectResponse.Status).To(BeEquivalentTo(503), "route %s", h.Name)
			g.Expect(h.Name).To(HavePrefix("mesh"))
			g.Expect(h.Route).To(BeEmpty())
			continue
		}
		sum := int32(0)
		for _, d := range h.Route {
			sum += d.Weight
			sub := d.Destination.Subset
			g.Expect(defined).To(HaveKey(sub), "route %s names subset %s, which is not defined", h.Name, sub)
			_, ok := s.deployments[sub]
			g.Expect(ok).To(BeTrue(), "route %s sends traffic to %s, which has no Deployment", h.Name, sub)
		}
		g.Expect(sum).To(BeEquivalentTo(100), "route %s weights", h.Name)
	}
}

// routes summarises the VirtualService: "route: subset weight, ..." per rule.
func routes(ns string) func(Gomega) []string {
	return func(g Gomega) []string {
		s := takeSnapshot(g, ns)
		checkSnapshot(g, s)
		g.Expect(s.vs).NotTo(BeNil(), "no VirtualService")
		checkServes(g, ns, s)
		var out []string
		for _, h := range s.vs.Spec.Http {
			var ds []string
			for _, d := range h.Route {
				ds = append(ds, fmt.Sprintf("%s %d", d.Destination.Subset, d.Weight))
			}
			out = append(out, h.Name+": "+strings.Join(ds, ", "))
		}
		return out
	}
}

func subsets(ns string) func(Gomega) []string {
	return func(g Gomega) []string {
		s := takeSnapshot(g, ns)
		checkSnapshot(g, s)
		var out []string
		if s.dr != nil {
			for _, sub := range s.dr.Spec.Subsets {
				out = append(out, sub.Name)
			}
		}
		sort.Strings(out)
		return out
	}
}

// drainDelay is the operator's default --drain-delay, which the e2e operator runs with.
const drainDelay = 3 * time.Second

// reactWithin is how long a route may name a subset none of whose pods is
// available: the time for the last pod's failure to reach the Deployment's
// status, the operator to rebuild, and the write to land. A route that names
// such a subset for longer is a 503 "no healthy upstream" the operator left.
const reactWithin = 10 * time.Second

// watchSnapshots checks every state it can observe until stop is closed, and
// reports how many it checked and the first violation: the snapshot checks,
// no subset leaving the DestinationRule sooner than the drain delay after its
// last route, no route naming a subset without available pods for longer
// than reactWithin, and no panic.
func watchSnapshots(ns string, stop <-chan struct{}) <-chan error {
	res := make(chan error, 1)
	go func() {
		n := 0
		// When each subset was last seen routed, and the subsets defined in
		// the last snapshot: a subset leaves the DestinationRule only the
		// drain delay after its last route left the VirtualService.
		lastRouted, defined := map[string]time.Time{}, map[string]bool{}
		// Since when each routed subset has had no available pod.
		podless := map[string]time.Time{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				if n == 0 {
					res <- errors.New("no snapshot was checked")
				} else {
					res <- nil
				}
				return
			case <-tick.C:
			}
			var failure string
			g := NewGomega(func(message string, _ ...int) { failure = message })
			func() {
				defer func() {
					if r := recover(); r != nil && failure == "" {
						// A failed Gomega assertion stops here too; any other panic is a failure of its own.
						failure = fmt.Sprintf("panic while checking a snapshot: %v", r)
					}
				}()
				s := takeSnapshot(g, ns)
				checkSnapshot(g, s)
				now := time.Now()
				routedNow := map[string]bool{}
				if s.vs != nil {
					for _, h := range s.vs.Spec.Http {
						for _, d := range h.Route {
							lastRouted[d.Destination.Subset] = now
							routedNow[d.Destination.Subset] = true
						}
					}
				}
				for sub := range routedNow {
					d := s.deployments[sub]
					if d.Status.AvailableReplicas > 0 && d.DeletionTimestamp.IsZero() {
						delete(podless, sub)
						continue
					}
					since, ok := podless[sub]
					if !ok {
						podless[sub] = now
						continue
					}
					g.Expect(now.Sub(since)).To(BeNumerically("<", reactWithin),
						"a route has named subset %s, which has no available pod, for %s", sub, now.Sub(since))
				}
				for sub := range podless {
					if !routedNow[sub] {
						delete(podless, sub)
					}
				}
				current := map[string]bool{}
				if s.dr != nil {
					for _, sub := range s.dr.Spec.Subsets {
						current[sub.Name] = true
					}
				}
				for sub := range defined {
					if t, ok := lastRouted[sub]; ok && !current[sub] {
						g.Expect(now.Sub(t)).To(BeNumerically(">=", drainDelay-time.Second),
							"subset %s left the DestinationRule %s after its last route; the drain delay is %s", sub, now.Sub(t), drainDelay)
					}
				}
				defined = current
			}()
			if failure != "" {
				res <- fmt.Errorf("after %d good snapshots: %s", n, failure)
				return
			}
			n++
		}
	}()
	return res
}

// checkServes asks Istio's own config generator, on the snapshot's objects,
// what each request the releases' statuses promise is served: every
// environment host its split, every branch on every host of its environment
// its release, a branch header on another environment's host nothing
// different, and the mesh the mesh environment's split. Switchyard's own
// explanation (kubectl switchyard explain) must agree with Istio on each.
func checkServes(g Gomega, ns string, s snapshot) {
	list := &v1alpha1.AppReleaseList{}
	g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	type envView struct {
		hosts    []string
		split    map[string]int32
		branches map[string]string // branch → subset
	}
	envs := map[string]*envView{}
	for _, r := range list.Items {
		if r.Status.ObservedGeneration != r.Generation || r.Status.Phase != v1alpha1.PhaseLive || r.Status.Weight == 0 {
			continue
		}
		e := envs[r.Spec.Environment]
		if e == nil {
			e = &envView{split: map[string]int32{}, branches: map[string]string{}}
			envs[r.Spec.Environment] = e
		}
		if r.Spec.Branch != "" {
			e.branches[r.Spec.Branch] = r.Status.Subset
		} else {
			e.split[r.Status.Subset] = r.Status.Weight
			e.hosts = r.Spec.Hosts
		}
	}
	if s.vs == nil || len(envs) == 0 {
		return
	}
	var callers []istio.Caller
	for env, e := range envs {
		callers = append(callers, istio.Caller{Labels: routing.CallerLabels(env, "")})
		for b := range e.branches {
			callers = append(callers, istio.Caller{Labels: routing.CallerLabels(env, b)})
		}
	}
	j, err := istio.NewJudge(ns, app, &s.vs.Spec, &s.dr.Spec, callers...)
	g.Expect(err).NotTo(HaveOccurred())
	ask := func(via istio.Via, host string, headers map[string]string, want map[string]int32) {
		got, err := j.Serve(via, host, headers)
		g.Expect(err).NotTo(HaveOccurred(), "%v %s %v", via, host, headers)
		g.Expect(got).To(Equal(want), "Istio serves %v %s %v", via, host, headers)
		ex := routing.Explain(&s.vs.Spec, istio.IngressGateway, routing.Request{Mesh: via == istio.Mesh, Host: host, Headers: headers})
		mine := map[string]int32{}
		for _, d := range ex.Split {
			mine[d.Subset] = d.Weight
		}
		g.Expect(mine).To(Equal(got), "kubectl switchyard explain and Istio disagree on %v %s %v", via, host, headers)
	}
	for name, e := range envs {
		for _, h := range e.hosts {
			if len(e.split) > 0 {
				ask(istio.Gateway, h, nil, e.split)
			}
			for b, subset := range e.branches {
				ask(istio.Gateway, h, map[string]string{"x-branch": b}, map[string]int32{subset: 100})
			}
			for other, oe := range envs {
				for b := range oe.branches {
					if _, same := e.branches[b]; other != name && !same && len(e.split) > 0 {
						ask(istio.Gateway, h, map[string]string{"x-branch": b}, e.split)
					}
				}
			}
		}
	}
	if mesh := envs["production"]; mesh != nil && len(mesh.split) > 0 {
		ask(istio.Mesh, app+"."+ns+".svc.cluster.local", nil, mesh.split)
		for b, subset := range mesh.branches {
			ask(istio.Mesh, app, map[string]string{"x-branch": b}, map[string]int32{subset: 100})
		}
	}
	// Each environment's own callers get its split, and its branches by
	// their pods' label or by header.
	askFrom := func(labels map[string]string, headers map[string]string, want map[string]int32) {
		c := istio.Caller{Labels: labels}
		got, err := j.ServeFrom(c, app, headers)
		g.Expect(err).NotTo(HaveOccurred(), "from %v %v", c, headers)
		g.Expect(got).To(Equal(want), "Istio serves a call from %v with %v", c, headers)
		ex := routing.Explain(&s.vs.Spec, istio.IngressGateway, routing.Request{Mesh: true, Host: app, Headers: headers,
			SourceLabels: labels, SourceNamespace: ns})
		mine := map[string]int32{}
		for _, d := range ex.Split {
			mine[d.Subset] = d.Weight
		}
		g.Expect(mine).To(Equal(got), "kubectl switchyard explain and Istio disagree on a call from %v with %v", c, headers)
	}
	for env, e := range envs {
		if len(e.split) > 0 {
			askFrom(routing.CallerLabels(env, ""), nil, e.split)
		}
		for b, subset := range e.branches {
			askFrom(routing.CallerLabels(env, b), nil, map[string]int32{subset: 100})
			askFrom(routing.CallerLabels(env, ""), map[string]string{"x-branch": b}, map[string]int32{subset: 100})
		}
	}
}
