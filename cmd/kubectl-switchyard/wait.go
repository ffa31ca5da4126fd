package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
)

func (c *cli) waitCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait RELEASE",
		Short: "Wait until a release is Ready (exit 0), or fail at once when it never will be",
		Long: `Blocks until the AppRelease is Ready for its current spec (exit 0). Exits 1 at
once when the release is Stalled, Superseded or Failed, printing why, and 2
when the timeout runs out first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ns, err := c.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return c.wait(ctx, cl, client.ObjectKey{Namespace: ns, Name: args[0]})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "How long to wait")
	return cmd
}

func (c *cli) wait(ctx context.Context, cl client.Client, key client.ObjectKey) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		r := &v1alpha1.AppRelease{}
		err := cl.Get(ctx, key, r)
		switch {
		case ctx.Err() != nil || timedOut(ctx, err):
			return &exitError{2, fmt.Errorf("timed out waiting for apprelease/%s to be Ready (last: %s)", key.Name, last)}
		case apierrors.IsNotFound(err):
			last = "not found"
		case err != nil:
			return err
		case err == nil:
			done, verdict, failed := judge(r)
			last = verdict
			if done {
				fmt.Fprintf(c.streams.Out, "apprelease/%s %s\n", key.Name, verdict)
				if failed {
					return &exitError{1, fmt.Errorf("apprelease/%s will not become Ready", key.Name)}
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// timedOut: the request failed because the deadline is (all but) reached:
// client-go's rate limiter gives up a moment before the context does, with
// an error of its own.
func timedOut(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && time.Until(deadline) < time.Second && strings.Contains(err.Error(), "context deadline")
}

// judge: whether waiting is over, what to say, and whether it failed.
func judge(r *v1alpha1.AppRelease) (done bool, verdict string, failed bool) {
	if r.Status.ObservedGeneration < r.Generation {
		return false, "not yet observed by Switchyard", false
	}
	ready := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionReady)
	if ready != nil && ready.Status == "True" {
		return true, fmt.Sprintf("is Ready (%s, weight %d%%): %s", r.Status.Phase, r.Status.Weight, ready.Message), false
	}
	if s := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionStalled); s != nil && s.Status == "True" {
		return true, fmt.Sprintf("is %s: %s: %s", r.Status.Phase, s.Reason, s.Message), true
	}
	if r.Status.Phase == v1alpha1.PhaseSuperseded || r.Status.Phase == v1alpha1.PhaseFailed {
		return true, fmt.Sprintf("is %s", r.Status.Phase), true
	}
	if ready != nil {
		return false, ready.Reason + ": " + ready.Message, false
	}
	return false, string(r.Status.Phase), false
}
