package controller

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// StartDeploymentCache gives a reconciler made outside Setup its own cache
// of Deployment records over cfg, running until ctx ends, and waits for its
// initial list.
func StartDeploymentCache(ctx context.Context, r *AppReconciler, cfg *rest.Config) error {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	c, err := newDeploymentCache(cfg, httpClient, nil)
	if err != nil {
		return err
	}
	go func() { _ = c.Start(ctx) }()
	for _, inf := range c.informers {
		if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("the Deployment cache did not sync")
		}
	}
	r.deployments = c
	return nil
}
