package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// buildPlugin builds bin/kubectl-switchyard from the tree once per run,
// whichever spec asks first (specs run in random order).
var buildPlugin sync.Once

// plugin runs `kubectl switchyard ARGS` against the cluster; it returns the
// output and the exit code.
func plugin(args ...string) (string, int) {
	bin := filepath.Join(testenv.Root(), "bin", "kubectl-switchyard")
	buildPlugin.Do(func() {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kubectl-switchyard")
		build.Dir = testenv.Root()
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
	})
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	case err != nil:
		Fail("run kubectl-switchyard: " + err.Error())
	}
	return out.String(), 0
}

var _ = Describe("Out-of-order builds and kubectl switchyard", func() {
	It("never lets a late, older build of a branch replace the newer one, and the plugin says so at once", func() {
		ns := newNamespace()
		jp12 := func(build int) spec {
			return staging("shop:jp12").with("branch", "feature-jp12").with("build", build)
		}
		mustApply(ns, "shop-staging-1", staging("shop:s1"))
		By("two pipelines apply builds 7 and 6, in that order, 6 once 7 is live")
		mustApply(ns, "shop-jp12-7", jp12(7))
		// (Were build 6's pods up before build 7's, 6 would take the branch
		// until 7 is Available: it is the newest Available build then.)
		Eventually(state(ns, "shop-jp12-7")).Should(Equal("Live 100 True/Routed"))
		mustApply(ns, "shop-jp12-6", jp12(6))
		Eventually(state(ns, "shop-jp12-6")).Should(Equal("Superseded 0 False/OlderBuild"))
		Consistently(routes(ns), 2*time.Second).Should(ContainElement("branch-staging.feature-jp12: shop-jp12-7 100"))

		By("a retried pipeline re-applying build 7 unchanged changes and writes nothing")
		before := map[string]string{}
		for _, o := range []client.Object{releaseObj(ns, "shop-jp12-7"), &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app}}} {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), o)).To(Succeed())
			before[o.GetName()] = o.GetResourceVersion()
		}
		mustApply(ns, "shop-jp12-7", jp12(7))
		Consistently(func(g Gomega) map[string]string {
			after := map[string]string{}
			for _, o := range []client.Object{releaseObj(ns, "shop-jp12-7"), &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app}}} {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), o)).To(Succeed())
				after[o.GetName()] = o.GetResourceVersion()
			}
			return after
		}, 2*time.Second).Should(Equal(before))

		By("wait succeeds for build 7 and fails at once for build 6, saying why")
		out, code := plugin("wait", "shop-jp12-7", "-n", ns, "--timeout", "30s")
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("is Ready"))
		start := time.Now()
		out, code = plugin("wait", "shop-jp12-6", "-n", ns, "--timeout", "30s")
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("OlderBuild"))
		Expect(out).To(ContainSubstring("shop-jp12-7"))
		Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second), "wait ran into its timeout instead of failing at once")

		By("routes shows the table, and the refused build with its reason")
		out, code = plugin("routes", "shop", "-n", ns)
		Expect(code).To(Equal(0), out)
		Expect(out).To(MatchRegexp(regexp.QuoteMeta(nsHost(ns, "staging.shop.example.com")) + `\s+any\s+x-branch=feature-jp12 \(or baggage\)\s+shop-jp12-7\s+Live\s+100%\s+7`))
		Expect(out).To(MatchRegexp(`shop-jp12-6\s+Superseded\s+OlderBuild`))

		By("explain names the rule that serves a request and why the earlier ones did not")
		out, code = plugin("explain", "shop", "-n", ns, "--host", nsHost(ns, "staging.shop.example.com"))
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring(`branch-staging.feature-jp12 does not match: no header x-branch`))
		Expect(out).To(ContainSubstring("Served by rule env-staging"))
		Expect(out).To(MatchRegexp(`100%\s+shop-staging-1`))
		out, _ = plugin("explain", "shop", "-n", ns, "--host", nsHost(ns, "staging.shop.example.com"), "-H", "x-branch: feature-jp12", "-o", "json")
		Expect(out).To(ContainSubstring(`"rule": "branch-staging.feature-jp12"`))
	})
})
