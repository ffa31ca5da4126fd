// Command manager runs Switchyard's controllers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/controller"
	"github.com/switchyard-dev/switchyard/internal/metrics"
	"github.com/switchyard-dev/switchyard/internal/routing"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "switchyard:", err)
		os.Exit(1)
	}
}

// flags are the operator's command-line settings.
type flags struct {
	routing              routing.Options
	pruneSuperseded      bool
	supersededGrace      time.Duration
	minWriteInterval     time.Duration
	burstMaxHold         time.Duration
	drainDelay           time.Duration
	appConcurrency       int
	metricsAddr          string
	metricsSecure        bool
	pprofAddr            string
	probeAddr            string
	leaderElect          bool
	watchNamespaces      []string
	leaderElectNamespace string
}

func parseFlags(fs *flag.FlagSet, args []string) (*flags, *zap.Options, error) {
	f := &flags{}
	fs.StringVar(&f.routing.BranchHeader, "branch-header", "x-branch", "HTTP header whose value selects a feature branch.")
	fs.StringVar(&f.routing.Gateway, "gateway", "istio-system/ingressgateway", "Ingress gateway (namespace/name) the environments' hosts are served at.")
	fs.StringVar(&f.routing.BaggageKey, "branch-baggage-key", "", "W3C baggage member whose value selects a feature branch, as the branch header does (OpenTelemetry SDKs propagate baggage without code). Default: the --branch-header name; \"-\" reads no baggage.")
	fs.StringVar(&f.routing.MeshEnvironment, "mesh-environment", "production", "Environment that calls to an app's Service from inside the mesh get when the calling pod's environment (label switchyard.dev/environment) is none the app has.")
	fs.StringVar(&f.routing.ServedByHeader, "served-by-header", "", "Response header naming the AppRelease that served the request (for example x-switchyard-release), so a tester sees where a request went. Default: none.")
	fs.IntVar(&f.routing.KeepPrevious, "keep-previous", 1, "Previous stable releases kept per environment as instant rollback targets (Standby).")
	fs.StringVar(&f.routing.ClusterDomain, "cluster-domain", "cluster.local", "The cluster's DNS domain: an app's Service is app.namespace.svc.<domain> in its VirtualService and DestinationRule.")
	fs.IntVar(&f.routing.MaxBytes, "max-object-bytes", 1<<20, "Budget of the serialized size of each object written for one app (VirtualService, DestinationRule, Service), in bytes, estimated from above with owner references; the newest branches, or releases not yet routed, beyond it wait (RouteBudgetExceeded). etcd refuses requests over 1.5 MiB. 0: no budget.")
	fs.IntVar(&f.routing.MaxRoutes, "max-routes", 1000, "Budget of HTTP routes in one app's VirtualService; the newest branches beyond it wait (RouteBudgetExceeded). 0: no budget.")
	fs.BoolVar(&f.pruneSuperseded, "prune-superseded", true, "Delete a superseded AppRelease once its routes, subset and Deployment are gone; false when GitOps owns the AppReleases.")
	fs.DurationVar(&f.supersededGrace, "superseded-grace", 10*time.Minute, "How long a release superseded as an older build is kept before it is pruned, so the pipeline that applied it can read why.")
	fs.DurationVar(&f.minWriteInterval, "min-write-interval", 500*time.Millisecond, "Shape an app's writes: a change that finds the app settled (its objects written and read back) goes out at once; so does one that changes no more than two releases' routing (a pipeline's step); others are a burst after 4 in a row (see --burst-max-hold; with it 0, paced this far apart). 0: every change at once.")
	fs.DurationVar(&f.burstMaxHold, "burst-max-hold", 4*time.Second, "In a burst (4 rebuilds in a row that each changed more than two releases, the app never settling), hold an app's changes until they pause for 2s, at most this long, and write them together. 0: bursts paced by --min-write-interval alone.")
	fs.DurationVar(&f.drainDelay, "drain-delay", 3*time.Second, "How long a subset (and its pods) stays after the last route to it left the VirtualService, so proxies have the new routes first.")
	fs.IntVar(&f.appConcurrency, "app-concurrency", 4, "How many apps are rebuilt at once (each app by one worker at a time): more suits an API server with cores to spare, as one app's slow writes then hold fewer others back.")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; 0 disables it.")
	fs.BoolVar(&f.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to clients the API server authenticates and authorizes (get on the non-resource URL /metrics); false serves plain HTTP to anyone.")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "", "Address Go's pprof endpoints bind to, for profiling; empty (the default) disables them.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	fs.Func("export-to", "Restrict which namespaces' proxies see each app's VirtualService to its own and these (comma-separated; include the ingress gateway pods' namespace and the namespaces that call the app's Service). Default: every namespace.", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns == "*" {
				f.routing.ExportTo = append(f.routing.ExportTo, ns)
			} else if ns != "" {
				if bad := validation.IsDNS1123Label(ns); len(bad) > 0 {
					return fmt.Errorf("namespace %q: %s", ns, strings.Join(bad, "; "))
				}
				f.routing.ExportTo = append(f.routing.ExportTo, ns)
			}
		}
		return nil
	})
	fs.Func("watch-namespaces", "Comma-separated namespaces to watch and write, with namespaced Roles instead of a ClusterRole (default: every namespace).", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				if bad := validation.IsDNS1123Label(ns); len(bad) > 0 {
					return fmt.Errorf("namespace %q: %s", ns, strings.Join(bad, "; "))
				}
				f.watchNamespaces = append(f.watchNamespaces, ns)
			}
		}
		return nil
	})
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "Elect a leader, so that only one of several replicas writes.")
	fs.StringVar(&f.leaderElectNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	zopts := &zap.Options{Development: false}
	zopts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	var errs []error
	switch f.routing.BaggageKey {
	case "":
		f.routing.BaggageKey = f.routing.BranchHeader
	case "-":
		f.routing.BaggageKey = ""
	}
	if k := f.routing.BaggageKey; k != "" && !isToken(k) {
		errs = append(errs, fmt.Errorf("--branch-baggage-key must be a W3C baggage key (an HTTP token), got %q", k))
	}
	if h := f.routing.ServedByHeader; h != "" && (!isToken(h) || strings.ToLower(h) != h || slices.Contains(reservedHeaders, h)) {
		errs = append(errs, fmt.Errorf("--served-by-header must be a lower-case HTTP header name Istio lets a route set (not %s), got %q",
			strings.Join(reservedHeaders, ", "), h))
	}
	if bad := validation.IsDNS1123Label(f.routing.MeshEnvironment); len(bad) > 0 {
		errs = append(errs, fmt.Errorf("--mesh-environment must be an environment name (a DNS label), got %q: %s",
			f.routing.MeshEnvironment, strings.Join(bad, "; ")))
	}
	if f.routing.BranchHeader == "" || strings.ToLower(f.routing.BranchHeader) != f.routing.BranchHeader {
		errs = append(errs, fmt.Errorf("--branch-header must be a lower-case HTTP header name, got %q", f.routing.BranchHeader))
	}
	if ns, name, ok := strings.Cut(f.routing.Gateway, "/"); !ok || ns == "" || name == "" {
		errs = append(errs, fmt.Errorf("--gateway must be namespace/name, got %q", f.routing.Gateway))
	}
	if bad := validation.IsDNS1123Subdomain(f.routing.ClusterDomain); len(bad) > 0 {
		errs = append(errs, fmt.Errorf("--cluster-domain must be a DNS subdomain, got %q: %s", f.routing.ClusterDomain, strings.Join(bad, "; ")))
	}
	if f.routing.MaxBytes < 0 || f.routing.MaxBytes > 3<<19 {
		errs = append(errs, fmt.Errorf("--max-object-bytes must be between 0 and 1572864 (etcd's request limit), got %d", f.routing.MaxBytes))
	}
	if f.routing.MaxRoutes < 0 {
		errs = append(errs, fmt.Errorf("--max-routes must not be negative, got %d", f.routing.MaxRoutes))
	}
	if f.appConcurrency < 1 {
		errs = append(errs, fmt.Errorf("--app-concurrency must be at least 1, got %d", f.appConcurrency))
	}
	if f.routing.KeepPrevious < 0 {
		errs = append(errs, fmt.Errorf("--keep-previous must not be negative, got %d", f.routing.KeepPrevious))
	}
	return f, zopts, errors.Join(errs...)
}

