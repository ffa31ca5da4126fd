// Package localcluster runs a whole Kubernetes control plane on loopback for
// the demo and the end-to-end suite: etcd, kube-apiserver,
// kube-controller-manager (so Deployments become Available and the garbage
// collector runs), kube-scheduler, and kwok, whose simulated node runs pods
// that become Running and Ready. Every binary is built by
// hack/build-controlplane.sh from the Go module proxy. Ports are picked free,
// so two clusters can run side by side; Stop ends every process Start began.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// NodeName is the simulated node pods are scheduled to.
const NodeName = "kwok-node-0"

// UnreadyLabel on a pod keeps kwok from ever making it Ready: a release
// whose template carries it never becomes Available.
const UnreadyLabel = "switchyard-sim-unready"

// FailLabel on a pod makes kwok crash-loop it (not Ready, CrashLoopBackOff)
// until the label is removed, when it is Ready again: label running pods one
// by one for pods that fail in waves, or put it in a release's template for a
// release that never comes up.
const FailLabel = "switchyard-sim-fail"

// Options say where the cluster's binaries and files are.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.
	BinDir string
	// Dir receives the data, certificates, kubeconfig and logs; a temporary directory when empty.
	Dir string
	// CRDPaths are installed once the API server is up.
	CRDPaths []string
	// KwokStageDir holds kwok's "fast" stage YAMLs (kustomize/stage in the kwok module).
	KwokStageDir string
	// Progress receives a line per step; nil discards them.
	Progress io.Writer
}

// Cluster is a running local control plane.
type Cluster struct {
	// Dir holds the cluster's files; Kubeconfig is the admin kubeconfig in it.
	Dir        string
	Kubeconfig string
	// Config is the admin's client configuration.
	Config *rest.Config

	procs   []*process
	opts    Options
	etcdURL string
	apiURL  string
}

type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start brings a cluster up and returns once its node is Ready and its CRDs are installed.
func Start(ctx context.Context, opts Options) (_ *Cluster, retErr error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "switchyard-cluster-")
		if err != nil {
			return nil, err
		}
		opts.Dir = d
	}
	c := &Cluster{Dir: opts.Dir, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig"), opts: opts}
	defer func() {
		if retErr != nil {
			retErr = fmt.Errorf("%w (logs in %s)", retErr, filepath.Join(c.Dir, "logs"))
			_ = c.Stop()
		}
	}()
	for _, d := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	steps := []struct {
		what string
		do   func(context.Context, *pki) error
	}{
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager and kube-scheduler", c.startControllers},
		{"kwok and a simulated node", c.startKwok},
		{"CRDs", c.installCRDs},
	}
	p, err := writePKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("make certificates: %w", err)
	}
	for i, s := range steps {
		start := time.Now()
		fmt.Fprintf(opts.Progress, "[cluster %d/%d] starting %s...\n", i+1, len(steps), s.what)
		if err := s.do(ctx, p); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.what, err)
		}
		fmt.Fprintf(opts.Progress, "[cluster %d/%d] %s up in %s\n", i+1, len(steps), s.what, time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context, _ *pki) error {
	client, peer := freePort(), freePort()
	c.etcdURL = "http://127.0.0.1:" + client
	return c.spawn("etcd",
		"--name=etcd0", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+peer, "--initial-advertise-peer-urls=http://127.0.0.1:"+peer,
		"--initial-cluster=etcd0=http://127.0.0.1:"+peer, "--unsafe-no-fsync=true", "--log-level=warn",
		// The scale bench at 50,000 releases may outgrow etcd's default 2 GB.
		"--quota-backend-bytes=8589934592")
}

