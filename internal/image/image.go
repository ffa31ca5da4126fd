// Package image builds the operator's container image without a container
// engine: one layer holding the static manager binary on an empty base, run
// as a non-root user, in an OCI image layout (what `docker build` of the
// Dockerfile makes, minus the distroless base's files the manager never
// reads). It uses go-containerregistry, the library ko and crane build
// images with.
package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// Entrypoint is the manager's path in the image.
	Entrypoint = "/manager"
	// User is the image's user, uid:gid: distroless's nonroot.
	User = "65532:65532"
)

// created is the images' creation time: fixed, so that the same binary
// makes the same image, byte for byte.
var created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Build makes the image of a static linux manager binary for platform
// (for example "linux/amd64").
func Build(binary, platform string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(Entrypoint, "/"), Mode: 0o555, Size: int64(len(bin)),
		Typeflag: tar.TypeReg, ModTime: created}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = goos, goarch, v1.Time{Time: created}
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "switchyard",
		"org.opencontainers.image.source": "https://github.com/switchyard-dev/switchyard"}
	return mutate.ConfigFile(img, cf)
}

// Write stores the image in an OCI image layout at dir (replacing it),
// tagged ref (org.opencontainers.image.ref.name), for `crane push`,
// `skopeo copy oci:DIR` or a registry's import.
func Write(img v1.Image, dir, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}

// Check holds what the chart's pod and a restricted Pod Security Standard
// need of the image: a non-root numeric user, the manager as entrypoint, and
// nothing else in it (no shell, no package manager).
func Check(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	var errs []error
	if uid, _, _ := strings.Cut(cf.Config.User, ":"); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		errs = append(errs, fmt.Errorf("user %q: want a numeric non-root uid", cf.Config.User))
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != Entrypoint {
		errs = append(errs, fmt.Errorf("entrypoint %q: want [%s]", cf.Config.Entrypoint, Entrypoint))
	}
	files, err := Files(img)
	if err != nil {
		return err
	}
	for name := range files {
		if "/"+name != Entrypoint {
			errs = append(errs, fmt.Errorf("the image holds %s: want the manager alone (no shell)", name))
		}
	}
	if _, ok := files[strings.TrimPrefix(Entrypoint, "/")]; !ok {
		errs = append(errs, fmt.Errorf("the image has no %s", Entrypoint))
	}
	return errors.Join(errs...)
}

// Files are the regular files of the image's flattened file system, by path
// (without the leading slash), with their mode.
func Files(img v1.Image) (map[string]int64, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			out[path.Clean(strings.TrimPrefix(h.Name, "/"))] = h.Mode
		}
	}
}

// Extract copies the file at name ("/manager") out of the image to dst,
// executable.
func Extract(img v1.Image, name, dst string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("the image has no %s", name)
		}
		if err != nil {
			return err
		}
		if path.Clean("/"+strings.TrimPrefix(h.Name, "/")) != name {
			continue
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}
