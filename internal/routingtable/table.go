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
	Weight                                        int32
}

// Rows reads the rules of a VirtualService in order, naming the release behind each subset.
func Rows(vs *networking.VirtualService, releases []v1alpha1.AppRelease) []Row {
	bySubset := map[string]v1alpha1.AppRelease{}
	for _, r := range releases {
		bySubset[routing.SubsetName(r.Name)] = r
	}
	var rows []Row
	for _, h := range vs.GetHttp() {
		for _, m := range h.GetMatch() {
			gw := "ingress"
			if len(m.GetGateways()) == 1 && m.GetGateways()[0] == routing.MeshGateway {
				gw = "mesh"
			}
			host := strings.Join(routing.AuthorityHosts(m.GetAuthority()), ",")
			if gw == "mesh" || host == "" {
				host = "(the app's Service)"
			}
			var hdr []string
			for k, v := range m.GetHeaders() {
				hdr = append(hdr, k+"="+v.GetExact())
			}
			for _, d := range h.GetRoute() {
				r := bySubset[d.GetDestination().GetSubset()]
				rows = append(rows, Row{Rule: h.GetName(), Gateway: gw, Host: host, Header: strings.Join(hdr, ","),
					Release: r.Name, Subset: d.GetDestination().GetSubset(), Phase: string(r.Status.Phase), Weight: d.GetWeight()})
			}
		}
	}
	return rows
}

// Write prints rows as an aligned table, repeating no gateway, host or header.
func Write(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tHOST\tHEADER\tRELEASE\tPHASE\tWEIGHT")
	var last Row
	for _, r := range rows {
		gw, host, hdr := r.Gateway, r.Host, r.Header
		if hdr == "" {
			hdr = "-"
		}
		if r.Gateway == last.Gateway && r.Host == last.Host && r.Header == last.Header {
			gw, host, hdr = "", "", ""
		}
		release := r.Release
		if release == "" {
			release = "? (subset " + r.Subset + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d%%\n", gw, host, hdr, release, r.Phase, r.Weight)
		last = r
	}
	return tw.Flush()
}
