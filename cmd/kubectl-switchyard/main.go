// Command kubectl-switchyard is a kubectl plugin for Switchyard:
//
//	kubectl switchyard wait RELEASE [--timeout 5m]
//	kubectl switchyard routes APP
//	kubectl switchyard explain APP --host HOST [-H name:value] [--mesh]
//
// It computes its answers from the live objects (AppReleases, the app's
// VirtualService) with Switchyard's own routing code.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

// exitError carries the process's exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if err := newRoot(streams).Execute(); err != nil {
		fmt.Fprintln(streams.ErrOut, "error:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// cli is what every subcommand shares: the kubeconfig flags and the output streams.
type cli struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	output  string
}

func newRoot(streams genericiooptions.IOStreams) *cobra.Command {
	c := &cli{flags: genericclioptions.NewConfigFlags(true), streams: streams}
	root := &cobra.Command{
		Use:           "kubectl-switchyard",
		Short:         "Wait for, list and explain Switchyard's routing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.flags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "", "Output format: json or yaml (default: a table)")
	root.AddCommand(c.waitCommand(), c.routesCommand(), c.explainCommand())
	return root
}

// client and namespace from the kubeconfig flags.
func (c *cli) client() (client.Client, string, error) {
	cfg, err := c.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := c.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	return cl, ns, err
}
