// Package routingtable renders an app's live routing, as its VirtualService
// says it, in a form a person reads at a glance: for each gateway, host and
// branch header, the releases served and their weights.
package routingtable

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// Row is one destination of one rule.
type Row struct {
	Rule                                          string `json:"rule"`
	Gateway, Host, Header, Release, Subset, Phase string
	// From is the callers the rule is for: "any" (at the gateway, or any
	// caller no earlier rule is for), the calling pods' environment and
	// branch labels ("staging", "staging/feature-x"), or a namespace
	// labelled with an environment ("ns:staging-jobs").
	From   string
	Weight int32
}

// Rows reads the rules of a VirtualService in order, naming the release
// behind each subset. A branch rule's baggage match, which repeats its
// header match, is shown as "(or baggage)" on the header; a rule that answers
// directly (the mesh's unserved rule) has a row without a release, its
// status as the phase.
func Rows(vs *networking.VirtualService, releases []v1alpha1.AppRelease) []Row {
	bySubset := map[string]v1alpha1.AppRelease{}
	for _, r := range releases {
		bySubset[routing.SubsetName(r.Name)] = r
	}
	var rows []Row
	for _, h := range vs.GetHttp() {
		for _, m := range h.GetMatch() {
			gw, from := "ingress", "any"
			if len(m.GetGateways()) == 1 && m.GetGateways()[0] == routing.MeshGateway {
				gw = "mesh"
			}
			if sl := m.GetSourceLabels(); len(sl) > 0 {
				gw, from = "mesh", sl[routing.EnvironmentLabel]
				if b := sl[routing.BranchLabel]; b != "" {
					from += "/" + b
				}
			} else if ns := m.GetSourceNamespace(); ns != "" {
				gw, from = "mesh", "ns:"+ns
			}
			host := strings.Join(routing.AuthorityHosts(m.GetAuthority()), ",")
			if gw == "mesh" || host == "" {
				host = "(the app's Service)"
			}
			var hdr []string
			baggageOnly := len(m.GetHeaders()) > 0
			for k, v := range m.GetHeaders() {
				if routing.BaggageMember(k, v) == "" {
					baggageOnly = false
					hdr = append(hdr, k+"="+v.GetExact())
				}
			}
			if baggageOnly {
				continue // the header's row says "(or baggage)"
			}
			header := strings.Join(hdr, ",")
			for _, other := range h.GetMatch() {
				for k, v := range other.GetHeaders() {
					if routing.BaggageMember(k, v) != "" && header != "" {
						header += " (or baggage)"
						break
					}
				}
				if strings.HasSuffix(header, ")") {
					break
				}
			}
			if dr := h.GetDirectResponse(); dr != nil {
				rows = append(rows, Row{Rule: h.GetName(), Gateway: gw, Host: host, Header: header, From: from,
					Phase: fmt.Sprintf("answers %d", dr.GetStatus())})
			}
			for _, d := range h.GetRoute() {
				r := bySubset[d.GetDestination().GetSubset()]
				rows = append(rows, Row{Rule: h.GetName(), Gateway: gw, Host: host, Header: header, From: from,
					Release: r.Name, Subset: d.GetDestination().GetSubset(), Phase: string(r.Status.Phase), Weight: d.GetWeight()})
			}
		}
	}
	return rows
}

// Write prints rows as an aligned table, repeating no gateway, host or header.
func Write(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tHOST\tFROM\tHEADER\tRELEASE\tPHASE\tWEIGHT")
	var last Row
	for _, r := range rows {
		gw, host, from, hdr := r.Gateway, r.Host, r.From, r.Header
		if hdr == "" {
			hdr = "-"
		}
		if r.Gateway == last.Gateway && r.Host == last.Host && r.From == last.From && r.Header == last.Header {
			gw, host, from, hdr = "", "", "", ""
		}
		release := r.Release
		switch {
		case release == "" && r.Subset == "":
			release = "-"
		case release == "":
			release = "? (subset " + r.Subset + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d%%\n", gw, host, from, hdr, release, r.Phase, r.Weight)
		last = r
	}
	return tw.Flush()
}
