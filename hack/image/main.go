// Command image builds the operator's container image without a container
// engine (internal/image): the static manager binary on an empty base, as
// a non-root user, into an OCI image layout. `make image` runs it; push the
// layout with `crane push bin/image IMG` or `skopeo copy oci:bin/image docker://IMG`.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/switchyard-dev/switchyard/internal/image"
)

func main() {
	out := flag.String("out", "bin/image", "the OCI image layout to write (replaced)")
	ref := flag.String("ref", "ghcr.io/switchyard-dev/switchyard:dev", "the reference the layout names the image by")
	platform := flag.String("platform", "linux/"+runtime.GOARCH, "the image's os/arch")
	flag.Parse()
	if err := run(*out, *ref, *platform); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(out, ref, platform string) error {
	tmp, err := os.MkdirTemp("", "switchyard-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "manager")
	goos, goarch, _ := strings.Cut(platform, "/")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build the manager: %w", err)
	}
	img, err := image.Build(bin, platform)
	if err != nil {
		return err
	}
	if err := image.Check(img); err != nil {
		return err
	}
	if err := image.Write(img, out, ref); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	size, err := img.Size()
	if err != nil {
		return err
	}
	fmt.Printf("%s (%s, %s) in %s: user %s, entrypoint %s, manifest %d bytes\n", ref, platform, digest, out, image.User, image.Entrypoint, size)
	return nil
}
