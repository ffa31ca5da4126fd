package localcluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeKwokStages writes kwok's configuration: its own "fast" node and pod
// stages, read from the kwok module, with two changes: a pod labelled
// UnreadyLabel is never made Ready, and a pod labelled FailLabel crash-loops
// (not Ready, its container waiting in CrashLoopBackOff) until the label goes,
// when it is Ready again: faults on demand, pod by pod.
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
			s = strings.Replace(s, anchor, anchor+"    - key: '.metadata.labels.\""+UnreadyLabel+"\"'\n      operator: 'DoesNotExist'\n"+
				"    - key: '.metadata.labels.\""+FailLabel+"\"'\n      operator: 'DoesNotExist'\n", 1)
		}
		out.WriteString("---\n")
		out.WriteString(s)
		out.WriteString("\n")
	}
	out.WriteString(faultStages)
	path := filepath.Join(c.Dir, "kwok-stages.yaml")
	return path, os.WriteFile(path, out.Bytes(), 0o600)
}

// faultStages make a pod labelled FailLabel crash-loop, and recover once the
// label is removed.
var faultStages = `---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-crash-loop
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.metadata.labels."` + FailLabel + `"'
      operator: 'Exists'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'False'
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Running
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 3
        state:
          waiting:
            reason: CrashLoopBackOff
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-recover
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.metadata.labels."` + FailLabel + `"'
      operator: 'DoesNotExist'
    - key: '.metadata.labels."` + UnreadyLabel + `"'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'False'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 3
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
`
