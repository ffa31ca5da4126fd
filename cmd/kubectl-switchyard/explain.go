package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

// explainView is which release serves a request, and why.
type explainView struct {
	Request string                `json:"request"`
	Tried   []routing.RuleVerdict `json:"tried"`
	Rule    string                `json:"rule,omitempty"`
	Split   []splitView           `json:"split"`
}

type splitView struct {
	Subset  string      `json:"subset"`
	Weight  int32       `json:"weight"`
	Release releaseView `json:"release"`
}

func (c *cli) explainCommand() *cobra.Command {
	var host, fromRelease string
	var headers []string
	var fromLabels map[string]string
	var mesh bool
	cmd := &cobra.Command{
		Use:   "explain APP [--host HOST] [-H name:value]... [--mesh | --from-release NAME | --from-labels k=v,...]",
		Short: "Which release serves a request, and why: the rule that matched, the ones before it and why they did not",
		Long: `Which release serves a request, and why: the rule that matched, the ones before it and why they did not.

A request enters through the ingress gateway (--host is then required), or
inside the mesh: from a pod without Switchyard's labels (--mesh), from a pod of
a release (--from-release, its environment and branch), or from a pod with
the given labels (--from-labels switchyard.dev/environment=staging). Inside
the mesh, --host defaults to the app's Service.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromRelease != "" && fromLabels != nil {
				return fmt.Errorf("--from-release and --from-labels name the caller twice: give one")
			}
			mesh = mesh || fromRelease != "" || fromLabels != nil
			if host == "" && !mesh {
				return fmt.Errorf("--host is required for a request through the gateway (or call from inside the mesh: --mesh, --from-release, --from-labels)")
			}
			if host == "" {
				host = args[0]
			}
			req := routing.Request{Mesh: mesh, Host: host, Headers: map[string]string{}, SourceLabels: fromLabels}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("header %q is not name:value", h)
				}
				req.Headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
			cl, ns, err := c.client()
			if err != nil {
				return err
			}
			if fromRelease != "" {
				caller := &v1alpha1.AppRelease{}
				if err := cl.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: fromRelease}, caller); err != nil {
					return fmt.Errorf("the calling release: %w", err)
				}
				req.SourceLabels = routing.CallerLabels(caller.Spec.Environment, caller.Spec.Branch)
			}
			routes, err := loadRoutes(cmd, cl, ns, args[0])
			if err != nil {
				return err
			}
			vs := &networkingv1.VirtualService{}
			if err := cl.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: args[0]}, vs); err != nil {
				return fmt.Errorf("the app's VirtualService: %w", err)
			}
			v := explain(&vs.Spec, req, routes)
			return c.print(v, func(w io.Writer) error { return writeExplain(w, v) })
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "The request's host")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "A request header, name:value (repeatable)")
	cmd.Flags().BoolVar(&mesh, "mesh", false, "The request comes from inside the mesh, from a pod without Switchyard's labels")
	cmd.Flags().StringVar(&fromRelease, "from-release", "", "The request comes from inside the mesh, from a pod of this AppRelease (in the same namespace)")
	cmd.Flags().StringToStringVar(&fromLabels, "from-labels", nil, "The request comes from inside the mesh, from a pod with these labels (k=v,...)")
	return cmd
}

// explain walks the app's rules with Switchyard's own matching and names the
// release behind each subset of the split.
func explain(vs *networking.VirtualService, req routing.Request, routes *routesView) *explainView {
	gateway := ""
	for _, g := range vs.GetGateways() {
		if g != routing.MeshGateway {
			gateway = g
		}
	}
	via := "through gateway " + gateway
	if req.Mesh {
		via = "from inside the mesh, from a pod without Switchyard's labels"
	}
	if len(req.SourceLabels) > 0 {
		labels := make([]string, 0, len(req.SourceLabels))
		for k, v := range req.SourceLabels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		via = "from inside the mesh, from a pod labelled " + strings.Join(labels, ",")
	}
	names := make([]string, 0, len(req.Headers))
	for k, v := range req.Headers {
		names = append(names, k+": "+v)
	}
	sort.Strings(names)
	v := &explainView{Request: fmt.Sprintf("http://%s/ %s", req.Host, via)}
	if len(names) > 0 {
		v.Request += " with " + strings.Join(names, ", ")
	}
	ex := routing.Explain(vs, gateway, req)
	v.Tried, v.Rule = ex.Tried, ex.Rule
	bySubset := map[string]releaseView{}
	for name, r := range routes.Releases {
		bySubset[routing.SubsetName(name)] = r
	}
	for _, d := range ex.Split {
		v.Split = append(v.Split, splitView{Subset: d.Subset, Weight: d.Weight, Release: bySubset[d.Subset]})
	}
	return v
}

func writeExplain(w io.Writer, v *explainView) error {
	fmt.Fprintf(w, "Request: %s\n\n", v.Request)
	for i, t := range v.Tried {
		verdict := "matches"
		if !t.Matched {
			verdict = "does not match: " + t.Why
		}
		fmt.Fprintf(w, "  %d. %s %s\n", i+1, t.Rule, verdict)
	}
	if v.Rule == "" {
		fmt.Fprintln(w, "\nNo rule matches: the request is not routed to the app (the gateway answers 404; a sidecar passes a host it does not know through).")
		return nil
	}
	if len(v.Split) == 0 {
		fmt.Fprintf(w, "\nRule %s answers 503: no Available release of the environment it is for (its callers are never sent to another environment's).\n", v.Rule)
		return nil
	}
	fmt.Fprintf(w, "\nServed by rule %s:\n", v.Rule)
	for _, s := range v.Split {
		fmt.Fprintf(w, "  %3d%%  %s (subset %s, %s, build %s, age %s)\n", s.Weight, s.Release.Name, s.Subset, s.Release.Phase, build(s.Release.Build), s.Release.Age)
	}
	return nil
}