func (c *Cluster) startAPIServer(ctx context.Context, p *pki) error {
	port := freePort()
	c.apiURL = "https://127.0.0.1:" + port
	if err := c.spawn("kube-apiserver",
		"--etcd-servers="+c.etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port,
		"--tls-cert-file="+p.servingCert, "--tls-private-key-file="+p.servingKey, "--client-ca-file="+p.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		// A /16: the 50,000-release scale bench runs 500 apps, each with its
		// Service (a /24 has 254 addresses; the rest were refused).
		"--service-cluster-ip-range=10.0.0.0/16", "--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none", "--allow-privileged=true",
		"--cert-dir="+filepath.Join(c.Dir, "pki")); err != nil {
		return err
	}
	c.Config = &rest.Config{Host: c.apiURL, TLSClientConfig: rest.TLSClientConfig{
		CAData: p.caPEM, CertData: p.adminCertPEM, KeyData: p.adminKeyPEM}, QPS: 200, Burst: 400}
	if err := c.writeKubeconfig(p); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return c.waitFor(ctx, time.Minute, "kube-apiserver to be ready", func(ctx context.Context) (bool, error) {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
}

func (c *Cluster) writeKubeconfig(p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.apiURL, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, c.Kubeconfig)
}

func (c *Cluster) startControllers(ctx context.Context, p *pki) error {
	if err := c.spawn("kube-controller-manager",
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+freePort(),
		// The simulated node sends no heartbeats: no node lifecycle, so it is never tainted away.
		"--controllers=*,-nodelifecycle",
		"--service-account-private-key-file="+p.saKey, "--root-ca-file="+p.caFile,
		"--use-service-account-credentials=false", "--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10", "--concurrent-gc-syncs=20",
		// Upstream's client default (20 requests/s) paces 200 Deployments'
		// pods over half a minute; production clusters raise it too.
		"--kube-api-qps=100", "--kube-api-burst=200"); err != nil {
		return err
	}
	if err := c.spawn("kube-scheduler",
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+freePort(),
		"--kube-api-qps=100", "--kube-api-burst=200"); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	// The service-account controller making "default" shows the controller manager at work.
	return c.waitFor(ctx, time.Minute, "the controller manager to create the default ServiceAccount", func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (c *Cluster) startKwok(ctx context.Context, _ *pki) error {
	stages, err := c.writeKwokStages()
	if err != nil {
		return err
	}
	if err := c.spawn("kwok",
		"--kubeconfig="+c.Kubeconfig, "--config="+stages,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-ip=10.1.0.1", "--cidr=10.1.0.0/16", "--server-address=127.0.0.1:"+freePort()); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		Labels: map[string]string{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux",
			"kubernetes.io/arch": "amd64", "type": "kwok"},
	}}
	created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("50000")}
	created.Status.Capacity, created.Status.Allocatable = capacity, capacity
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set node capacity: %w", err)
	}
	// Once kwok reports the node Ready, lift the not-ready taint the API server
	// put on it at creation (the node lifecycle controller, which would, is off).
	return c.waitFor(ctx, time.Minute, "the simulated node to be Ready and schedulable", func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ready := false
		for _, cond := range n.Status.Conditions {
			ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
		}
		if !ready {
			return false, nil
		}
		if len(n.Spec.Taints) == 0 {
			return true, nil
		}
		n.Spec.Taints = nil
		_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			err = nil
		}
		return false, err
	})
}

func (c *Cluster) installCRDs(_ context.Context, _ *pki) error {
	if len(c.opts.CRDPaths) == 0 {
		return nil
	}
	_, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{Paths: c.opts.CRDPaths, ErrorIfPathMissing: true})
	return err
}

// spawn starts one component, its output going to logs/<name>.log.
func (c *Cluster) spawn(name string, args ...string) error {
	log, err := os.Create(filepath.Join(c.Dir, "logs", name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.opts.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	// The components die with the process that started them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("run %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); log.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// waitFor polls until cond holds, failing early when a component has exited.
func (c *Cluster) waitFor(ctx context.Context, timeout time.Duration, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, p := range c.procs {
			select {
			case <-p.done:
				return false, fmt.Errorf("%s exited: %v", p.name, p.err)
			default:
			}
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// Stop ends every process Start began, newest first: SIGTERM, then SIGKILL
// after ten seconds.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("kill %s: %w", p.name, err))
			}
			<-p.done
		}
	}
	c.procs = nil
	return errors.Join(errs...)
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free port on loopback: %v", err))
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
