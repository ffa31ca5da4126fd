package routing_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/switchyard-dev/switchyard/internal/routing"
)

// benchReleases is an app with n live releases: three environments, each with
// a stable, a Standby, a canary, and the rest feature branches.
func benchReleases(n int) []routing.Release {
	envs := []string{"production", "staging", "pre-staging"}
	rs := make([]routing.Release, 0, n)
	for i := range n {
		env := envs[i%len(envs)]
		r := routing.Release{Name: fmt.Sprintf("shop-%05d", i), UID: types.UID(fmt.Sprintf("uid-%d", i)),
			Created: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Environment: env, Hosts: []string{env + ".shop.example.com"},
			HasDeployment: true, Available: true, WasRouted: true}
		switch {
		case i < 6:
		case i < 9:
			w := int32(10)
			r.Canary = &w
		default:
			r.Branch = fmt.Sprintf("feature-%05d", i)
		}
		rs = append(rs, r)
	}
	return rs
}

// BenchmarkDecide rebuilds the routing (decision and both objects) of one
// app, without budgets and with the operator's default ones (which cost
// each branch's rules in bytes).
func BenchmarkDecide(b *testing.B) {
	budgets := opts
	budgets.MaxRoutes, budgets.MaxBytes, budgets.App, budgets.Namespace = 1000, 1<<20, "shop", "shop"
	for _, n := range []int{10, 1000, 10000} {
		rs := benchReleases(n)
		for name, o := range map[string]routing.Options{"": opts, ",budgets": budgets} {
			b.Run(fmt.Sprintf("releases=%d%s", n, name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					d := routing.Decide(rs, o)
					_ = routing.MakeVirtualService("shop", "shop", d, o)
					_ = routing.MakeDestinationRule("shop", "shop", d)
				}
			})
		}
	}
}
