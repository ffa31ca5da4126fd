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
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "smaller sizes and fewer samples (a smoke run)")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "where to write the report")
	flag.StringVar(&o.only, "only", "", "run only these steps (comma-separated names, as printed: builder, sizes, todays-way, apply-to-routed, burst, sequential, crowded, idle, scale)")
	flag.StringVar(&o.sizes, "sizes", "", "apply-to-routed's app sizes, as size:samples,... (default 1:20,100:20,1000:10)")
	flag.IntVar(&o.apps, "apps", 0, "scale's number of apps of 100 releases (default 100; -quick 10)")
	flag.BoolVar(&o.verbose, "v", false, "print each apply-to-routed sample's trace")
	flag.IntVar(&o.crowdedBig, "crowded-big", 0, "crowded's busy app's live releases (default 250; -quick 100; 1,000 needs --operator-args=--max-object-bytes=1572864)")
	flag.StringVar(&o.operatorArgs, "operator-args", "", "extra flags for the operator (space-separated)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	quick, verbose                 bool
	apps, crowdedBig               int
	out, only, sizes, operatorArgs string
}

func run(ctx context.Context, o options) error {
	r := &report{started: time.Now(), quick: o.quick, verbose: o.verbose}
	b, err := newBench(ctx, strings.Fields(o.operatorArgs))
	if err != nil {
		return err
	}
	defer b.close()

	sizes := []int{1, 100, 1000}
	samples := map[int]int{1: 20, 100: 20, 1000: 10}
	burst, lost, apps := 200, 50, 100
	// crowded's busy app: 250 live branches and a burst of 200 stay within
	// one app's default budgets (some 499 branches, two rules each).
	seqSizes, seqSamples, crowdedBig, crowdedSamples := []int{1, 100}, 20, 250, 10
	if o.quick {
		sizes, samples, burst, lost, apps = []int{1, 20}, map[int]int{1: 5, 20: 5}, 20, 10, 10
		seqSizes, seqSamples, crowdedBig, crowdedSamples = []int{1, 20}, 8, 100, 5
	}
	if o.apps > 0 {
		apps = o.apps
	}
	if o.crowdedBig > 0 {
		crowdedBig = o.crowdedBig
	}
	if o.sizes != "" {
		sizes, samples = nil, map[int]int{}
		for _, f := range strings.Split(o.sizes, ",") {
			var size, n int
			if _, err := fmt.Sscanf(f, "%d:%d", &size, &n); err != nil {
				return fmt.Errorf("-sizes %q: want size:samples, comma-separated", o.sizes)
			}
			sizes, samples[size] = append(sizes, size), n
		}
	}
	steps := []struct {
		name, title string
		do          func() error
	}{
		{"builder", "pure builder", func() error { return r.builder(ctx) }},
		{"sizes", "sizes", func() error { return r.sizes() }},
		{"todays-way", "today's way vs Switchyard", func() error { return r.todaysWay(ctx, b, lost) }},
		{"apply-to-routed", "apply-to-routed", func() error { return r.applyToRouted(ctx, b, sizes, samples) }},
		{"burst", "burst", func() error { return r.burst(ctx, b, burst) }},
		{"sequential", "sequential pipeline", func() error { return r.sequential(ctx, b, seqSizes, seqSamples) }},
		{"crowded", "one app never delays another", func() error { return r.crowded(ctx, b, crowdedBig, burst, crowdedSamples) }},
		{"idle", "idle resync and memory", func() error { return r.idle(ctx, b) }},
		{"scale", fmt.Sprintf("scale: %d apps of 100 releases (about 7 minutes per 10,000 on 2 cores)", apps), func() error { return r.scale(ctx, b, apps, 100) }},
	}
	if o.only != "" {
		keep := strings.Split(o.only, ",")
		steps = slices.DeleteFunc(steps, func(s struct {
			name, title string
			do          func() error
		}) bool {
			return !slices.Contains(keep, s.name)
		})
		r.partial = true
	}
	for i, s := range steps {
		fmt.Printf("==> [%d/%d] %s\n", i+1, len(steps), s.title)
		start := time.Now()
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("    done in %s\n", time.Since(start).Round(time.Second))
	}
	text := r.render(b)
	fmt.Println(text)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(o.out, []byte(text), 0o644)
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
