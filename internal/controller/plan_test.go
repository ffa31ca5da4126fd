package controller

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func dr(subsets ...string) *networking.DestinationRule {
	out := &networking.DestinationRule{Host: "shop.shop.svc.cluster.local"}
	for _, s := range subsets {
		out.Subsets = append(out.Subsets, &networking.Subset{Name: s, Labels: map[string]string{"version": s}})
	}
	return out
}

// vs routes each named subset from a rule of its own (nil: no VirtualService).
func vs(subsets ...string) *networking.VirtualService {
	if len(subsets) == 0 {
		return nil
	}
	out := &networking.VirtualService{Hosts: []string{"shop.example.com"}}
	for _, s := range subsets {
		out.Http = append(out.Http, &networking.HTTPRoute{Name: "r-" + s, Route: []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: "shop", Subset: s}, Weight: 100}}})
	}
	return out
}

func names(d *networking.DestinationRule) string {
	var out []string
	for _, s := range d.GetSubsets() {
		out = append(out, s.Name)
	}
	return strings.Join(out, ",")
}

func TestPlanRouting(t *testing.T) {
	const delay = 3 * time.Second
	cases := []struct {
		name                 string
		desiredDR, currentDR *networking.DestinationRule
		desiredVS, currentVS *networking.VirtualService
		drains               map[string]time.Time
		first, last          string
		writeFirst           bool
		drainsAfter          map[string]time.Time
		next                 time.Duration
	}{
		{name: "a release coming up: its subset before its route; the previous stable stands by, its drain noted",
			desiredDR: dr("v1", "v2"), currentDR: dr("v1"), desiredVS: vs("v2"), currentVS: vs("v1"),
			first: "v1,v2", writeFirst: true, last: "v1,v2", drainsAfter: map[string]time.Time{"v1": t0}},
		{name: "a release whose subset is defined already taking its route: no write before the routes (its owner reference waits for Last)",
			desiredDR: dr("v1", "v2"), currentDR: dr("v1", "v2"), desiredVS: vs("v2"), currentVS: vs("v1"),
			first: "v1,v2", last: "v1,v2", drainsAfter: map[string]time.Time{"v1": t0}},
		{name: "a route leaving: its subset stays for the drain delay",
			desiredDR: dr("v2"), currentDR: dr("v1", "v2"), desiredVS: vs("v2"), currentVS: vs("v1", "v2"),
			first: "v1,v2", last: "v1,v2", drainsAfter: map[string]time.Time{"v1": t0}, next: delay},
		{name: "a drain that ended: the subset leaves at once",
			desiredDR: dr("v2"), currentDR: dr("v1", "v2"), desiredVS: vs("v2"), currentVS: vs("v2"),
			drains: map[string]time.Time{"v1": t0.Add(-delay)}, first: "v2", writeFirst: true, last: "v2", drainsAfter: map[string]time.Time{}},
		{name: "the last route gone: the VirtualService is deleted and every subset drains",
			desiredDR: dr(), currentDR: dr("v1"), desiredVS: nil, currentVS: vs("v1"),
			first: "v1", last: "v1", drainsAfter: map[string]time.Time{"v1": t0}, next: delay},
		{name: "nothing written yet",
			desiredDR: dr("v1"), currentDR: nil, desiredVS: vs("v1"), currentVS: nil,
			first: "v1", writeFirst: true, last: "v1", drainsAfter: map[string]time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := planRouting(tc.desiredDR, tc.currentDR, tc.desiredVS, tc.currentVS, tc.drains, delay, t0)
			if names(p.First) != tc.first || names(p.Last) != tc.last || p.Next != tc.next {
				t.Errorf("first %s, last %s, next %s; want %s, %s, %s", names(p.First), names(p.Last), p.Next, tc.first, tc.last, tc.next)
			}
			if p.WriteFirst != tc.writeFirst {
				t.Errorf("writes the DestinationRule before the routes: %v, want %v", p.WriteFirst, tc.writeFirst)
			}
			if fmt.Sprint(p.Drains) != fmt.Sprint(tc.drainsAfter) {
				t.Errorf("drains %v, want %v", p.Drains, tc.drainsAfter)
			}
			for s := range tc.desiredVS.GetHttp() {
				if !strings.Contains(names(p.First), tc.desiredVS.Http[s].Route[0].Destination.Subset) {
					t.Errorf("the VirtualService names %s before the DestinationRule defines it", tc.desiredVS.Http[s].Route[0].Destination.Subset)
				}
			}
		})
	}
}

