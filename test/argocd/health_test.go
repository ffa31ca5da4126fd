// Package argocd tests the Argo CD health check shipped for AppReleases with
// gopher-lua, the Lua interpreter Argo CD itself runs health checks in.
package argocd

import (
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/switchyard-dev/switchyard/internal/testenv"
)

// health runs the check on an object as Argo CD does: the object as the global obj.
func health(t *testing.T, obj map[string]any) (status, message string) {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(testenv.Root(), "config", "argocd", "apprelease-health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(string(script)); err != nil {
		t.Fatalf("health check failed to run: %v", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health check returned %v, not a table", L.Get(-1))
	}
	return ret.RawGetString("status").String(), ret.RawGetString("message").String()
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

func release(generation, observed int, conditions ...map[string]any) map[string]any {
	conds := make([]any, 0, len(conditions))
	for _, c := range conditions {
		conds = append(conds, c)
	}
	obj := map[string]any{"metadata": map[string]any{"generation": generation}}
	if conditions != nil {
		obj["status"] = map[string]any{"observedGeneration": observed, "conditions": conds}
	}
	return obj
}

func cond(t, status, reason string) map[string]any {
	return map[string]any{"type": t, "status": status, "reason": reason, "message": reason + " message"}
}

func TestHealth(t *testing.T) {
	cases := []struct {
		name, status string
		obj          map[string]any
	}{
		{"no status yet", "Progressing", release(1, 0)},
		{"routed", "Healthy", release(2, 2, cond("Ready", "True", "Routed"))},
		{"standby rollback target", "Healthy", release(1, 1, cond("Ready", "True", "Standby"))},
		{"a spec not yet observed", "Progressing", release(3, 2, cond("Ready", "True", "Routed"))},
		{"waiting for its Deployment", "Progressing", release(1, 1, cond("Ready", "False", "Progressing"), cond("Reconciling", "True", "Progressing"))},
		{"a foreign VirtualService", "Degraded", release(1, 1, cond("Ready", "False", "ForeignObject"), cond("Stalled", "True", "ForeignObject"))},
		{"its Deployment failed", "Degraded", release(1, 1, cond("Ready", "False", "DeploymentFailed"), cond("Stalled", "True", "DeploymentFailed"))},
		{"superseded by a newer build", "Suspended", release(1, 1, cond("Ready", "False", "Superseded"), cond("Stalled", "True", "Superseded"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, msg := health(t, tc.obj)
			if status != tc.status {
				t.Errorf("status %q (%s), want %q", status, msg, tc.status)
			}
		})
	}
}
