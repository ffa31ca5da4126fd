package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuildWriteCheckExtract: an image built from a file is the same image
// twice, passes Check, survives an OCI layout, and gives the file back.
func TestBuildWriteCheckExtract(t *testing.T) {
	dir, bin, img := buildFrom(t, "\x7fELF pretend")
	again, _ := Build(bin, "linux/amd64")
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("the same binary made two images: %s, %s", d1, d2)
	}
	if err := Check(img); err != nil {
		t.Fatal(err)
	}
	if err := Write(img, filepath.Join(dir, "oci"), "x:dev"); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := p.Image(d1)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "back")
	if err := Extract(back, Entrypoint, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "\x7fELF pretend" {
		t.Errorf("extracted %q", b)
	}
}

// TestCheckRefuses a root user, another entrypoint and a shell in the image.
func TestCheckRefuses(t *testing.T) {
	_, _, img := buildFrom(t, "m")
	cf, _ := img.ConfigFile()
	root := cf.DeepCopy()
	root.Config.User = "0"
	other := cf.DeepCopy()
	other.Config.Entrypoint = []string{"/bin/sh", "-c", "/manager"}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "bin/sh", Mode: 0o755, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("sh"))
	_ = tw.Close()
	shell, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	withShell, err := mutate.AppendLayers(img, shell)
	if err != nil {
		t.Fatal(err)
	}
	rootImg, _ := mutate.ConfigFile(img, root)
	otherImg, _ := mutate.ConfigFile(img, other)
	for want, bad := range map[string]v1.Image{"non-root": rootImg, "entrypoint": otherImg, "no shell": withShell} {
		if err := Check(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check gives %v, want an error saying %q", err, want)
		}
	}
}

// buildFrom writes a binary of the given content into a temporary directory
// and builds an image of it: the directory, the binary's path, the image.
func buildFrom(t *testing.T, content string) (dir, bin string, img v1.Image) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "manager")
	if err := os.WriteFile(bin, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := Build(bin, "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	return dir, bin, img
}
