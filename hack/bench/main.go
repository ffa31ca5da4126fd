// Command bench is `make bench`: it measures Switchyard on the local cluster
// against the physical floor (one apply of a VirtualService and a
// DestinationRule of the app's size), and against today's way (pipelines
// editing the shared VirtualService themselves), and writes the table to
// docs/benchmarks.md. Every figure with a reference is a ratio measured side
// by side in the same run; every distribution is reported as p50/p99.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	quick := flag.Bool("quick", false, "smaller sizes and fewer samples (a smoke run)")
	out := flag.String("out", "docs/benchmarks.md", "where to write the report")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *quick, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, quick bool, out string) error {
	r := &report{started: time.Now(), quick: quick}
	b, err := newBench(ctx)
	if err != nil {
		return err
	}
	defer b.close()

	sizes := []int{1, 100, 1000}
	samples := map[int]int{1: 20, 100: 20, 1000: 10}
	burst, lost := 200, 50
	if quick {
		sizes, samples, burst, lost = []int{1, 20}, map[int]int{1: 5, 20: 5}, 20, 10
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"pure builder", func() error { return r.builder(ctx) }},
		{"sizes", func() error { return r.sizes() }},
		{"today's way vs Switchyard", func() error { return r.todaysWay(ctx, b, lost) }},
		{"apply-to-routed", func() error { return r.applyToRouted(ctx, b, sizes, samples) }},
		{"burst", func() error { return r.burst(ctx, b, burst) }},
		{"idle resync and memory", func() error { return r.idle(ctx, b) }},
	}
	for i, s := range steps {
		fmt.Printf("==> [%d/%d] %s\n", i+1, len(steps), s.name)
		start := time.Now()
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("    done in %s\n", time.Since(start).Round(time.Second))
	}
	text := r.render(b)
	fmt.Println(text)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(text), 0o644)
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s/%s, %s", runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
