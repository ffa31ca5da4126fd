package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchyard-dev/switchyard/api/v1alpha1"
	"github.com/switchyard-dev/switchyard/internal/testenv"
)

const (
	chartNamespace      = "switchyard-system"
	chartServiceAccount = "sy-switchyard"
)

// helmInstall installs the chart as an operations team would. The chart's own
// pods run on the simulated node (kwok runs no containers); the suite runs the
// operator binary under the chart's ServiceAccount instead.
func helmInstall(release, namespace string, set ...string) {
	helm := filepath.Join(testenv.ControlPlaneDir(), "helm")
	args := append([]string{"install", release, filepath.Join(testenv.Root(), "charts", "switchyard"),
		"--namespace", namespace, "--create-namespace", "--kubeconfig", cluster.Kubeconfig,
		"--wait", "--timeout", "2m"}, set...)
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(cluster.Dir, "helm"),
		"HELM_CONFIG_HOME="+filepath.Join(cluster.Dir, "helm"), "HELM_DATA_HOME="+filepath.Join(cluster.Dir, "helm"))
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "helm install: %s", out)
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates with a token
// of the ServiceAccount, as the operator's pod would.
func serviceAccountKubeconfig(ns, name string) string {
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(24 * 3600))}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: cluster.Config.Host, CertificateAuthorityData: cluster.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	path := filepath.Join(cluster.Dir, ns+"-"+name+".kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

var _ = Describe("Operations", func() {
	It("runs with least privilege: the chart's role allows the workflows and refuses what they do not need", func() {
		cfg, err := clientcmd.BuildConfigFromFlags("", operatorKubeconfig)
		Expect(err).NotTo(HaveOccurred())
		sa, err := client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		ns := newNamespace()

		Expect(apierrors.IsForbidden(sa.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)))).To(BeTrue(), "Secrets")
		Expect(apierrors.IsForbidden(sa.Get(ctx, client.ObjectKey{Name: "kwok-node-0"}, &corev1.Node{}))).To(BeTrue(), "Nodes")
		vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"},
			Spec: networking.VirtualService{Hosts: []string{"other"}}}
		Expect(k8s.Create(ctx, vs)).To(Succeed())
		Expect(apierrors.IsForbidden(sa.Update(ctx, vs))).To(BeTrue(), "update of a VirtualService (it only applies)")
		Expect(apierrors.IsForbidden(sa.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}}))).To(BeTrue(), "ConfigMaps")

		By("while every workflow in this suite runs under the same identity: the chart's ServiceAccount, with no wildcard right")
		cs := kubernetes.NewForConfigOrDie(cfg)
		who, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(who.Status.UserInfo.Username).To(Equal("system:serviceaccount:" + chartNamespace + ":" + chartServiceAccount))
		rules, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
			Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, r := range rules.Status.ResourceRules {
			Expect(r.Verbs).NotTo(ContainElement("*"), "%+v", r)
			Expect(r.Resources).NotTo(ContainElement("*"), "%+v", r)
		}
	})

	It("serves its domain metrics only to clients allowed to get /metrics", func() {
		ns := newNamespace()
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))

		By("refusing an anonymous scrape, and one by an identity without the chart's metrics-reader role")
		// The operator may have just been restarted by another spec: its
		// metrics endpoint listens a moment after it starts reconciling.
		Eventually(func() error {
			resp, err := get(metricsURL, "")
			if err == nil {
				resp.Body.Close()
			}
			return err
		}).Should(Succeed())
		Expect(scrapeStatus(metricsURL, "")).To(Equal(http.StatusUnauthorized))
		Expect(scrapeStatus(metricsURL, tokenOf("stranger", ""))).To(Equal(http.StatusForbidden))

		By("serving Prometheus's ServiceAccount, bound to the chart's metrics-reader ClusterRole")
		reader := tokenOf("prometheus", chartServiceAccount+"-metrics-reader") // the chart's full name
		Eventually(func(g Gomega) {
			families := scrape(g, metricsURL, reader)
			g.Expect(value(families, "switchyard_releases", map[string]string{"namespace": ns, "app": app, "environment": "production", "phase": "Live"})).To(BeEquivalentTo(1))
			g.Expect(value(families, "switchyard_object_writes_total", map[string]string{"kind": "VirtualService", "operation": "apply"})).To(BeNumerically(">=", 1))
			// The whole spec's size, as the API server holds it (the cache
			// holds a compact form).
			vs := &networkingv1.VirtualService{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app}, vs)).To(Succeed())
			whole, err := json.Marshal(&vs.Spec)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(value(families, "switchyard_virtualservice_bytes", map[string]string{"namespace": ns, "app": app})).To(BeEquivalentTo(len(whole)))
			g.Expect(value(families, "switchyard_route_rebuilds_total", map[string]string{"result": "success"})).To(BeNumerically(">=", 1))
			g.Expect(families).To(HaveKey("switchyard_route_rebuild_duration_seconds"))
			g.Expect(families).To(HaveKey("controller_runtime_reconcile_total"))
		}).Should(Succeed())
	})
})

