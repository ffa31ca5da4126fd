package routing

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// Decision is the routing of one app: each release's outcome, and the rules
// the VirtualService carries, in order.
type Decision struct {
	// Outcomes by release name, for every release given.
	Outcomes map[string]Outcome
	// Routes in the order Envoy tries them; empty when nothing can be routed.
	Routes []Route
	// Subsets are the DestinationRule's subsets, by subset name, with the release behind each.
	Subsets []Destination
	// Live are the releases still part of the app (not deleting, not superseded), by name.
	Live []Release
	// ClusterDomain is Options.ClusterDomain, for the objects made from the decision.
	ClusterDomain string
}

// Decide routes an app's releases as if nothing were served yet (see
// DecideFrom). It never mutates its input.
func Decide(releases []Release, opts Options) Decision {
	return DecideFrom(releases, Current{}, opts)
}

// DecideFrom routes an app's releases, given what is served now (cur): a
// host claimed by two environments stays with the one serving it, and a
// branch that is served keeps its route within the budget. It never mutates
// its input.
func DecideFrom(releases []Release, cur Current, opts Options) Decision {
	d := Decision{ClusterDomain: opts.ClusterDomain, Outcomes: make(map[string]Outcome, len(releases)),
		Live: make([]Release, 0, len(releases)), Subsets: make([]Destination, 0, len(releases))}
	perEnv := map[string]int{}
	for _, r := range releases {
		if !r.Deleting && !r.Superseded {
			perEnv[r.Environment]++
		}
	}
	byEnv := make(map[string][]Release, len(perEnv))
	for env, n := range perEnv {
		byEnv[env] = make([]Release, 0, n)
	}
	for _, r := range releases {
		switch {
		case r.Deleting:
			d.Outcomes[r.Name] = Outcome{Phase: v1alpha1.PhaseRetiring, Reason: v1alpha1.ReasonRetiring,
				Message: "being deleted: its routes and subset are leaving the app's VirtualService and DestinationRule"}
		case r.Superseded:
			d.Outcomes[r.Name] = superseded(r, "")
		default:
			byEnv[r.Environment] = append(byEnv[r.Environment], r)
		}
	}
	envs := sortedKeys(byEnv)
	splits := map[string][]Destination{}
	branches := map[string][]branchHead{}
	for _, env := range envs {
		byEnv[env] = newestFirst(byEnv[env])
		splits[env] = decideEnvironment(byEnv[env], opts, d.Outcomes)
		branches[env] = decideBranches(byEnv[env], d.Outcomes)
	}
	hosts := decideHosts(envs, byEnv, cur, d.Outcomes)
	enforceRouteBudget(byEnv, hosts, splits, branches, cur, opts, d.Outcomes)
	d.Routes = makeRoutes(envs, hosts, splits, branches, opts)
	if !slices.ContainsFunc(d.Routes, func(r Route) bool { return len(r.Destinations) > 0 }) {
		// Nothing is routable yet: no VirtualService (and no 503 either;
		// the Service has no ready pod).
		d.Routes = nil
	}

	for _, env := range envs {
		for _, r := range byEnv[env] {
			o := d.Outcomes[r.Name]
			if o.Phase == v1alpha1.PhaseSuperseded {
				continue
			}
			d.Live = append(d.Live, r)
			if !r.Accepted && !r.HasDeployment {
				// A subset is defined once the release is taken in (the
				// finalizer that drains it is on) or has pods it can select,
				// long before a route names it (a branch waiting for room in
				// the VirtualService too: proxies have it when room is made).
				continue
			}
			o.Subset = SubsetName(r.Name)
			d.Outcomes[r.Name] = o
			d.Subsets = append(d.Subsets, Destination{Release: r.Name, Subset: o.Subset})
		}
	}
	slices.SortFunc(d.Live, func(a, b Release) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(d.Subsets, func(a, b Destination) int { return strings.Compare(a.Subset, b.Subset) })
	enforceSubsetBudget(&d, byEnv, opts)
	return d
}

// enforceSubsetBudget keeps the DestinationRule, and the Service (an owner
// reference per subset: smaller still), within opts.MaxBytes: a release's
// subset costs its JSON and an owner reference. Over the budget, the most
// recently created releases that were never routed (waiting for their pods,
// or for room in the VirtualService) wait without a subset,
// RouteBudgetExceeded; routed releases and Standbys keep theirs (the
// VirtualService's budget bounds those). Draining subsets, which the app
// controller keeps a while longer, are not counted: the budget's margin
// under etcd's limit holds them.
func enforceSubsetBudget(d *Decision, byEnv map[string][]Release, opts Options) {
	if opts.MaxBytes <= 0 {
		return
	}
	routed := map[string]bool{}
	for _, r := range d.Routes {
		for _, dst := range r.Destinations {
			routed[dst.Release] = true
		}
	}
	size := objectOverhead
	for _, s := range d.Subsets {
		size += subsetBytes(s)
	}
	if size <= opts.MaxBytes {
		return
	}
	var waiting []Release
	for _, rs := range byEnv {
		for _, r := range rs {
			o := d.Outcomes[r.Name]
			if o.Subset != "" && !routed[r.Name] && !r.WasRouted && o.Phase != v1alpha1.PhaseStandby {
				waiting = append(waiting, r)
			}
		}
	}
	// Newest first by creation (builds order a lineage, not releases of
	// different lineages).
	slices.SortFunc(waiting, func(a, b Release) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	refused := map[string]bool{}
	for _, r := range waiting {
		if size <= opts.MaxBytes {
			break
		}
		refused[r.Name] = true
		size -= subsetBytes(Destination{Release: r.Name, Subset: d.Outcomes[r.Name].Subset})
		d.Outcomes[r.Name] = Outcome{Phase: v1alpha1.PhaseFailed, Stalled: true, Reason: v1alpha1.ReasonRouteBudgetExceeded,
			Message: fmt.Sprintf("the app's DestinationRule would pass its size budget of %d bytes (--max-object-bytes; etcd refuses objects over 1.5 MiB): waits until other releases retire", opts.MaxBytes)}
	}
	d.Subsets = slices.DeleteFunc(d.Subsets, func(s Destination) bool { return refused[s.Release] })
}

// enforceRouteBudget keeps the VirtualService within opts.MaxRoutes HTTP
// routes and opts.MaxBytes bytes (as the sizer estimates them). Environment and mesh splits always stay; branches served now come
// first (a newer build of a served branch keeps its slot), then the others
// oldest head first, so the newest ones wait, each saying so, until others
// retire.
func enforceRouteBudget(byEnv map[string][]Release, hosts map[string][]string, splits map[string][]Destination,
	branches map[string][]branchHead, cur Current, opts Options, out map[string]Outcome) {
	if opts.MaxRoutes <= 0 && opts.MaxBytes <= 0 {
		return
	}
	type candidate struct {
		env    string
		head   branchHead
		routes []Route // the rules a branch of env adds (for a placeholder branch: counted, not used)
		bytes  int
		rel    Release
		served bool
	}
	var cands []candidate
	created := map[string]Release{}
	// The VirtualService's owners without branches: the releases its splits
	// route to, and the Standbys (see the app controller's routedOwners).
	owners := map[string]bool{}
	for _, rs := range byEnv {
		for _, r := range rs {
			created[r.Name] = r
			if r.Branch == "" && out[r.Name].Phase == v1alpha1.PhaseStandby {
				owners[r.Name] = true
			}
		}
	}
	for _, dsts := range splits {
		for _, dst := range dsts {
			owners[dst.Release] = true
		}
	}
	// What the table costs without any branch: every environment's rules
	// (see makeRoutes), in routes and in bytes.
	envs := sortedKeys(byEnv)
	base := makeRoutes(envs, hosts, splits, nil, opts)
	sz := newSizer(opts)
	used, usedBytes := len(base), sz.fixed(hosts, len(owners))
	for _, r := range base {
		usedBytes += sz.route(r)
	}
	// A branch adds its rules: one at the gateway (when its environment has
	// hosts) and those in the mesh: made as makeRoutes makes them, from the
	// table with that branch alone, less the table without; once per
	// environment, for a placeholder branch, whose size gives every branch's.
	for env, heads := range branches {
		if len(heads) == 0 {
			continue
		}
		t := sz.branchTemplate(envs, hosts, splits, base, env)
		for _, h := range heads {
			// Its rules, and its release's owner reference.
			cands = append(cands, candidate{env: env, head: h, rel: created[h.Release], routes: t.routes, bytes: t.bytes(h) + sz.ownerReference(),
				served: cur.Routes[branchRouteName(env, h.Branch)] || cur.Routes[meshBranchRouteName(env, h.Branch)]})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		switch {
		case a.served != b.served:
			if a.served {
				return -1
			}
			return 1
		case newer(b.rel, a.rel):
			return -1
		case newer(a.rel, b.rel):
			return 1
		}
		return 0
	})
	refused := map[string]bool{}
	for _, c := range cands {
		overRoutes := opts.MaxRoutes > 0 && used+len(c.routes) > opts.MaxRoutes
		overBytes := opts.MaxBytes > 0 && usedBytes+c.bytes > opts.MaxBytes
		if !overRoutes && !overBytes {
			used, usedBytes = used+len(c.routes), usedBytes+c.bytes
			continue
		}
		refused[c.head.Release] = true
		msg := fmt.Sprintf("the app's VirtualService is at its budget of %d routes (--max-routes): branch %s waits until other branches retire",
			opts.MaxRoutes, c.head.Branch)
		if !overRoutes {
			msg = fmt.Sprintf("the app's VirtualService would pass its size budget of %d bytes (--max-object-bytes; etcd refuses objects over 1.5 MiB): branch %s waits until other branches retire",
				opts.MaxBytes, c.head.Branch)
		}
		out[c.head.Release] = Outcome{Phase: v1alpha1.PhaseFailed, Stalled: true, Reason: v1alpha1.ReasonRouteBudgetExceeded, Message: msg}
	}
	if len(refused) == 0 {
		return
	}
	for env, heads := range branches {
		branches[env] = slices.DeleteFunc(heads, func(h branchHead) bool { return refused[h.Release] })
	}
}

// decideEnvironment picks the environment's stable release, its Standby
// rollback targets and its canaries, and returns the environment's split.
// rs is newest first.
func decideEnvironment(rs []Release, opts Options, out map[string]Outcome) []Destination {
	var stable *Release
	for i := range rs {
		if rs[i].Branch == "" && isStableLine(rs[i]) && rs[i].Available {
			stable = &rs[i]
			break
		}
	}
	standby := 0
	for _, r := range rs {
		if r.Branch != "" || !isStableLine(r) {
			continue
		}
		switch {
		case stable != nil && r.Name == stable.Name:
			// Its weight is set below, once the canaries have taken theirs.
		case stable == nil || newer(r, *stable):
			out[r.Name] = notYetAvailable(r)
		case !r.WasRouted:
			out[r.Name] = olderBuild(r, *stable)
		case standby < opts.KeepPrevious:
			// A rollback target that was routed stays one while its pods are
			// briefly down; it is routable again once they are back.
			standby++
			out[r.Name] = Outcome{Phase: v1alpha1.PhaseStandby, Ready: true, Reason: v1alpha1.ReasonStandby,
				Message: fmt.Sprintf("kept as a rollback target for environment %s, behind %s", r.Environment, stable.Name)}
		default:
			out[r.Name] = superseded(r, stable.Name)
		}
	}

	remaining := int32(100)
	var split []Destination
	for _, r := range rs {
		if r.Branch != "" || isStableLine(r) {
			continue
		}
		asked := *r.Canary
		switch {
		case stable != nil && newer(*stable, r) && !r.WasRouted:
			out[r.Name] = olderBuild(r, *stable)
		case stable != nil && newer(*stable, r):
			out[r.Name] = superseded(r, stable.Name)
		case !r.Available:
			out[r.Name] = notYetAvailable(r)
		default:
			got := min(asked, remaining)
			remaining -= got
			out[r.Name] = canaryOutcome(r, asked, got)
			if got > 0 {
				split = append(split, Destination{Release: r.Name, Subset: SubsetName(r.Name), Weight: got})
			}
		}
	}
	switch {
	case stable != nil:
		out[stable.Name] = Outcome{Phase: v1alpha1.PhaseLive, Weight: remaining, Ready: true, Reason: v1alpha1.ReasonRouted,
			Message: fmt.Sprintf("stable release of environment %s: %d%% of its traffic", stable.Environment, remaining)}
		if remaining > 0 {
			split = append(split, Destination{Release: stable.Name, Subset: SubsetName(stable.Name), Weight: remaining})
		}
	case len(split) > 0 && remaining > 0:
		// No stable release is Available: the canaries carry all of the
		// environment's traffic; the rest goes to the newest of them.
		split[0].Weight += remaining
		o := out[split[0].Release]
		o.Weight = split[0].Weight
		o.Message = fmt.Sprintf("canary of environment %s, which has no Available stable release: %d%% of its traffic",
			rs[0].Environment, o.Weight)
		out[split[0].Release] = o
	}
	slices.SortFunc(split, func(a, b Destination) int { return strings.Compare(a.Subset, b.Subset) })
	return split
}

func canaryOutcome(r Release, asked, got int32) Outcome {
	o := Outcome{Phase: v1alpha1.PhaseLive, Weight: got, Ready: true, Reason: v1alpha1.ReasonRouted,
		Message: fmt.Sprintf("canary of environment %s: %d%% of its traffic", r.Environment, got)}
	if got < asked {
		o.Ready, o.Stalled, o.Reason = false, true, v1alpha1.ReasonWeightConflict
		o.Message = fmt.Sprintf("canary asks for %d%% of environment %s but newer canaries take all but %d%%", asked, r.Environment, got)
	}
	return o
}

// decideBranches routes each branch of an environment to its newest Available
// release and supersedes the branch's older releases once a newer one is routed.
// rs is newest first; the result is sorted by branch.
func decideBranches(rs []Release, out map[string]Outcome) []branchHead {
	heads := map[string]*Release{}
	var routed []branchHead
	for i := range rs {
		r := rs[i]
		if r.Branch == "" {
			continue
		}
		if routed == nil {
			routed = make([]branchHead, 0, len(rs)-i)
		}
		head, routedHead := heads[r.Branch]
		switch {
		case routedHead && !r.WasRouted:
			out[r.Name] = olderBuild(r, *head)
		case routedHead:
			out[r.Name] = superseded(r, head.Name)
		case r.Available:
			heads[r.Branch] = &rs[i]
			out[r.Name] = Outcome{Phase: v1alpha1.PhaseLive, Weight: 100, Ready: true, Reason: v1alpha1.ReasonRouted,
				Message: "branch " + r.Branch + " of environment " + r.Environment + ": requests naming it (header or baggage) and calls from its environment's pods of the same branch go here"}
			routed = append(routed, branchHead{Branch: r.Branch,
				Destination: Destination{Release: r.Name, Subset: SubsetName(r.Name), Weight: 100}})
		default:
			out[r.Name] = notYetAvailable(r)
		}
	}
	slices.SortFunc(routed, func(a, b branchHead) int { return strings.Compare(a.Branch, b.Branch) })
	return routed
}

// branchHead is the release a branch's requests go to.
type branchHead struct {
	Branch string
	Destination
}

// decideHosts gives each environment its hosts: those of its newest routed
// release (or newest release while none is routed). A host claimed by two
// environments stays with the one that serves it now (cur); a host nobody
// serves goes to the environment that has claimed it longest (its oldest
// release). A typo in one pipeline, left in place, never moves another
// environment's traffic, however long it stays. byEnv is newest first.
func decideHosts(envs []string, byEnv map[string][]Release, cur Current, out map[string]Outcome) map[string][]string {
	asked := map[string][]string{}
	source := map[string]string{}
	for _, env := range envs {
		src := hostSource(byEnv[env], out)
		asked[env] = NormalizeHosts(src.Hosts)
		source[env] = src.Name
		for _, r := range byEnv[env] {
			// A release without hosts takes its environment's.
			if o := out[r.Name]; o.Phase != v1alpha1.PhaseSuperseded && len(r.Hosts) > 0 && !slices.Equal(NormalizeHosts(r.Hosts), asked[env]) {
				out[r.Name] = conflict(o, v1alpha1.ReasonHostsConflict, fmt.Sprintf(
					"environment %s is served at [%s], as its newest routed stable release %s asks; this release asks for [%s]",
					env, strings.Join(asked[env], ", "), src.Name, strings.Join(NormalizeHosts(r.Hosts), ", ")))
			}
		}
	}
	// Oldest claimant first: the environment whose oldest live release is oldest.
	order := slices.Clone(envs)
	oldest := func(env string) Release { rs := byEnv[env]; return rs[len(rs)-1] }
	// By creation alone: build numbers compare only within one lineage.
	sort.SliceStable(order, func(i, j int) bool {
		a, b := oldest(order[i]), oldest(order[j])
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Name < b.Name
	})
	owner := map[string]string{}
	for _, env := range envs {
		for _, h := range asked[env] {
			if cur.HostEnvironments[h] == env {
				owner[h] = env // the incumbent keeps it
			}
		}
	}
	hosts := map[string][]string{}
	for _, env := range order {
		for _, h := range asked[env] {
			if holder, ok := cur.HeldElsewhere[h]; ok {
				for _, r := range byEnv[env] {
					if slices.Contains(NormalizeHosts(r.Hosts), h) && out[r.Name].Phase != v1alpha1.PhaseSuperseded {
						out[r.Name] = conflict(out[r.Name], v1alpha1.ReasonHostsConflict, fmt.Sprintf(
							"host %s belongs to %s; environment %s is not served there", h, holder, env))
					}
				}
				continue
			}
			if prev, taken := owner[h]; taken && prev != env {
				why := "which claimed it first"
				if cur.HostEnvironments[h] == prev {
					why = "which serves it now"
				}
				for _, r := range byEnv[env] {
					if slices.Contains(NormalizeHosts(r.Hosts), h) && out[r.Name].Phase != v1alpha1.PhaseSuperseded {
						out[r.Name] = conflict(out[r.Name], v1alpha1.ReasonHostsConflict, fmt.Sprintf(
							"host %s belongs to environment %s, %s; environment %s is not served there", h, prev, why, env))
					}
				}
				continue
			}
			owner[h] = env
			hosts[env] = append(hosts[env], h)
		}
	}
	for env := range hosts {
		slices.Sort(hosts[env])
	}
	return hosts
}

// hostSource is the release whose hosts are its environment's: the newest
// routed release of the stable line (a branch or canary build does not move
// an environment), else the newest routed release, else the newest; releases
// without hosts are passed over while one has some. rs is newest first.
func hostSource(rs []Release, out map[string]Outcome) Release {
	routed := func(r Release) bool {
		p := out[r.Name].Phase
		return p == v1alpha1.PhaseLive || p == v1alpha1.PhaseStandby
	}
	for _, pick := range []func(Release) bool{
		func(r Release) bool { return routed(r) && r.Branch == "" && isStableLine(r) && len(r.Hosts) > 0 },
		func(r Release) bool { return routed(r) && len(r.Hosts) > 0 },
		func(r Release) bool { return len(r.Hosts) > 0 },
	} {
		for _, r := range rs {
			if pick(r) {
				return r
			}
		}
	}
	return rs[0]
}

// conflict marks an outcome as not routed as asked, keeping its phase and weight.
func conflict(o Outcome, reason, msg string) Outcome {
	if o.Reason == reason {
		return o
	}
	o.Ready, o.Stalled, o.Reason, o.Message = false, true, reason, msg
	return o
}

func notYetAvailable(r Release) Outcome {
	switch {
	case !r.HasDeployment:
		return Outcome{Phase: v1alpha1.PhasePending, Reason: v1alpha1.ReasonProgressing,
			Message: "waiting for its Deployment to be created"}
	case r.Failed:
		return Outcome{Phase: v1alpha1.PhaseFailed, Stalled: true, Reason: v1alpha1.ReasonDeploymentFailed,
			Message: "its Deployment exceeded its progress deadline without becoming Available; traffic stays where it was"}
	case r.WasRouted:
		return Outcome{Phase: v1alpha1.PhaseProgressing, Reason: v1alpha1.ReasonProgressing,
			Message: "none of its pods is available: its share went to the rest of its environment until they are back"}
	default:
		return Outcome{Phase: v1alpha1.PhaseProgressing, Reason: v1alpha1.ReasonProgressing,
			Message: "waiting for its Deployment to become Available; traffic stays where it was"}
	}
}

// olderBuild: a release older than the live one of its lineage that never
// took traffic (a late build of an earlier commit) never will.
func olderBuild(r Release, live Release) Outcome {
	return Outcome{Phase: v1alpha1.PhaseSuperseded, Stalled: true, Reason: v1alpha1.ReasonOlderBuild,
		Message: fmt.Sprintf("%s is older than %s, the live release of its lineage (%s): it never takes traffic",
			describeBuild(r), live.Name, describeBuild(live))}
}

func describeBuild(r Release) string {
	if r.Build > 0 {
		return fmt.Sprintf("build %d", r.Build)
	}
	return "created " + r.Created.UTC().Format(time.RFC3339)
}

func superseded(r Release, by string) Outcome {
	msg := "superseded: it no longer takes traffic"
	if by != "" {
		msg = fmt.Sprintf("superseded by %s: it no longer takes traffic", by)
	}
	return Outcome{Phase: v1alpha1.PhaseSuperseded, Stalled: true, Reason: v1alpha1.ReasonSuperseded, Message: msg}
}

// isStableLine: a release with no canary, or canary weight 100, is a candidate
// for its environment's stable release.
func isStableLine(r Release) bool {
	return r.Canary == nil || *r.Canary >= 100
}

// newer orders the releases of one lineage: the higher build wins (a release
// without one counts as build 0), then the later created, then the greater name.
func newer(a, b Release) bool {
	if a.Build != b.Build {
		return a.Build > b.Build
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.After(b.Created)
	}
	return a.Name > b.Name
}

func newestFirst(rs []Release) []Release {
	// Sort indices, not the (large) releases themselves.
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case newer(rs[a], rs[b]):
			return -1
		case newer(rs[b], rs[a]):
			return 1
		}
		return 0
	})
	out := make([]Release, len(rs))
	for i, j := range idx {
		out[i] = rs[j]
	}
	return out
}

// NormalizeHosts are hosts as routing compares them: lower case, without a
// trailing dot, sorted, each once.
func NormalizeHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, strings.ToLower(strings.TrimSuffix(h, ".")))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