func TestPlanRetirement(t *testing.T) {
	const delay = 3 * time.Second
	deleting := metav1.NewTime(t0.Add(-time.Minute))
	rel := func(name string, o ...func(*v1alpha1.AppRelease)) *v1alpha1.AppRelease {
		r := &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID("uid-" + name),
			Finalizers: []string{Finalizer}}}
		for _, f := range o {
			f(r)
		}
		return r
	}
	gone := func(r *v1alpha1.AppRelease) { r.DeletionTimestamp = &deleting }
	superseded := func(r *v1alpha1.AppRelease) { r.Status.Phase = v1alpha1.PhaseSuperseded }
	dep := func(r *v1alpha1.AppRelease, o ...func(*appsv1.Deployment)) *appsv1.Deployment {
		d := MakeDeployment(r)
		for _, f := range o {
			f(d)
		}
		return d
	}
	beingDeleted := func(d *appsv1.Deployment) { d.DeletionTimestamp = &deleting }
	set := func(ss ...string) map[string]bool {
		out := map[string]bool{}
		for _, s := range ss {
			out[s] = true
		}
		return out
	}
	v1, v2 := rel("v1"), rel("v2", gone)
	cases := []struct {
		name                         string
		releases                     []*v1alpha1.AppRelease
		deployments                  []*appsv1.Deployment
		routed, defined              map[string]bool
		drains                       map[string]time.Time
		finalizers, deletes, dropped string
		next                         time.Duration
	}{
		{name: "a deleted release whose subset is still defined waits",
			releases: []*v1alpha1.AppRelease{v1, v2}, deployments: []*appsv1.Deployment{dep(v1), dep(v2)},
			routed: set("v1"), defined: set("v1", "v2"), drains: map[string]time.Time{"v2": t0.Add(-time.Second)},
			next: 2 * time.Second},
		{name: "a deleted release whose subset left goes, and its drained Deployment is deleted",
			releases: []*v1alpha1.AppRelease{v1, v2}, deployments: []*appsv1.Deployment{dep(v1), dep(v2)},
			routed: set("v1"), defined: set("v1"), finalizers: "v2", deletes: "v2"},
		{name: "a Deployment whose route is still in the VirtualService stays, whatever deletes it",
			releases: []*v1alpha1.AppRelease{v1}, deployments: []*appsv1.Deployment{dep(v1, beingDeleted)},
			routed: set("v1"), defined: set("v1")},
		{name: "a Deployment deleted by hand keeps its pods until its drain ends",
			releases: []*v1alpha1.AppRelease{v1}, deployments: []*appsv1.Deployment{dep(v1, beingDeleted)},
			defined: set("v1"), drains: map[string]time.Time{"v1": t0}, next: delay},
		{name: "then it goes",
			releases: []*v1alpha1.AppRelease{v1}, deployments: []*appsv1.Deployment{dep(v1, beingDeleted)},
			defined: set("v1"), drains: map[string]time.Time{"v1": t0.Add(-delay)}, dropped: "v1"},
		{name: "a superseded release's Deployment is deleted once drained",
			releases: []*v1alpha1.AppRelease{v1, rel("v0", superseded)}, deployments: []*appsv1.Deployment{dep(v1), dep(rel("v0"))},
			routed: set("v1"), defined: set("v1"), deletes: "v0"},
		{name: "the Deployment of an earlier release of the same name is deleted",
			releases: []*v1alpha1.AppRelease{v1}, deployments: []*appsv1.Deployment{dep(rel("v1", func(r *v1alpha1.AppRelease) { r.UID = "old" }))},
			defined: set("v1"), deletes: "v1"},
		{name: "with no live release left, the objects go with the last one: its finalizer goes at once",
			releases: []*v1alpha1.AppRelease{v2}, deployments: []*appsv1.Deployment{dep(v2)},
			routed: set("v2"), defined: set("v2"), finalizers: "v2"},
		{name: "a Deployment labelled like Switchyard's but no release's is never touched",
			releases: []*v1alpha1.AppRelease{v1}, deployments: []*appsv1.Deployment{dep(v1, func(d *appsv1.Deployment) {
				delete(d.Annotations, annotationReleaseUID)
			})}, defined: set("v1")},
		{name: "a live release's Deployment is never touched",
			releases: []*v1alpha1.AppRelease{v1}, deployments: []*appsv1.Deployment{dep(v1)}, defined: set("v1")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, ds := map[string]*v1alpha1.AppRelease{}, map[string]*deploymentRecord{}
			live := false
			for _, r := range tc.releases {
				rs[r.Name] = r
				live = live || (r.DeletionTimestamp == nil && r.Status.Phase != v1alpha1.PhaseSuperseded)
			}
			for _, d := range tc.deployments {
				ds[d.Name] = recordOf(d)
			}
			p := planRetirement(rs, ds, live, tc.routed, tc.defined, tc.drains, delay, t0)
			got := []string{strings.Join(p.ReleaseFinalizers, ","), strings.Join(p.DeleteDeployments, ","),
				strings.Join(p.DeploymentFinalizers, ","), p.Next.String()}
			want := []string{tc.finalizers, tc.deletes, tc.dropped, tc.next.String()}
			if !slices.Equal(got, want) {
				t.Errorf("release finalizers, deletes, Deployment finalizers, next: got %q, want %q", got, want)
			}
		})
	}
}
