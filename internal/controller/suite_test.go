package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/controller"
	"github.com/switchyard-dev/switchyard/internal/routing"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

var (
	env *envtest.Environment
	cfg *rest.Config
	k8s client.Client
	// cached is the manager's client, reading through its cache and indexes.
	cached client.Client
	// operatorCache is the manager's cache (its informers' indexes).
	operatorCache cache.Cache
	scheme        = runtime.NewScheme()
	ctx           context.Context
	cancel        context.CancelFunc
	routeOpts     = routing.Options{BranchHeader: "x-branch", BaggageKey: "x-branch", Gateway: "istio-system/ingressgateway",
		MeshEnvironment: "production", KeepPrevious: 1, MaxRoutes: 80}
	// operatorConfig runs the suite with a drain delay, write pacing and a
	// burst hold on, as the operator runs by default (shorter, for time).
	operatorConfig = controller.Config{PruneSuperseded: true, SupersededGrace: time.Hour,
		DrainDelay: drainDelay, MinWriteInterval: 100 * time.Millisecond, BurstMaxHold: time.Second}
)

const (
	drainDelay = 2 * time.Second
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.TODO())
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))

	crds, err := testenv.CRDPaths()
	Expect(err).NotTo(HaveOccurred())
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = testenv.ControlPlaneDir()
	}
	Expect(filepath.Join(assets, "kube-apiserver")).To(BeAnExistingFile(),
		"the control plane is not built: run 'make test' or hack/build-controlplane.sh")
	env = &envtest.Environment{
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	cfg, err = env.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controller.CacheOptions(operatorConfig),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(controller.Setup(ctx, mgr, routeOpts, operatorConfig)).To(Succeed())
	cached = mgr.GetClient()
	operatorCache = mgr.GetCache()
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
})

var _ = AfterSuite(func() {
	cancel()
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})
