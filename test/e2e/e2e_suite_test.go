// Package e2e drives the Switchyard binary on a local cluster that runs the
// real Kubernetes controllers (Deployments become Available, the garbage
// collector collects) through API calls alone, as CI pipelines and GitOps
// tools would.
package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/localcluster"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

var (
	ctx      context.Context
	cancel   context.CancelFunc
	cluster  *localcluster.Cluster
	k8s      client.Client
	manager  string
	operator *testenv.Operator
	// operatorKubeconfig authenticates as the Helm chart's ServiceAccount.
	operatorKubeconfig string
	metricsURL         string
	scheme             = runtime.NewScheme()
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Switchyard e2e")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter)))
	ctx, cancel = context.WithCancel(context.Background())
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	var err error
	cluster, err = testenv.StartCluster(ctx, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cluster.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	// The suite runs the manager the operator's image holds: built into an
	// OCI layout without a container engine, checked (non-root, the manager
	// alone) and taken back out of it.
	manager, err = testenv.ManagerFromImage(ctx)
	Expect(err).NotTo(HaveOccurred())

	By("installing the Helm chart, and running the operator as the chart's ServiceAccount")
	helmInstall("sy", chartNamespace)
	operatorKubeconfig = serviceAccountKubeconfig(chartNamespace, chartServiceAccount)
	startOperator()

	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
})

var _ = AfterSuite(func() {
	if operator != nil {
		operator.Stop()
	}
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
		if !CurrentSpecReport().Failed() && os.Getenv("KEEP_CLUSTER") == "" {
			_ = os.RemoveAll(cluster.Dir)
		} else {
			GinkgoWriter.Printf("cluster files and logs kept in %s\n", cluster.Dir)
		}
	}
	cancel()
})

// startOperator runs the manager binary, as the chart's ServiceAccount, with
// its metrics on a free port and extra flags.
func startOperator(args ...string) {
	operator, metricsURL = runOperator("switchyard.log", args...)
}

func runOperator(logName string, args ...string) (*testenv.Operator, string) {
	port := freePort()
	args = append([]string{"--metrics-bind-address=127.0.0.1:" + port}, args...)
	op, err := testenv.StartOperator(manager, operatorKubeconfig, filepath.Join(cluster.Dir, "logs", logName), args...)
	Expect(err).NotTo(HaveOccurred())
	return op, "https://127.0.0.1:" + port + "/metrics"
}

// restartOperator stops the running manager gracefully and starts it with other flags.
func restartOperator(args ...string) {
	operator.Stop()
	startOperator(args...)
}
