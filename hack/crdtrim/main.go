// Command crdtrim finishes the generated AppRelease CRD's spec.template, which
// is Kubernetes' own PodTemplateSpec schema: it drops the subtree's field
// descriptions (kubectl explain pod.spec documents them; they would make up
// most of the CRD, over 600 KB, and a client-side kubectl apply refuses any
// object over 256 KB in its last-applied annotation), and bounds every list,
// map and string in it (maxItems, maxProperties, maxLength), so a template's
// size is bounded at apply time, with a message naming the field.
//
// Usage: go run ./hack/crdtrim FILE...
package main

import (
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := trim(path); err != nil {
			fmt.Fprintf(os.Stderr, "crdtrim: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func trim(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(b, crd); err != nil {
		return err
	}
	for i := range crd.Spec.Versions {
		v := &crd.Spec.Versions[i]
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		spec, ok := v.Schema.OpenAPIV3Schema.Properties["spec"]
		if !ok {
			continue
		}
		if tmpl, ok := spec.Properties["template"]; ok {
			for name, p := range tmpl.Properties {
				dropDescriptions(&p)
				bound(&p)
				tmpl.Properties[name] = p
			}
			spec.Properties["template"] = tmpl
			v.Schema.OpenAPIV3Schema.Properties["spec"] = spec
		}
	}
	j, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	// As controller-gen writes it: no status, no creationTimestamp.
	var m map[string]any
	if err := yaml.Unmarshal(j, &m); err != nil {
		return err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

// Bounds of every list, map and string in a template: far above what a pod
// needs (a pod's annotations may hold 256 KiB in all, a container's env a few
// dozen entries), so only runaway input is refused.
const (
	maxItems      = 256
	maxProperties = 256
	maxLength     = 64 * 1024
)

// bound sets the bounds on a schema and everything below it, where none is set.
func bound(p *apiextensionsv1.JSONSchemaProps) {
	switch {
	case p.Type == "array" && p.MaxItems == nil:
		p.MaxItems = ptr(int64(maxItems))
	case p.Type == "object" && p.AdditionalProperties != nil && p.MaxProperties == nil:
		p.MaxProperties = ptr(int64(maxProperties))
	case p.Type == "string" && p.MaxLength == nil && p.Format == "":
		p.MaxLength = ptr(int64(maxLength))
	}
	for k, c := range p.Properties {
		bound(&c)
		p.Properties[k] = c
	}
	if p.Items != nil && p.Items.Schema != nil {
		bound(p.Items.Schema)
	}
	if p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil {
		bound(p.AdditionalProperties.Schema)
	}
}

func ptr[T any](v T) *T { return &v }

func dropDescriptions(p *apiextensionsv1.JSONSchemaProps) {
	p.Description = ""
	for k, c := range p.Properties {
		dropDescriptions(&c)
		p.Properties[k] = c
	}
	if p.Items != nil && p.Items.Schema != nil {
		dropDescriptions(p.Items.Schema)
	}
	if p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil {
		dropDescriptions(p.AdditionalProperties.Schema)
	}
	for i := range p.AnyOf {
		dropDescriptions(&p.AnyOf[i])
	}
}
