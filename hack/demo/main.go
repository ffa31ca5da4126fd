// Command demo is `make demo`: it starts a local cluster, runs Switchyard
// against it, and walks through the seed workflow as CI pipelines would,
// printing the app's routing table after every step.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/routingtable"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

const ns = "shop"

func main() {
	down := flag.Bool("down", false, "tear the cluster down at the end instead of leaving it up")
	flag.Parse()
	// The demo's clients log nothing a person should read; setting a logger
	// keeps controller-runtime from printing a goroutine dump about its absence.
	logf.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *down); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type step struct {
	title string
	apply []*v1alpha1.AppRelease
	// patch changes an existing release's canary weight.
	patch  map[string]int32
	delete []string
	// ready and gone are what the step waits for.
	ready, gone []string
}

func run(ctx context.Context, down bool) error {
	fmt.Println("==> Building and starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)")
	cluster, err := testenv.StartCluster(ctx, os.Stdout)
	if err != nil {
		return err
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop cluster:", err)
		}
	}()
	fmt.Println("==> Building kubectl for you to go on with (cached after the first time)")
	if err := runScript(ctx, filepath.Join(testenv.Root(), "hack", "build-controlplane.sh"), "kubectl"); err != nil {
		return err
	}
	fmt.Println("==> Building and starting Switchyard")
	bin, err := testenv.BuildManager(ctx)
	if err != nil {
		return err
	}
	op, err := testenv.StartOperator(bin, cluster.Kubeconfig, filepath.Join(cluster.Dir, "logs", "switchyard.log"))
	if err != nil {
		return err
	}
	defer op.Stop()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}

	prod := func(name, tag string, canary *int32) *v1alpha1.AppRelease {
		r := release(name, "production", "", tag, "shop.example.com")
		if canary != nil {
			r.Spec.Canary = &v1alpha1.Canary{Weight: *canary}
		}
		return r
	}
	ten := int32(10)
	steps := []step{
		{title: "Production pipeline deploys v1", apply: []*v1alpha1.AppRelease{prod("shop-production-v1", "v1", nil)},
			ready: []string{"shop-production-v1"}},
		{title: "Production pipeline deploys v2 as a 10% canary", apply: []*v1alpha1.AppRelease{prod("shop-production-v2", "v2", &ten)},
			ready: []string{"shop-production-v2"}},
		{title: "Staging gets its stable build and feature branch jp12 (routed by header x-branch)",
			apply: []*v1alpha1.AppRelease{release("shop-staging-5e1d0a2", "staging", "", "5e1d0a2", "staging.shop.example.com"),
				release("shop-staging-jp12-7f3a9c1", "staging", "feature-jp12", "7f3a9c1", "staging.shop.example.com")},
			ready: []string{"shop-staging-5e1d0a2", "shop-staging-jp12-7f3a9c1"}},
		{title: "Branch jp12 is rebuilt: the new build takes over once Available; the old one is superseded and pruned",
			apply: []*v1alpha1.AppRelease{release("shop-staging-jp12-b41c9e0", "staging", "feature-jp12", "b41c9e0", "staging.shop.example.com")},
			ready: []string{"shop-staging-jp12-b41c9e0"}, gone: []string{"shop-staging-jp12-7f3a9c1"}},
		{title: "v2 is promoted to 100%: v1 stands by as the rollback target",
			patch: map[string]int32{"shop-production-v2": 100}, ready: []string{"shop-production-v2", "shop-production-v1"}},
		{title: "Branch jp12 is merged and retired: its route and subset go, then its Deployment",
			delete: []string{"shop-staging-jp12-b41c9e0"}, gone: []string{"shop-staging-jp12-b41c9e0"}},
	}
	for i, s := range steps {
		fmt.Printf("\n==> Step %d/%d: %s\n", i+1, len(steps), s.title)
		if err := s.run(ctx, c); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		if err := printTable(ctx, c); err != nil {
			return err
		}
	}

	fmt.Printf("\nThe cluster is up. Go on with kubectl:\n\n  export KUBECONFIG=%s\n  export PATH=%s:$PATH\n  kubectl get appreleases -n %s\n  kubectl get virtualservice shop -n %s -o yaml\n\n",
		cluster.Kubeconfig, testenv.ControlPlaneDir(), ns, ns)
	fmt.Printf("Logs of every component and of Switchyard: %s\n", filepath.Join(cluster.Dir, "logs"))
	if down {
		fmt.Println("Tearing the cluster down (--down).")
		return nil
	}
	fmt.Println("Press Ctrl-C to stop the cluster.")
	<-ctx.Done()
	return nil
}

func release(name, env, branch, tag, host string) *v1alpha1.AppRelease {
	return &v1alpha1.AppRelease{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AppRelease"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.AppReleaseSpec{App: "shop", Environment: env, Hosts: []string{host}, Branch: branch,
			Image: "registry.example.com/shop:" + tag},
	}
}

func (s step) run(ctx context.Context, c client.Client) error {
	for _, r := range s.apply {
		b, _ := yaml.Marshal(map[string]any{"apiVersion": r.APIVersion, "kind": r.Kind,
			"metadata": map[string]any{"name": r.Name, "namespace": r.Namespace}, "spec": r.Spec})
		fmt.Printf("$ kubectl apply -f - <<EOF\n%sEOF\n", b)
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			return err
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("ci-pipeline")); err != nil {
			return err
		}
	}
	for name, w := range s.patch {
		fmt.Printf("$ kubectl patch apprelease %s -n %s --type merge -p '{\"spec\":{\"canary\":{\"weight\":%d}}}'\n", name, ns, w)
		r := &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		p := client.RawPatch("application/merge-patch+json", []byte(fmt.Sprintf(`{"spec":{"canary":{"weight":%d}}}`, w)))
		if err := c.Patch(ctx, r, p); err != nil {
			return err
		}
	}
	for _, name := range s.delete {
		fmt.Printf("$ kubectl delete apprelease %s -n %s\n", name, ns)
		if err := c.Delete(ctx, &v1alpha1.AppRelease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}); err != nil {
			return err
		}
	}
	for _, name := range s.ready {
		fmt.Printf("$ kubectl wait --for=condition=Ready apprelease/%s -n %s\n", name, ns)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range s.ready {
			r := &v1alpha1.AppRelease{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, r); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			if r.Status.ObservedGeneration != r.Generation || !meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionReady) {
				return false, nil
			}
		}
		for _, name := range s.gone {
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &v1alpha1.AppRelease{})
			if err == nil || client.IgnoreNotFound(err) != nil {
				return false, nil
			}
		}
		return true, nil
	})
}

func printTable(ctx context.Context, c client.Client) error {
	vs := &networkingv1.VirtualService{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop"}, vs); err != nil {
		return err
	}
	list := &v1alpha1.AppReleaseList{}
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return err
	}
	fmt.Println("\nRouting table of app shop (from its VirtualService):")
	if err := routingtable.Write(os.Stdout, routingtable.Rows(&vs.Spec, list.Items)); err != nil {
		return err
	}
	fmt.Println("\nReleases:")
	var lines []string
	for _, r := range list.Items {
		lines = append(lines, fmt.Sprintf("  %-28s %-10s %-13s %-12s %3d%%", r.Name, r.Spec.Environment, r.Spec.Branch, r.Status.Phase, r.Status.Weight))
	}
	fmt.Println(strings.Join(lines, "\n"))
	return nil
}

func runScript(ctx context.Context, path string, args ...string) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}
