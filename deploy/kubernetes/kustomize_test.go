package kubernetes_test

// Loading: the kustomizations (a small, strict subset of kustomize: resources,
// namespace, patches, images) and every manifest they list, decoded
// strictly into the k8s.io/api types. There is no Kubernetes API server or
// kustomize binary here; this is what `kubectl apply -k` would be given.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use. Decoding is strict, so a field kustomize knows but this test does
// not (a generator, a replacement, ...) is an error here rather than
// something the checks silently never see.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path   string `json:"path"`
		Target *struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target,omitempty"`
	} `json:"patches,omitempty"`
	// Images is what `kustomize edit set image ebbflow=ebbflow:TAG` writes.
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// object is one decoded manifest document.
type object struct {
	src  string // file (relative to deploy/kubernetes) and document number
	kind string // "apps/v1 Deployment"
	v    any    // *appsv1.Deployment, *corev1.Service, ...
}

func (o *object) meta() *metav1.ObjectMeta {
	switch v := o.v.(type) {
	case *corev1.Namespace:
		return &v.ObjectMeta
	case *corev1.ConfigMap:
		return &v.ObjectMeta
	case *corev1.Secret:
		return &v.ObjectMeta
	case *corev1.Service:
		return &v.ObjectMeta
	case *appsv1.Deployment:
		return &v.ObjectMeta
	case *appsv1.StatefulSet:
		return &v.ObjectMeta
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &v.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &v.ObjectMeta
	}
	panic(fmt.Sprintf("object %T", o.v))
}

func (o *object) String() string { return o.src + " (" + o.kind + " " + o.meta().Name + ")" }

// knownKinds are the API types a manifest may have.
var knownKinds = map[string]func() any{
	"v1 Namespace":                           func() any { return &corev1.Namespace{} },
	"v1 ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1 Secret":                              func() any { return &corev1.Secret{} },
	"v1 Service":                             func() any { return &corev1.Service{} },
	"apps/v1 Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1 StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1 PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
}

// bundle is what one kustomization builds.
type bundle struct {
	dir       string // relative to deploy/kubernetes ("." for the root)
	namespace string
	objects   []*object
	files     map[string]bool // files read, relative to the root, kustomization.yaml files included
}

// strictDecode turns YAML into JSON (duplicate keys are an error) and
// decodes it into v case-sensitively, refusing unknown and duplicate fields
// — the strict field validation of the API server.
func strictDecode(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	return strictDecodeJSON(j, v)
}

func strictDecodeJSON(j []byte, v any) error {
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// documents splits a multi-document YAML file, dropping empty documents.
func documents(b []byte) ([][]byte, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue
		}
		out = append(out, doc)
	}
}

// decodeObject decodes one manifest document into its API type.
func decodeObject(src string, doc []byte) (*object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	kind := tm.APIVersion + " " + tm.Kind
	mk, ok := knownKinds[kind]
	if !ok {
		return nil, fmt.Errorf("%s: apiVersion/kind %q is not one this test decodes (add its k8s.io/api type to knownKinds)", src, kind)
	}
	v := mk()
	if err := strictDecode(doc, v); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", src, kind, err)
	}
	o := &object{src: src, kind: kind, v: v}
	if o.meta().Name == "" {
		return nil, fmt.Errorf("%s: %s without metadata.name", src, kind)
	}
	return o, nil
}

// build builds the kustomization in dir (relative to root).
func build(root, dir string) (*bundle, error) {
	return buildDepth(root, dir, 0)
}

func buildDepth(root, dir string, depth int) (*bundle, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: kustomizations nested too deep (a cycle?)", dir)
	}
	kpath := filepath.Join(dir, "kustomization.yaml")
	raw, err := os.ReadFile(filepath.Join(root, kpath))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := strictDecode(raw, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", kpath, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion/kind %q %q, want kustomize.config.k8s.io/v1beta1 Kustomization", kpath, k.APIVersion, k.Kind)
	}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("%s: no resources", kpath)
	}
	b := &bundle{dir: dir, namespace: k.Namespace, files: map[string]bool{kpath: true}}
	for _, r := range k.Resources {
		rel := filepath.Clean(filepath.Join(dir, r))
		if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("%s: resource %q is outside deploy/kubernetes", kpath, r)
		}
		st, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			return nil, fmt.Errorf("%s lists resource %q, which cannot be read: %w", kpath, r, err)
		}
		if st.IsDir() {
			sub, err := buildDepth(root, rel, depth+1)
			if err != nil {
				return nil, err
			}
			b.objects = append(b.objects, sub.objects...)
			for f := range sub.files {
				b.files[f] = true
			}
			continue
		}
		if !strings.HasSuffix(rel, ".yaml") {
			return nil, fmt.Errorf("%s lists %q: want .yaml files or directories", kpath, r)
		}
		objs, err := readManifests(root, rel)
		if err != nil {
			return nil, err
		}
		b.objects = append(b.objects, objs...)
		b.files[rel] = true
	}
	for _, p := range k.Patches {
		rel := filepath.Clean(filepath.Join(dir, p.Path))
		if err := b.applyPatch(root, rel, p.Target); err != nil {
			return nil, fmt.Errorf("%s: patch %s: %w", kpath, p.Path, err)
		}
		b.files[rel] = true
	}
	seen := map[string]string{}
	for _, o := range b.objects {
		m := o.meta()
		if o.kind != "v1 Namespace" && k.Namespace != "" {
			if m.Namespace != "" && m.Namespace != k.Namespace {
				return nil, fmt.Errorf("%s: namespace %q, but %s puts everything in %q", o, m.Namespace, kpath, k.Namespace)
			}
			m.Namespace = k.Namespace
		}
		id := o.kind + " " + m.Namespace + "/" + m.Name
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("%s and %s are the same object %s", prev, o.src, id)
		}
		seen[id] = o.src
		for _, img := range k.Images {
			for _, c := range podSpecOf(o).containers() {
				name, tag, _ := strings.Cut(c.Image, ":")
				if name != img.Name {
					continue
				}
				if img.NewName != "" {
					name = img.NewName
				}
				if img.NewTag != "" {
					tag = img.NewTag
				}
				c.Image = name + ":" + tag
				if img.Digest != "" {
					c.Image = name + "@" + img.Digest
				}
			}
		}
	}
	return b, nil
}

