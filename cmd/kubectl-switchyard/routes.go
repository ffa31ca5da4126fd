package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routingtable"
)

// releaseView is one release as the routing table shows it.
type releaseView struct {
	Name        string `json:"name"`
	Environment string `json:"environment"`
	Branch      string `json:"branch,omitempty"`
	Phase       string `json:"phase"`
	Weight      int32  `json:"weight"`
	Build       *int64 `json:"build,omitempty"`
	Age         string `json:"age"`
	Reason      string `json:"reason,omitempty"`
	Message     string `json:"message,omitempty"`
}

// routesView is an app's routing at a glance.
type routesView struct {
	App       string                 `json:"app"`
	Namespace string                 `json:"namespace"`
	Rules     []routingtable.Row     `json:"rules"`
	Standby   []releaseView          `json:"standby"`
	NotReady  []releaseView          `json:"notReady"`
	Releases  map[string]releaseView `json:"releases"`
}

func (c *cli) routesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "routes APP",
		Short: "The app's routing table: for each host and header, the releases served and their weights",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ns, err := c.client()
			if err != nil {
				return err
			}
			v, err := loadRoutes(cmd, cl, ns, args[0])
			if err != nil {
				return err
			}
			return c.print(v, func(w io.Writer) error { return writeRoutes(w, v) })
		},
	}
}

// loadRoutes reads the app's releases and VirtualService.
func loadRoutes(cmd *cobra.Command, cl client.Client, ns, app string) (*routesView, error) {
	list := &v1alpha1.AppReleaseList{}
	if err := cl.List(cmd.Context(), list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var releases []v1alpha1.AppRelease
	v := &routesView{App: app, Namespace: ns, Releases: map[string]releaseView{}}
	now := time.Now()
	for _, r := range list.Items {
		if r.Spec.App != app {
			continue
		}
		releases = append(releases, r)
		rv := releaseView{Name: r.Name, Environment: r.Spec.Environment, Branch: r.Spec.Branch, Phase: string(r.Status.Phase),
			Weight: r.Status.Weight, Build: r.Spec.Build, Age: duration.HumanDuration(now.Sub(r.CreationTimestamp.Time))}
		ready := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
		if ready != nil {
			rv.Reason, rv.Message = ready.Reason, ready.Message
		}
		v.Releases[r.Name] = rv
		switch {
		case r.Status.Phase == v1alpha1.PhaseStandby:
			v.Standby = append(v.Standby, rv)
		case ready == nil || ready.Status != "True":
			v.NotReady = append(v.NotReady, rv)
		}
	}
	if len(releases) == 0 {
		return nil, fmt.Errorf("no AppReleases of app %s in namespace %s", app, ns)
	}
	sort.Slice(v.Standby, func(i, j int) bool { return v.Standby[i].Name < v.Standby[j].Name })
	sort.Slice(v.NotReady, func(i, j int) bool { return v.NotReady[i].Name < v.NotReady[j].Name })
	vs := &networkingv1.VirtualService{}
	err := cl.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: app}, vs)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	default:
		v.Rules = routingtable.Rows(&vs.Spec, releases)
	}
	return v, nil
}

func writeRoutes(w io.Writer, v *routesView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "App %s in namespace %s\n\n", v.App, v.Namespace)
	if len(v.Rules) == 0 {
		fmt.Fprintln(tw, "No routes: no release of the app is routed.")
	} else {
		fmt.Fprintln(tw, "GATEWAY\tHOST\tFROM\tHEADER\tRELEASE\tPHASE\tWEIGHT\tBUILD\tAGE")
		var last routingtable.Row
		for _, r := range v.Rules {
			gw, host, from, hdr := r.Gateway, r.Host, r.From, r.Header
			if hdr == "" {
				hdr = "-"
			}
			if r.Gateway == last.Gateway && r.Host == last.Host && r.From == last.From && r.Header == last.Header {
				gw, host, from, hdr = "", "", "", ""
			}
			rel, name := v.Releases[r.Release], r.Release
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d%%\t%s\t%s\n", gw, host, from, hdr, name, r.Phase, r.Weight, build(rel.Build), rel.Age)
			last = r
		}
	}
	if len(v.Standby) > 0 {
		fmt.Fprintln(tw, "\nSTANDBY (rollback targets)\tENV\tBUILD\tAGE")
		for _, r := range v.Standby {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Environment, build(r.Build), r.Age)
		}
	}
	if len(v.NotReady) > 0 {
		fmt.Fprintln(tw, "\nNOT READY\tPHASE\tREASON\tMESSAGE")
		for _, r := range v.NotReady {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Phase, r.Reason, r.Message)
		}
	}
	return tw.Flush()
}

func build(b *int64) string {
	if b == nil {
		return "-"
	}
	return fmt.Sprint(*b)
}

// print writes v as JSON or YAML when asked, else as a table.
func (c *cli) print(v any, table func(io.Writer) error) error {
	switch c.output {
	case "json":
		enc := json.NewEncoder(c.streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = c.streams.Out.Write(b)
		return err
	case "":
		return table(c.streams.Out)
	}
	return fmt.Errorf("unknown output format %q: use json or yaml", c.output)
}