var _ = Describe("Leader election", Ordered, func() {
	var a, b *testenv.Operator
	AfterAll(func() {
		for _, o := range []*testenv.Operator{a, b} {
			if o != nil {
				o.Stop()
			}
		}
		startOperator()
	})

	It("lets one of two managers write, and the other take over when it stops", func() {
		operator.Stop()
		args := []string{"--leader-elect", "--leader-election-namespace=" + chartNamespace}
		a, _ = runOperator("leader-a.log", args...)
		time.Sleep(time.Second)
		b, _ = runOperator("leader-b.log", args...)
		leader := func(g Gomega) string {
			l := &coordinationv1.Lease{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: "switchyard.delivery.switchyard.dev"}, l)).To(Succeed())
			return ptr.Deref(l.Spec.HolderIdentity, "")
		}
		Eventually(leader).ShouldNot(BeEmpty())
		first := leader(Default)

		ns := newNamespace()
		mustApply(ns, "shop-v1", prod("shop:v1"))
		Eventually(state(ns, "shop-v1")).Should(Equal("Live 100 True/Routed"))
		writerA, writerB := wrote(a), wrote(b)
		Expect(writerA).NotTo(Equal(writerB), "exactly one manager writes (a: %v, b: %v)", writerA, writerB)

		By("stopping the leader: the other takes over")
		if writerA {
			a.Stop()
			a = nil
		} else {
			b.Stop()
			b = nil
		}
		Eventually(leader).ShouldNot(Equal(first))
		mustApply(ns, "shop-v2", prod("shop:v2"))
		Eventually(state(ns, "shop-v2")).Should(Equal("Live 100 True/Routed"))
	})
})

// wrote tells whether a manager's log shows it applied anything.
func wrote(o *testenv.Operator) bool {
	b, err := os.ReadFile(o.Log)
	Expect(err).NotTo(HaveOccurred())
	return bytes.Contains(b, []byte(`"Applied`))
}

// metricsClient trusts the operator's self-signed serving certificate (on loopback).
var metricsClient = &http.Client{Timeout: 10 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback, self-signed

// get is a GET of the metrics endpoint with a bearer token ("" for none).
func get(url, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return metricsClient.Do(req)
}

// scrapeStatus is the HTTP status of a scrape with a bearer token.
func scrapeStatus(url, token string) int {
	resp, err := get(url, token)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	return resp.StatusCode
}

// tokenOf makes a ServiceAccount in the chart's namespace, bound to a
// ClusterRole when one is named, and returns a token of it.
func tokenOf(name, clusterRole string) string {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: chartNamespace}}
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, sa))).To(Succeed())
	if clusterRole != "" {
		Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + clusterRole},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: chartNamespace}}}))).To(Succeed())
	}
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	tr, err := cs.CoreV1().ServiceAccounts(chartNamespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

func scrape(g Gomega, url, token string) map[string]*dto.MetricFamily {
	resp, err := get(url, token)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return families
}

// value is the value of the series of a family whose labels include want.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := families[name]
	if !ok {
		return -1
	}
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	return -1
}

var _ = Describe("An install that watches listed namespaces only", Ordered, func() {
	const scopedNamespace, scopedRelease = "switchyard-scoped", "scoped"
	var watched, other, kubeconfig string
	BeforeAll(func() {
		watched, other = newNamespace(), newNamespace()
		helmInstall(scopedRelease, scopedNamespace, "--set", "watchNamespaces={"+watched+"}",
			// The cluster's one admission policy came with the first install.
			"--set", "admissionPolicy.enabled=false")
		kubeconfig = serviceAccountKubeconfig(scopedNamespace, scopedRelease+"-switchyard")
		operator.Stop()
		scoped, err := testenv.StartOperator(manager, kubeconfig, filepath.Join(cluster.Dir, "logs", "scoped.log"),
			"--watch-namespaces="+watched, "--leader-elect", "--leader-election-namespace="+scopedNamespace)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			scoped.Stop()
			startOperator()
		})
	})

	It("routes the releases of its namespaces, touches no other, and holds no right beyond them", func() {
		mustApply(watched, "shop-v1", prod("shop:v1"))
		Eventually(state(watched, "shop-v1")).Should(Equal("Live 100 True/Routed"))

		By("a release in a namespace it does not watch is left alone")
		mustApply(other, "shop-v1", prod("shop:v1"))
		Consistently(func(g Gomega) []string {
			r := &v1alpha1.AppRelease{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: other, Name: "shop-v1"}, r)).To(Succeed())
			return r.Finalizers
		}, 3*time.Second).Should(BeEmpty())

		By("its identity has namespaced Roles only")
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		sa, err := client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		Expect(sa.List(ctx, &v1alpha1.AppReleaseList{}, client.InNamespace(watched))).To(Succeed())
		Expect(apierrors.IsForbidden(sa.List(ctx, &v1alpha1.AppReleaseList{}, client.InNamespace(other)))).To(BeTrue(), "another namespace")
		Expect(apierrors.IsForbidden(sa.List(ctx, &v1alpha1.AppReleaseList{}))).To(BeTrue(), "every namespace")
	})
})
