package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	appsclient "k8s.io/client-go/kubernetes/typed/apps/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// byAppIndex indexes deploymentRecords by "namespace/app".
const byAppIndex = "switchyard.dev/app"

// deploymentCache is the operator's own cache of the Deployments Switchyard
// runs (labelled LabelManagedBy), kept as deploymentRecords. The manager's
// cache cannot hold them: it hands out only the type it decodes (a typed
// Deployment, 1,232 bytes before any field), and its multi-namespace form
// hides its indexers. One client-go informer per watched namespace (one for
// all namespaces without --watch-namespaces), each indexed by app. It is a
// manager Runnable; controllers watch it through sources(), which make them
// wait for its initial lists.
type deploymentCache struct {
	informers map[string]toolscache.SharedIndexInformer // by namespace; "" for all
}

// newDeploymentCache makes the informers for namespaces (all when none),
// over protobuf. Errors: the client cannot be built from cfg.
func newDeploymentCache(cfg *rest.Config, httpClient *http.Client, namespaces []string) (*deploymentCache, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	apps, err := appsclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("apps/v1 client: %w", err)
	}
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	managed := LabelManagedBy + "=" + ManagedByValue
	c := &deploymentCache{informers: map[string]toolscache.SharedIndexInformer{}}
	for _, ns := range namespaces {
		deployments := apps.Deployments(ns)
		lw := &toolscache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				opts.LabelSelector = managed
				return deployments.List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				opts.LabelSelector = managed
				return deployments.Watch(ctx, opts)
			},
		}
		inf := toolscache.NewSharedIndexInformerWithOptions(lw, &appsv1.Deployment{}, toolscache.SharedIndexInformerOptions{
			Indexers: toolscache.Indexers{byAppIndex: appOfRecord},
		})
		if err := inf.SetTransform(slimDeployment); err != nil {
			return nil, err
		}
		c.informers[ns] = inf
	}
	return c, nil
}

// appOfRecord is the byAppIndex of a record: "namespace/app".
func appOfRecord(obj any) ([]string, error) {
	d, ok := obj.(*deploymentRecord)
	if !ok || d.App == "" {
		return nil, nil
	}
	return []string{d.Namespace + "/" + d.App}, nil
}

// Start runs the informers until ctx ends.
func (c *deploymentCache) Start(ctx context.Context) error {
	for _, inf := range c.informers {
		go inf.RunWithContext(ctx)
	}
	<-ctx.Done()
	return nil
}

// NeedLeaderElection is false: a standby replica keeps its cache warm, as
// the manager's cache does.
func (c *deploymentCache) NeedLeaderElection() bool { return false }

// informer is the informer holding namespace's Deployments (nil when it is
// not watched).
func (c *deploymentCache) informer(namespace string) toolscache.SharedIndexInformer {
	if inf, ok := c.informers[metav1.NamespaceAll]; ok {
		return inf
	}
	return c.informers[namespace]
}

// get returns the record of the Deployment key, or nil. Records are shared
// with the cache: never change one (write through object()).
func (c *deploymentCache) get(key client.ObjectKey) *deploymentRecord {
	inf := c.informer(key.Namespace)
	if inf == nil {
		return nil
	}
	obj, ok, _ := inf.GetIndexer().GetByKey(key.Namespace + "/" + key.Name)
	if !ok {
		return nil
	}
	d, _ := obj.(*deploymentRecord)
	return d
}

// ofApp returns the records of app's Deployments, by name. Shared with the
// cache, as get's.
func (c *deploymentCache) ofApp(app client.ObjectKey) map[string]*deploymentRecord {
	out := map[string]*deploymentRecord{}
	inf := c.informer(app.Namespace)
	if inf == nil {
		return out
	}
	objs, _ := inf.GetIndexer().ByIndex(byAppIndex, app.Namespace+"/"+app.Name)
	for _, obj := range objs {
		if d, ok := obj.(*deploymentRecord); ok {
			out[d.Name] = d
		}
	}
	return out
}

// sources are the controller sources of the cache's informers, each
// mapping records to requests with key (a record's key; false for none)
// after preds. Each is a source.SyncingSource: a
// controller starts no worker before every informer has listed its
// Deployments (a rebuild that read none would unroute every release), and
// fails to start, as with the manager's cache, when one does not list
// within its CacheSyncTimeout.
func (c *deploymentCache) sources(key func(*deploymentRecord) (client.ObjectKey, bool), preds ...predicate.Predicate) []source.Source {
	h := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if d, ok := o.(*deploymentRecord); ok {
			if k, ok := key(d); ok {
				return []reconcile.Request{{NamespacedName: k}}
			}
		}
		return nil
	})
	namespaces := make([]string, 0, len(c.informers))
	for ns := range c.informers {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	out := make([]source.Source, 0, len(namespaces))
	for _, ns := range namespaces {
		inf := c.informers[ns]
		out = append(out, syncingInformer{Source: &source.Informer{Informer: inf, Handler: h, Predicates: preds}, informer: inf})
	}
	return out
}

// syncingInformer is a source.Informer that also waits for its informer's
// initial list (controller-runtime's waits for nothing).
type syncingInformer struct {
	source.Source
	informer toolscache.SharedIndexInformer
}

var _ source.SyncingSource = syncingInformer{}

// WaitForSync returns once the informer has listed, or ctx's error.
func (s syncingInformer) WaitForSync(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("the Deployment informer did not list its Deployments: %w", ctx.Err())
	}
	return nil
}
