package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/switchyard-dev/switchyard/internal/image"
	"github.com/switchyard-dev/switchyard/internal/localcluster"
)

// KwokVersion is the kwok whose stages and binary the local cluster uses.
const KwokVersion = "v0.8.0"

// StartCluster builds what is missing (the control plane, once, into bin/)
// and starts a local cluster with Switchyard's and Istio's CRDs.
func StartCluster(ctx context.Context, progress io.Writer) (*localcluster.Cluster, error) {
	build := exec.CommandContext(ctx, filepath.Join(Root(), "hack", "build-controlplane.sh"))
	build.Stdout, build.Stderr = progress, progress
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build the control plane: %w", err)
	}
	crds, err := CRDPaths()
	if err != nil {
		return nil, err
	}
	stages, err := kwokStageDir(ctx)
	if err != nil {
		return nil, err
	}
	return localcluster.Start(ctx, localcluster.Options{BinDir: ControlPlaneDir(), CRDPaths: crds,
		KwokStageDir: stages, Progress: progress})
}

func kwokStageDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/kwok@"+KwokVersion).Output()
	if err != nil {
		return "", fmt.Errorf("download the kwok module for its stages: %w", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", err
	}
	return filepath.Join(m.Dir, "kustomize", "stage"), nil
}

// BuildManager builds the operator's binary into bin/manager.
func BuildManager(ctx context.Context) (string, error) {
	bin := filepath.Join(Root(), "bin", "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd")
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the manager: %w\n%s", err, out)
	}
	return bin, nil
}

// ManagerFromImage builds the operator's image as `make image` does
// (internal/image: the static binary, non-root, nothing else), checks it,
// and returns the manager binary taken back out of it, for a suite to run
// what the image runs.
func ManagerFromImage(ctx context.Context) (string, error) {
	dir := filepath.Join(Root(), "bin")
	bin := filepath.Join(dir, "manager-static")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd")
	cmd.Dir, cmd.Env = Root(), append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the manager: %w\n%s", err, out)
	}
	img, err := image.Build(bin, "linux/"+runtime.GOARCH)
	if err != nil {
		return "", err
	}
	if err := image.Check(img); err != nil {
		return "", fmt.Errorf("the operator's image: %w", err)
	}
	if err := image.Write(img, filepath.Join(dir, "image"), "ghcr.io/switchyard-dev/switchyard:dev"); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "manager-from-image")
	return out, image.Extract(img, image.Entrypoint, out)
}

// Operator is a running manager process.
type Operator struct {
	cmd  *exec.Cmd
	done chan struct{}
	// Log is the file its output goes to.
	Log string
}

// StartOperator runs the manager binary against a kubeconfig with extra flags.
func StartOperator(bin, kubeconfig, logFile string, args ...string) (*Operator, error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	args = append([]string{"--kubeconfig=" + kubeconfig, "--metrics-bind-address=0", "--health-probe-bind-address=0"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	o := &Operator{cmd: cmd, done: make(chan struct{}), Log: logFile}
	go func() { _ = cmd.Wait(); log.Close(); close(o.done) }()
	return o, nil
}

// Stop ends the operator gracefully (SIGTERM), killing it after ten seconds.
func (o *Operator) Stop() {
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.done:
	case <-time.After(10 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.done
	}
}

// Running tells whether the operator's process is still running.
func (o *Operator) Running() bool {
	select {
	case <-o.done:
		return false
	default:
		return true
	}
}

// Pid is the operator's process id.
func (o *Operator) Pid() int { return o.cmd.Process.Pid }

// Kill ends the operator at once, as a crash would.
func (o *Operator) Kill() {
	_ = o.cmd.Process.Kill()
	<-o.done
}