// reservedHeaders are response headers a route may not set (Istio's
// validation refuses host; the others are Envoy's to manage).
var reservedHeaders = []string{"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"}

// isToken: s is an HTTP token (RFC 9110 section 5.6.2), what header names
// and W3C baggage keys are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 0x7e || c <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// newScheme holds the kinds the operator reads, writes or records events
// about through the manager's client: Namespaces and Services (core/v1),
// Deployments (apps/v1), events/v1 Events, Istio's networking/v1 and
// AppReleases. Not client-go's whole scheme (some 50 groups): a type map per
// group is heap the operator never uses (client-go's own global scheme holds
// them all already, for its typed clients).
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(appsv1.AddToScheme(s))
	utilruntime.Must(eventsv1.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

func run() error {
	f, zopts, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(zopts)))
	log := ctrl.Log.WithName("setup")

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  newScheme(),
		Metrics:                 metricsOptions(f),
		HealthProbeBindAddress:  f.probeAddr,
		PprofBindAddress:        f.pprofAddr,
		LeaderElection:          f.leaderElect,
		LeaderElectionID:        "switchyard.delivery.switchyard.dev",
		LeaderElectionNamespace: f.leaderElectNamespace,
		// Step down promptly on shutdown, so the next leader takes over at once.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controller.CacheOptions(f.config()),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := setup(context.Background(), mgr, f); err != nil {
		return err
	}
	metrics.Register(mgr.GetCache())
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("Starting manager", "branchHeader", f.routing.BranchHeader, "branchBaggageKey", f.routing.BaggageKey, "servedByHeader", f.routing.ServedByHeader, "gateway", f.routing.Gateway,
		"meshEnvironment", f.routing.MeshEnvironment, "keepPrevious", f.routing.KeepPrevious, "pruneSuperseded", f.pruneSuperseded,
		"watchNamespaces", f.watchNamespaces)
	return mgr.Start(ctrl.SetupSignalHandler())
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions serve metrics as kubebuilder's scaffold does: over HTTPS,
// each request's bearer token reviewed by the API server (TokenReview) and
// its right to get /metrics checked (SubjectAccessReview), so release and app
// names are not read by anyone who reaches the port (metrics.Authorized,
// the scaffold's filter without its 20 MB of API server code). The certificate is
// self-signed unless one is mounted.
func metricsOptions(f *flags) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: f.metricsAddr, SecureServing: f.metricsSecure}
	if f.metricsSecure {
		opts.FilterProvider = metrics.Authorized
	}
	return opts
}

// setup registers the indexes and both controllers.
func setup(ctx context.Context, mgr ctrl.Manager, f *flags) error {
	return controller.Setup(ctx, mgr, f.routing, f.config())
}

// config is the controllers' Config from the flags: the manager's cache
// and the controllers' take the watched namespaces from this one place.
func (f *flags) config() controller.Config {
	return controller.Config{Namespaces: f.watchNamespaces, PruneSuperseded: f.pruneSuperseded, SupersededGrace: f.supersededGrace,
		MinWriteInterval: f.minWriteInterval, BurstMaxHold: f.burstMaxHold, DrainDelay: f.drainDelay, AppConcurrency: f.appConcurrency}
}