func readManifests(root, rel string) ([]*object, error) {
	raw, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	docs, err := documents(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no manifest in the file", rel)
	}
	var out []*object
	for i, d := range docs {
		o, err := decodeObject(fmt.Sprintf("%s#%d", rel, i+1), d)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// applyPatch applies a strategic-merge patch the way kustomize does: the
// target is the object of the patch's kind and name (or the target given),
// list fields without a merge key are replaced as a whole.
func (b *bundle) applyPatch(root, rel string, target *struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}) error {
	patches, err := readManifests(root, rel)
	if err != nil {
		return err
	}
	if len(patches) != 1 {
		return fmt.Errorf("%s: want one document, got %d", rel, len(patches))
	}
	p := patches[0]
	kind, name := p.kind, p.meta().Name
	if target != nil {
		if !strings.HasSuffix(p.kind, " "+target.Kind) || name != target.Name {
			return fmt.Errorf("%s patches %s %s but its target is %s %s", rel, p.kind, name, target.Kind, target.Name)
		}
	}
	var hit []*object
	for _, o := range b.objects {
		if o.kind == kind && o.meta().Name == name {
			hit = append(hit, o)
		}
	}
	if len(hit) != 1 {
		return fmt.Errorf("%s: %d objects %s %s to patch, want 1", rel, len(hit), kind, name)
	}
	orig, err := json.Marshal(hit[0].v)
	if err != nil {
		return err
	}
	pj, err := yaml.YAMLToJSONStrict(mustRead(root, rel))
	if err != nil {
		return err
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, pj, knownKinds[kind]())
	if err != nil {
		return err
	}
	v := knownKinds[kind]()
	if err := strictDecodeJSON(merged, v); err != nil {
		return fmt.Errorf("patched %s: %w", hit[0], err)
	}
	hit[0].v = v
	hit[0].src += " patched by " + rel
	return nil
}

func mustRead(root, rel string) []byte {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		panic(err)
	}
	docs, err := documents(b)
	if err != nil || len(docs) != 1 {
		panic(fmt.Sprintf("%s: %v", rel, err))
	}
	return docs[0]
}

// kustomizationDirs finds every directory under root with a
// kustomization.yaml.
func kustomizationDirs(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "kustomization.yaml" {
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			dirs = append(dirs, rel)
		}
		return nil
	})
	sort.Strings(dirs)
	return dirs, err
}

// unlisted returns the YAML files under root that no kustomization reads:
// a manifest that `kubectl apply -k` would never apply, and that the checks
// would never see.
func unlisted(root string, bundles []*bundle) ([]string, error) {
	read := map[string]bool{}
	for _, b := range bundles {
		for f := range b.files {
			read[f] = true
		}
	}
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if !read[rel] {
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// loadAll builds every kustomization under root and checks that together
// they read every YAML file there.
func loadAll(root string) ([]*bundle, error) {
	dirs, err := kustomizationDirs(root)
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 || dirs[0] != "." {
		return nil, fmt.Errorf("%s has no kustomization.yaml", root)
	}
	var bundles []*bundle
	for _, d := range dirs {
		b, err := build(root, d)
		if err != nil {
			return nil, err
		}
		bundles = append(bundles, b)
	}
	extra, err := unlisted(root, bundles)
	if err != nil {
		return nil, err
	}
	if len(extra) > 0 {
		return nil, fmt.Errorf("not listed in any kustomization.yaml (so never applied, and never checked): %s", strings.Join(extra, ", "))
	}
	return bundles, nil
}

// TestKustomizeAgrees: where kubectl is installed, its kustomize builds
// every kustomization here into exactly the objects the loader above
// builds — so the checks look at what `kubectl apply -k` would apply.
// (kubectl kustomize runs locally; no cluster is involved.)
func TestKustomizeAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed, so the loader cannot be compared with kustomize; the other tests still check every manifest")
	}
	dirs, err := kustomizationDirs(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
				}
				t.Fatal(err)
			}
			docs, err := documents(out)
			if err != nil {
				t.Fatal(err)
			}
			theirs := map[string]string{}
			for i, d := range docs {
				o, err := decodeObject(fmt.Sprintf("kubectl kustomize %s #%d", dir, i+1), d)
				if err != nil {
					t.Fatal(err)
				}
				j, _ := json.Marshal(o.v)
				theirs[o.kind+" "+o.meta().Namespace+"/"+o.meta().Name] = string(j)
			}
			b, err := build(".", dir)
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]string{}
			for _, o := range b.objects {
				j, _ := json.Marshal(o.v)
				ours[o.kind+" "+o.meta().Namespace+"/"+o.meta().Name] = string(j)
			}
			for id, j := range theirs {
				if ours[id] == "" {
					t.Errorf("kustomize builds %s, the loader does not", id)
				} else if ours[id] != j {
					t.Errorf("%s differs:\nkustomize: %s\nloader:    %s", id, j, ours[id])
				}
			}
			for id := range ours {
				if theirs[id] == "" {
					t.Errorf("the loader builds %s, kustomize does not", id)
				}
			}
			t.Logf("%d objects, identical", len(theirs))
		})
	}
}
