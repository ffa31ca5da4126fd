package localcluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeKwokStages writes kwok's configuration: its own "fast" node and pod
// stages, read from the kwok module, with one change: a pod labelled
// UnreadyLabel is never made Ready.
func (c *Cluster) writeKwokStages() (string, error) {
	files := []string{"node/fast/node-initialize.yaml", "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"}
	var out bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(c.opts.KwokStageDir, f))
		if err != nil {
			return "", fmt.Errorf("read kwok stage: %w", err)
		}
		s := string(b)
		if strings.HasSuffix(f, "pod-ready.yaml") {
			const anchor = "  selector:\n    matchExpressions:\n"
			if !strings.Contains(s, anchor) {
				return "", fmt.Errorf("kwok's pod-ready stage has changed shape: no %q", anchor)
			}
			s = strings.Replace(s, anchor, anchor+"    - key: '.metadata.labels.\""+UnreadyLabel+"\"'\n      operator: 'DoesNotExist'\n", 1)
		}
		out.WriteString("---\n")
		out.WriteString(s)
		out.WriteString("\n")
	}
	path := filepath.Join(c.Dir, "kwok-stages.yaml")
	return path, os.WriteFile(path, out.Bytes(), 0o600)
}
