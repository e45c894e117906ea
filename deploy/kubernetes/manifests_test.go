package kubernetes_test

// The invariants: each kustomization under deploy/kubernetes builds, every
// manifest decodes strictly, and what the manifests say agrees with itself
// and with the ebbflow binary (binary_test.go). check() returns every
// contradiction it finds; TestCheckerCatches mutates good manifests and
// asserts that each kind of contradiction is reported.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ebbflow/ebbflow/internal/cli"
)

const (
	// imageRepo is the one image every ebbflow role runs (deploy/docker);
	// its entrypoint is the ebbflow binary and it runs as uid 65532.
	imageRepo  = "ebbflow"
	nonRootUID = 65532
	// After SIGTERM a TaskManager marks itself draining (an etcd write of at
	// most 2 s), waits up to taskmanager.drain-timeout, then stops its
	// tasks, revokes its lease (at most 2 s) and closes its HTTP server (at
	// most 2 s): internal/cli/server.go. One second of slack on top.
	tmExitMargin = 7 * time.Second
	// A JobManager resigns (at most 2 s) and closes its HTTP server (at most
	// 2 s); one second of slack.
	jmExitMargin = 5 * time.Second
	// Kubernetes' default terminationGracePeriodSeconds.
	defaultGrace = 30
	// What status.podIP and metadata.name stand for when environment
	// variables are expanded (never dialled).
	podIPStandIn   = "192.0.2.10"
	podNameStandIn = "pod-name"
	// Scale-down may remove at most this many TaskManagers per minute:
	// each removal is a drain, and drains are not held back by
	// jobmanager.cooldown.
	maxScaleDownPerMinute = 1
	minScaleDownWindow    = 60 // seconds
)

// tmpl is a workload's pod template (nil for other objects).
type tmpl struct{ *corev1.PodTemplateSpec }

func podSpecOf(o *object) tmpl {
	switch v := o.v.(type) {
	case *appsv1.Deployment:
		return tmpl{&v.Spec.Template}
	case *appsv1.StatefulSet:
		return tmpl{&v.Spec.Template}
	}
	return tmpl{}
}

func (t tmpl) containers() []*corev1.Container {
	if t.PodTemplateSpec == nil {
		return nil
	}
	var out []*corev1.Container
	for i := range t.Spec.InitContainers {
		out = append(out, &t.Spec.InitContainers[i])
	}
	for i := range t.Spec.Containers {
		out = append(out, &t.Spec.Containers[i])
	}
	return out
}

// instance is one ebbflow container as the binary would see it.
type instance struct {
	o    *object
	pod  *corev1.PodTemplateSpec
	c    *corev1.Container
	role string // jobmanager, taskmanager
	r    *cli.Resolved
	// ports the binary listens on, by key
	listen map[string]int32
}

func (in *instance) String() string { return in.o.String() + " container " + in.c.Name }

type checker struct {
	b     *binary
	bun   *bundle
	errs  []string
	insts []*instance
	// local records the etcd and S3 endpoints (host:port) served by a
	// Service of this kustomization.
	local map[string]bool
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

func (c *checker) find(kind, name string) *object {
	for _, o := range c.bun.objects {
		if o.kind == kind && o.meta().Name == name {
			return o
		}
	}
	return nil
}

func (c *checker) all(kind string) []*object {
	var out []*object
	for _, o := range c.bun.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (c *checker) workloads() []*object {
	return append(c.all("apps/v1 Deployment"), c.all("apps/v1 StatefulSet")...)
}

// check runs every invariant on one built kustomization.
func check(b *binary, bun *bundle) []string { return checkBundle(b, bun).errs }

func checkBundle(b *binary, bun *bundle) *checker {
	c := &checker{b: b, bun: bun, local: map[string]bool{}}
	c.checkNamespace()
	for _, w := range c.workloads() {
		c.checkWorkload(w)
	}
	c.checkCluster()
	c.checkHPAs()
	c.checkPDBs()
	c.checkServices()
	return c
}

// checkNamespace: everything lands in a namespace that the same
// kustomization creates.
func (c *checker) checkNamespace() {
	for _, o := range c.bun.objects {
		if o.kind == "v1 Namespace" {
			continue
		}
		ns := o.meta().Namespace
		if ns == "" {
			c.errorf("%s: no namespace (set namespace: in the kustomization)", o)
		} else if c.find("v1 Namespace", ns) == nil {
			c.errorf("%s: namespace %q, but no Namespace object here creates it", o, ns)
		}
	}
}

// selects reports whether a selector's labels all appear in labels.
func selects(sel map[string]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (c *checker) checkWorkload(w *object) {
	var sel map[string]string
	switch v := w.v.(type) {
	case *appsv1.Deployment:
		if v.Spec.Selector != nil {
			sel = v.Spec.Selector.MatchLabels
			if len(v.Spec.Selector.MatchExpressions) > 0 {
				c.errorf("%s: selector matchExpressions are not checked by this test; use matchLabels", w)
			}
		}
	case *appsv1.StatefulSet:
		if v.Spec.Selector != nil {
			sel = v.Spec.Selector.MatchLabels
		}
	}
	p := podSpecOf(w)
	if !selects(sel, p.Labels) {
		c.errorf("%s: spec.selector %v does not select its own pod template (labels %v)", w, sel, p.Labels)
	}
	vols := map[string]*corev1.Volume{}
	for i := range p.Spec.Volumes {
		vols[p.Spec.Volumes[i].Name] = &p.Spec.Volumes[i]
	}
	for _, v := range p.Spec.Volumes {
		c.checkVolumeSource(w, v)
	}
	for _, ct := range p.containers() {
		where := w.String() + " container " + ct.Name
		for _, m := range ct.VolumeMounts {
			if vols[m.Name] == nil {
				c.errorf("%s: volumeMount %s names no volume of the pod", where, m.Name)
			}
		}
		names := map[string]bool{}
		for _, cp := range ct.Ports {
			if cp.Name != "" && names[cp.Name] {
				c.errorf("%s: port name %s used twice", where, cp.Name)
			}
			names[cp.Name] = true
		}
		for _, e := range ct.Env {
			c.checkEnvSource(where, e)
		}
		if len(ct.EnvFrom) > 0 {
			c.errorf("%s: envFrom is not checked by this test; list the variables under env", where)
		}
		for pname, pr := range map[string]*corev1.Probe{"startupProbe": ct.StartupProbe, "livenessProbe": ct.LivenessProbe, "readinessProbe": ct.ReadinessProbe} {
			if pr != nil && pr.HTTPGet != nil {
				if _, ok := containerPort(ct, pr.HTTPGet.Port); !ok {
					c.errorf("%s: %s port %s is not a port of the container", where, pname, pr.HTTPGet.Port.String())
				}
			}
		}
		name, _, _ := strings.Cut(ct.Image, ":")
		if name == imageRepo || strings.HasSuffix(name, "/"+imageRepo) {
			c.checkEbbflow(w, p.PodTemplateSpec, ct)
		}
	}
}

func (c *checker) checkVolumeSource(w *object, v corev1.Volume) {
	switch {
	case v.ConfigMap != nil:
		cm := c.find("v1 ConfigMap", v.ConfigMap.Name)
		if cm == nil {
			if v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional {
				c.errorf("%s: volume %s: no ConfigMap %s", w, v.Name, v.ConfigMap.Name)
			}
			return
		}
		data := cm.v.(*corev1.ConfigMap).Data
		for _, it := range v.ConfigMap.Items {
			if _, ok := data[it.Key]; !ok {
				c.errorf("%s: volume %s: ConfigMap %s has no key %s", w, v.Name, v.ConfigMap.Name, it.Key)
			}
		}
	case v.Secret != nil:
		data, ok := c.secretData(v.Secret.SecretName)
		if !ok {
			if v.Secret.Optional == nil || !*v.Secret.Optional {
				c.errorf("%s: volume %s: no Secret %s", w, v.Name, v.Secret.SecretName)
			}
			return
		}
		for _, it := range v.Secret.Items {
			if _, ok := data[it.Key]; !ok {
				c.errorf("%s: volume %s: Secret %s has no key %s", w, v.Name, v.Secret.SecretName, it.Key)
			}
		}
	}
}

func (c *checker) secretData(name string) (map[string]string, bool) {
	o := c.find("v1 Secret", name)
	if o == nil {
		return nil, false
	}
	s := o.v.(*corev1.Secret)
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out, true
}

func (c *checker) checkEnvSource(where string, e corev1.EnvVar) {
	if e.ValueFrom == nil {
		return
	}
	if r := e.ValueFrom.SecretKeyRef; r != nil {
		data, ok := c.secretData(r.Name)
		if _, has := data[r.Key]; (!ok || !has) && (r.Optional == nil || !*r.Optional) {
			c.errorf("%s: env %s: Secret %s has no key %s", where, e.Name, r.Name, r.Key)
		}
	}
	if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
		o := c.find("v1 ConfigMap", r.Name)
		ok := o != nil
		if ok {
			_, ok = o.v.(*corev1.ConfigMap).Data[r.Key]
		}
		if !ok && (r.Optional == nil || !*r.Optional) {
			c.errorf("%s: env %s: ConfigMap %s has no key %s", where, e.Name, r.Name, r.Key)
		}
	}
}

// containerPort resolves a probe's or Service's port (a name or a number)
// to one of the container's ports.
func containerPort(ct *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range ct.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand does Kubernetes' $(VAR) expansion: a reference to a variable
// defined earlier is replaced, any other is left as it is.
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// environment is the container's environment as Kubernetes would set it.
func (c *checker) environment(ct *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range ct.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				env[e.Name] = podIPStandIn
			default:
				env[e.Name] = podNameStandIn
			}
		case e.ValueFrom.SecretKeyRef != nil:
			data, _ := c.secretData(e.ValueFrom.SecretKeyRef.Name)
			env[e.Name] = data[e.ValueFrom.SecretKeyRef.Key]
		case e.ValueFrom.ConfigMapKeyRef != nil:
			if o := c.find("v1 ConfigMap", e.ValueFrom.ConfigMapKeyRef.Name); o != nil {
				env[e.Name] = o.v.(*corev1.ConfigMap).Data[e.ValueFrom.ConfigMapKeyRef.Key]
			}
		default:
			env[e.Name] = "1"
		}
	}
	return env
}

// mounts writes the container's ConfigMap and Secret volumes into a
// temporary folder, as the kubelet would: mount path → local folder.
func (c *checker) mounts(pod *corev1.PodTemplateSpec, ct *corev1.Container) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range ct.VolumeMounts {
		if m.SubPath != "" {
			return nil, fmt.Errorf("volumeMount %s: subPath is not handled by this test", m.Name)
		}
		var v *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == m.Name {
				v = &pod.Spec.Volumes[i]
			}
		}
		if v == nil {
			continue // reported by checkWorkload
		}
		dir := c.b.tmp()
		files := map[string]string{}
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			if o := c.find("v1 ConfigMap", v.ConfigMap.Name); o != nil {
				files = o.v.(*corev1.ConfigMap).Data
			}
			items = v.ConfigMap.Items
		case v.Secret != nil:
			files, _ = c.secretData(v.Secret.SecretName)
			items = v.Secret.Items
		}
		if len(items) > 0 {
			picked := map[string]string{}
			for _, it := range items {
				picked[it.Path] = files[it.Key]
			}
			files = picked
		}
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				return nil, err
			}
		}
		out[filepath.Clean(m.MountPath)] = dir
	}
	return out, nil
}

// local maps a path inside the container to the materialized file.
func local(mounts map[string]string, path string) (string, bool) {
	best := ""
	for mp := range mounts {
		if strings.HasPrefix(path, mp+"/") && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return "", false
	}
	return mounts[best] + strings.TrimPrefix(path, best), true
}

// withEnv runs fn with exactly the given EBBFLOW_* variables set (the
// process's own are put back afterwards). Not safe for parallel tests.
func withEnv(env map[string]string, fn func()) {
	saved := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "EBBFLOW_") {
			saved[k] = v
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		if strings.HasPrefix(k, "EBBFLOW_") {
			os.Setenv(k, v)
		}
	}
	defer func() {
		for k := range env {
			if strings.HasPrefix(k, "EBBFLOW_") {
				os.Unsetenv(k)
			}
		}
		for k, v := range saved {
			os.Setenv(k, v)
		}
	}()
	fn()
}

// fileKeys name files the binary reads.
func fileKey(key string) bool {
	return strings.HasSuffix(key, "-file") || strings.HasPrefix(key, "etcd.tls.")
}

func (c *checker) checkEbbflow(w *object, pod *corev1.PodTemplateSpec, ct *corev1.Container) {
	in := &instance{o: w, pod: pod, c: ct, listen: map[string]int32{}}
	where := in.String()
	if len(ct.Command) > 0 {
		c.errorf("%s: command %q: the image's entrypoint is the ebbflow binary; give the subcommand and flags as args", where, ct.Command)
		return
	}
	if len(ct.Args) == 0 {
		c.errorf("%s: no args: want a subcommand (jobmanager, taskmanager)", where)
		return
	}
	in.role = ct.Args[0]
	if in.role != "jobmanager" && in.role != "taskmanager" {
		c.errorf("%s: args[0] %q is not a server subcommand of ebbflow (jobmanager, taskmanager)", where, in.role)
		return
	}
	env := c.environment(ct)
	for _, e := range ct.Env {
		if !strings.HasPrefix(e.Name, "EBBFLOW_") {
			continue
		}
		k, ok := c.b.keys[e.Name]
		if !ok {
			c.errorf("%s: env %s is not a configuration key of ebbflow (docs/configuration.md)", where, e.Name)
			continue
		}
		if !slices.Contains(k.Roles, in.role) {
			c.errorf("%s: env %s (%s) is not used by %s, only by %s", where, e.Name, k.Key, in.role, strings.Join(k.Roles, ", "))
		}
		if k.Secret && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			c.errorf("%s: env %s holds a secret: take it from a Secret (valueFrom.secretKeyRef), or mount the Secret and set %s-file", where, e.Name, k.Key)
		}
	}
	mounts, err := c.mounts(pod, ct)
	if err != nil {
		c.errorf("%s: %v", where, err)
		return
	}
	// Paths into the container's volumes point at the materialized files.
	args := make([]string, len(ct.Args))
	for i, a := range ct.Args {
		a = expand(a, env)
		flag, val, isFlag := strings.Cut(a, "=")
		if !isFlag || !strings.HasPrefix(flag, "--") {
			flag, val = "", a
		}
		if lp, ok := local(mounts, val); ok {
			val = lp
		}
		if flag != "" {
			val = flag + "=" + val
		}
		args[i] = val
	}
	withEnv(env, func() { in.r, err = cli.Resolve("ebbflow", c.b.app, args) })
	if err != nil {
		c.errorf("%s: ebbflow %s: the binary refuses it: %v", where, strings.Join(ct.Args, " "), err)
		return
	}
	c.insts = append(c.insts, in)
	c.checkConfigFile(in, mounts)
	for _, k := range cli.Keys() {
		if !fileKey(k.Key) || !slices.Contains(k.Roles, in.role) {
			continue
		}
		p := in.r.String(k.Key)
		if p == "" {
			continue
		}
		lp, ok := local(mounts, p)
		if !ok {
			c.errorf("%s: %s is %s, which no volume of the container provides", where, k.Key, p)
			continue
		}
		if _, err := os.Stat(lp); err != nil {
			c.errorf("%s: %s is %s, but the volume mounted there has no such file (a missing Secret or ConfigMap key?)", where, k.Key, p)
		}
	}

	// Ports the binary listens on, and the probes and annotations that hit them.
	listenKeys := map[string][]string{"jobmanager": {"jobmanager.http"}, "taskmanager": {"taskmanager.http", "taskmanager.bind", "taskmanager.data-bind"}}[in.role]
	for _, k := range listenKeys {
		p, err := port(in.r.String(k))
		if err != nil {
			c.errorf("%s: %s: %v", where, k, err)
			return
		}
		in.listen[k] = p
		if _, ok := containerPort(ct, intstr.FromInt32(p)); !ok {
			c.errorf("%s: the binary listens on %d (%s) but the container declares no such port", where, p, k)
		}
	}
	for _, cp := range ct.Ports {
		found := false
		for _, p := range in.listen {
			found = found || p == cp.ContainerPort
		}
		if !found {
			c.errorf("%s: container port %s %d is not a port the binary listens on (%s)", where, cp.Name, cp.ContainerPort, strings.Join(listenKeys, ", "))
		}
	}
	httpKey := in.role + ".http"
	httpPort := in.listen[httpKey]
	var h = c.b.tm
	if in.role == "jobmanager" {
		h, err = c.b.jobManagerHandler(in.r.Job, in.r.JobArgs)
		if err != nil {
			c.errorf("%s: job %s %v: %v", where, in.r.Job, in.r.JobArgs, err)
			return
		}
	}
	for _, pc := range []struct {
		name string
		p    *corev1.Probe
		path string // required path, "" = any served one
	}{{"livenessProbe", ct.LivenessProbe, "/livez"}, {"readinessProbe", ct.ReadinessProbe, "/readyz"}, {"startupProbe", ct.StartupProbe, ""}} {
		if pc.p == nil {
			if pc.name != "startupProbe" {
				c.errorf("%s: no %s (want GET %s on %s)", where, pc.name, pc.path, httpKey)
			}
			continue
		}
		g := pc.p.HTTPGet
		if g == nil {
			c.errorf("%s: %s is not an httpGet probe (the image has no shell to exec)", where, pc.name)
			continue
		}
		if p, ok := containerPort(ct, g.Port); !ok || p != httpPort {
			c.errorf("%s: %s port %s is not %s (%d), where the binary serves %s", where, pc.name, g.Port.String(), httpKey, httpPort, g.Path)
		}
		if !serves(h, g.Path) {
			c.errorf("%s: %s path %s is not served by the %s", where, pc.name, g.Path, in.role)
		} else if pc.path != "" && g.Path != pc.path {
			c.errorf("%s: %s path %s, want %s", where, pc.name, g.Path, pc.path)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			c.errorf("%s: %s scheme %s: the binary serves plain HTTP", where, pc.name, g.Scheme)
		}
	}
	// Until etcd answers nothing is served: the probe that guards start-up
	// must wait at least etcd.startup-timeout.
	if pr := cmpOr(ct.StartupProbe, ct.LivenessProbe); pr != nil {
		period, fails := cmpOrZero(pr.PeriodSeconds, 10), cmpOrZero(pr.FailureThreshold, 3)
		window := time.Duration(pr.InitialDelaySeconds+period*fails) * time.Second
		if st := in.r.Duration("etcd.startup-timeout"); window < st {
			c.errorf("%s: the start-up probe gives up after %v, before etcd.startup-timeout (%v) while the binary still waits for etcd", where, window, st)
		}
	}
	if a := pod.Annotations; a["prometheus.io/scrape"] == "true" {
		if a["prometheus.io/port"] != fmt.Sprint(httpPort) {
			c.errorf("%s: annotation prometheus.io/port %q, but /metrics is on %s (%d)", where, a["prometheus.io/port"], httpKey, httpPort)
		}
		if path := cmpOr(a["prometheus.io/path"], "/metrics"); path != "/metrics" {
			c.errorf("%s: annotation prometheus.io/path %q, want /metrics", where, path)
		}
	}

	// A Deployment pod's host name does not resolve: TaskManagers must
	// advertise the pod IP, on the ports they bind.
	if in.role == "taskmanager" {
		for adv, bind := range map[string]string{"taskmanager.advertise": "taskmanager.bind", "taskmanager.data-advertise": "taskmanager.data-bind"} {
			a := in.r.String(adv)
			if a == "" {
				c.errorf("%s: %s is unset, so others would dial the pod's host name, which does not resolve; set %s to $(POD_IP):port with POD_IP from status.podIP", where, adv, c.b.keyByID[adv].Env)
				continue
			}
			host := a[:max(strings.LastIndex(a, ":"), 0)]
			if p, err := port(a); err != nil || p != in.listen[bind] {
				c.errorf("%s: %s %s does not end in the port the binary binds (%s %d)", where, adv, a, bind, in.listen[bind])
			}
			if host != podIPStandIn {
				c.errorf("%s: %s %s: the host is not the pod IP (an env var from fieldRef status.podIP)", where, adv, a)
			}
		}
		if n := in.r.Int("taskmanager.slots"); n < 1 {
			c.errorf("%s: taskmanager.slots %d", where, n)
		}
	}

	// Grace period arithmetic (docs/deploy-kubernetes.md).
	grace := time.Duration(defaultGrace) * time.Second
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	var pre time.Duration
	if ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil {
		if s := ct.Lifecycle.PreStop.Sleep; s != nil {
			pre = time.Duration(s.Seconds) * time.Second
		} else {
			c.errorf("%s: preStop is not a sleep, so its length is unknown and cannot be checked against the grace period", where)
		}
	}
	need := pre + jmExitMargin
	why := fmt.Sprintf("preStop %v + exit %v", pre, jmExitMargin)
	if in.role == "taskmanager" {
		d := in.r.Duration("taskmanager.drain-timeout")
		need = pre + d + tmExitMargin
		why = fmt.Sprintf("preStop %v + taskmanager.drain-timeout %v + mark-draining and exit %v", pre, d, tmExitMargin)
	}
	if grace < need {
		c.errorf("%s: terminationGracePeriodSeconds %v is shorter than %v (%s): Kubernetes would kill it mid-drain", where, grace, need, why)
	}

	// Security: the image's non-root user, nothing writable, no privileges,
	// no API token (ebbflow never talks to the Kubernetes API).
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != nonRootUID {
		c.errorf("%s: pod securityContext must set runAsNonRoot: true and runAsUser: %d (the image's user)", where, nonRootUID)
	}
	csc := ct.SecurityContext
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		c.errorf("%s: securityContext.readOnlyRootFilesystem must be true", where)
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		c.errorf("%s: securityContext.allowPrivilegeEscalation must be false", where)
	}
	if csc == nil || csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		c.errorf("%s: securityContext.capabilities must drop ALL and add none", where)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		c.errorf("%s: automountServiceAccountToken must be false (ebbflow does not use the Kubernetes API)", where)
	}
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func cmpOrZero(a, b int32) int32 { return cmpOr(a, b) }

// checkConfigFile: the --config file must not hold secrets (they belong in
// a Secret); unknown keys and bad values were refused by Resolve already.
func (c *checker) checkConfigFile(in *instance, mounts map[string]string) {
	var path string
	for i, a := range in.c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if a == "--config" && i+1 < len(in.c.Args) {
			path = in.c.Args[i+1]
		}
	}
	if path == "" {
		return
	}
	lp, ok := local(mounts, path)
	if !ok {
		c.errorf("%s: --config %s is on no ConfigMap or Secret volume", in, path)
		return
	}
	raw, err := os.ReadFile(lp)
	if err != nil {
		c.errorf("%s: --config %s: %v", in, path, err)
		return
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		c.errorf("%s: --config %s: %v", in, path, err)
		return
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if mm, ok := v.(map[string]any); ok {
			for k, vv := range mm {
				walk(strings.TrimPrefix(prefix+"."+k, "."), vv)
			}
			return
		}
		if k, ok := c.b.keyByID[prefix]; ok && k.Secret {
			c.errorf("%s: --config %s sets the secret %s in a ConfigMap; put it into a Secret and set %s-file", in, path, prefix, prefix)
		}
	}
	walk("", m)
}

// checkCluster: the instances of one kustomization are one job cluster.
func (c *checker) checkCluster() {
	var jms, tms []*instance
	for _, in := range c.insts {
		if in.role == "jobmanager" {
			jms = append(jms, in)
		} else {
			tms = append(tms, in)
		}
	}
	if len(jms) != 1 || len(tms) != 1 {
		c.errorf("%s: %d JobManager and %d TaskManager workloads, want one of each (one job cluster)", c.bun.dir, len(jms), len(tms))
	}
	for _, in := range c.insts[min(1, len(c.insts)):] {
		first := c.insts[0]
		for _, k := range []string{"cluster.id", "etcd.endpoints", "checkpoint.dir", "s3.endpoint"} {
			if a, b := first.r.String(k), in.r.String(k); a != b {
				c.errorf("%s has %s %q but %s has %q: they would not form one cluster", first, k, a, in, b)
			}
		}
		if first.c.Image != in.c.Image {
			c.errorf("%s runs %s but %s runs %s: one image for every role", first, first.c.Image, in, in.c.Image)
		}
	}
	// An endpoint with a bare host name is a Service of the namespace: if
	// this kustomization has it, the port must be one it serves.
	for _, in := range c.insts {
		eps := strings.Split(in.r.String("etcd.endpoints"), ",")
		if e := in.r.String("s3.endpoint"); e != "" {
			eps = append(eps, e)
		}
		for _, ep := range eps {
			hostport := ep
			if _, rest, ok := strings.Cut(ep, "://"); ok {
				hostport = rest
			}
			host, p, ok := strings.Cut(hostport, ":")
			if !ok || strings.Contains(host, ".") {
				continue
			}
			svc := c.find("v1 Service", host)
			if svc == nil {
				continue
			}
			served := false
			for _, sp := range svc.v.(*corev1.Service).Spec.Ports {
				served = served || fmt.Sprint(sp.Port) == p
			}
			if !served {
				c.errorf("%s: endpoint %s: Service %s has no port %s", in, ep, host, p)
				continue
			}
			c.local[hostport] = true
		}
	}
	for _, in := range c.insts {
		if name, tag, _ := strings.Cut(in.c.Image, ":"); tag == "" || tag == "latest" {
			c.errorf("%s: image %s: pin a tag (with :latest or none, an updated image is not rolled out and pull policies differ)", in, name)
		}
	}
	for _, jm := range jms {
		for _, tm := range tms {
			j, t := jm.r.Duration("jobmanager.drain-timeout"), tm.r.Duration("taskmanager.drain-timeout")
			if j >= t {
				c.errorf("%s: jobmanager.drain-timeout %v is not below taskmanager.drain-timeout %v of %s: the TaskManager would give up before the JobManager falls back to the latest checkpoint", jm, j, t, tm)
			}
		}
		replicas := int32(1)
		switch v := jm.o.v.(type) {
		case *appsv1.StatefulSet:
			replicas = *cmpOr(v.Spec.Replicas, ptr(int32(1)))
		case *appsv1.Deployment:
			replicas = *cmpOr(v.Spec.Replicas, ptr(int32(1)))
		}
		if replicas < 2 {
			c.errorf("%s: %d replica(s): want 2, a leader and a hot standby", jm.o, replicas)
		}
		c.requireService(jm, false)
	}
	for _, tm := range tms {
		d, ok := tm.o.v.(*appsv1.Deployment)
		if !ok {
			c.errorf("%s: TaskManagers should be a Deployment (the HPA's target)", tm.o)
			continue
		}
		if d.Spec.Replicas != nil {
			c.errorf("%s: spec.replicas is set (%d): the HPA owns the TaskManager count, and every kubectl apply would reset it", tm.o, *d.Spec.Replicas)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// requireService: the JobManager's REST API has a Service on its http port.
func (c *checker) requireService(in *instance, headless bool) {
	for _, s := range c.all("v1 Service") {
		svc := s.v.(*corev1.Service)
		if (svc.Spec.ClusterIP == corev1.ClusterIPNone) != headless || !selects(svc.Spec.Selector, in.pod.Labels) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if p, ok := containerPort(in.c, sp.TargetPort); ok && p == in.listen["jobmanager.http"] {
				return
			}
		}
	}
	c.errorf("%s: no Service reaches its REST API (jobmanager.http %d)", in, in.listen["jobmanager.http"])
}

func (c *checker) instanceOf(kind, name string) *instance {
	for _, in := range c.insts {
		if in.o.kind == kind && in.o.meta().Name == name {
			return in
		}
	}
	return nil
}

func (c *checker) checkHPAs() {
	rules := c.adapterRules()
	targeted := map[string]int{}
	for _, o := range c.all("autoscaling/v2 HorizontalPodAutoscaler") {
		h := o.v.(*autoscalingv2.HorizontalPodAutoscaler)
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" {
			c.errorf("%s: scaleTargetRef %s %s: want apps/v1 Deployment (the TaskManagers)", o, ref.APIVersion, ref.Kind)
			continue
		}
		tm := c.instanceOf("apps/v1 Deployment", ref.Name)
		if tm == nil || tm.role != "taskmanager" {
			c.errorf("%s: scaleTargetRef %s is not a TaskManager Deployment here", o, ref.Name)
			continue
		}
		targeted[ref.Name]++
		slots := int32(tm.r.Int("taskmanager.slots"))
		minR := *cmpOr(h.Spec.MinReplicas, ptr(int32(1)))
		for _, jm := range c.insts {
			if jm.role != "jobmanager" {
				continue
			}
			if mp := int32(jm.r.Int("jobmanager.min-parallelism")); minR*slots < mp {
				c.errorf("%s: minReplicas %d x %d slots is below jobmanager.min-parallelism %d: at the minimum the job would wait", o, minR, slots, mp)
			}
			if g, err := c.b.app.Build(jm.r.Job, jm.r.JobArgs); err == nil && h.Spec.MaxReplicas*slots > int32(g.MaxParallelism) {
				c.errorf("%s: maxReplicas %d x %d slots exceeds the job's %d key groups (max parallelism): the extra pods would idle", o, h.Spec.MaxReplicas, slots, g.MaxParallelism)
			}
		}
		c.checkScaleDown(o, h.Spec.Behavior)
		if len(h.Spec.Metrics) == 0 {
			c.errorf("%s: no metrics", o)
		}
		for _, m := range h.Spec.Metrics {
			switch m.Type {
			case autoscalingv2.ResourceMetricSourceType:
				res := m.Resource.Name
				if tm.c.Resources.Requests.Name(res, "").IsZero() {
					c.errorf("%s: scales on %s utilization, but %s requests no %s (utilization is relative to the request)", o, res, tm, res)
				}
			case autoscalingv2.PodsMetricSourceType:
				r, ok := rules[m.Pods.Metric.Name]
				if !ok {
					c.errorf("%s: Pods metric %s: no prometheus-adapter rule here serves it", o, m.Pods.Metric.Name)
					continue
				}
				if m.Pods.Target.Type != autoscalingv2.AverageValueMetricType || m.Pods.Target.AverageValue == nil || m.Pods.Target.AverageValue.Sign() <= 0 {
					c.errorf("%s: Pods metric %s: want a positive AverageValue target", o, m.Pods.Metric.Name)
				}
				if tm.pod.Annotations["prometheus.io/scrape"] != "true" {
					c.errorf("%s: Pods metric %s (from %s): %s is not annotated for scraping (prometheus.io/scrape)", o, m.Pods.Metric.Name, r, tm.o)
				}
			default:
				c.errorf("%s: metric type %s is not checked by this test", o, m.Type)
			}
		}
	}
	for _, in := range c.insts {
		if in.role == "taskmanager" && targeted[in.o.meta().Name] != 1 {
			c.errorf("%s: %d HorizontalPodAutoscalers scale it, want exactly 1", in.o, targeted[in.o.meta().Name])
		}
	}
}

// checkScaleDown: every scale-down is a drain (a savepoint and a
// redeploy), and the JobManager's cooldown does not hold drains back, so
// the HPA must rate-limit them.
func (c *checker) checkScaleDown(o *object, b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
	if b == nil || b.ScaleDown == nil {
		c.errorf("%s: no behavior.scaleDown: the default removes up to 100%% of the pods at once, each one a drain", o)
		return
	}
	sd := b.ScaleDown
	if sd.StabilizationWindowSeconds == nil || *sd.StabilizationWindowSeconds < minScaleDownWindow {
		c.errorf("%s: behavior.scaleDown.stabilizationWindowSeconds must be at least %d: a rescale's own pause lowers the load for a moment", o, minScaleDownWindow)
	}
	if sd.SelectPolicy != nil && *sd.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		return // never scales down: rate-limited enough
	}
	if len(sd.Policies) == 0 {
		c.errorf("%s: behavior.scaleDown has no policies, so the default (100%% per 15 s) applies", o)
	}
	for _, p := range sd.Policies {
		if p.Type != autoscalingv2.PodsScalingPolicy {
			c.errorf("%s: scale-down policy %s %d/%ds: use Pods policies (a percentage grows with the count)", o, p.Type, p.Value, p.PeriodSeconds)
			continue
		}
		if p.PeriodSeconds <= 0 || p.Value*60 > maxScaleDownPerMinute*p.PeriodSeconds {
			c.errorf("%s: scale-down policy %d pods per %ds removes more than %d TaskManager per minute", o, p.Value, p.PeriodSeconds, maxScaleDownPerMinute)
		}
	}
}

// adapterConfig is prometheus-adapter's configuration (the subset of
// docs/config.md of kubernetes-sigs/prometheus-adapter used here).
type adapterConfig struct {
	Rules []adapterRule `json:"rules"`
}

type adapterRule struct {
	SeriesQuery   string `json:"seriesQuery"`
	SeriesFilters []struct {
		Is    string `json:"is,omitempty"`
		IsNot string `json:"isNot,omitempty"`
	} `json:"seriesFilters,omitempty"`
	Resources struct {
		Overrides map[string]struct {
			Group    string `json:"group,omitempty"`
			Resource string `json:"resource"`
		} `json:"overrides,omitempty"`
		Template string `json:"template,omitempty"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

var seriesName = regexp.MustCompile(`^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)

// adapterRules decodes every prometheus-adapter configuration (a
// ConfigMap key config.yaml) and checks each rule against the metrics the
// TaskManager really exports: served metric name → rule.
func (c *checker) adapterRules() map[string]string {
	out := map[string]string{}
	types, err := metricTypes(c.b.tm)
	if err != nil {
		c.errorf("TaskManager /metrics: %v", err)
		return out
	}
	for _, o := range c.all("v1 ConfigMap") {
		raw, ok := o.v.(*corev1.ConfigMap).Data["config.yaml"]
		if !ok {
			continue
		}
		var cfg adapterConfig
		if err := strictDecode([]byte(raw), &cfg); err != nil {
			c.errorf("%s: config.yaml is not a prometheus-adapter configuration: %v", o, err)
			continue
		}
		for i, r := range cfg.Rules {
			where := fmt.Sprintf("%s: rule %d", o, i+1)
			m := seriesName.FindStringSubmatch(r.SeriesQuery)
			if m == nil {
				c.errorf("%s: seriesQuery %q does not name one metric", where, r.SeriesQuery)
				continue
			}
			name := m[1]
			typ, ok := types[name]
			switch {
			case !ok:
				c.errorf("%s: the TaskManager exports no metric %s", where, name)
			case (strings.Contains(r.MetricsQuery, "rate(") || strings.Contains(r.MetricsQuery, "increase(")) && typ != "counter":
				c.errorf("%s: %s is a %s; rate() needs a counter (a gauge that restarts at every attempt reads as counter resets)", where, name, typ)
			}
			re, err := regexp.Compile(r.Name.Matches)
			if err != nil || !re.MatchString(name) {
				c.errorf("%s: name.matches %q does not match %s", where, r.Name.Matches, name)
			}
			if r.Name.As == "" {
				c.errorf("%s: name.as is empty; name the served metric", where)
			}
			for _, l := range []string{"namespace", "pod"} {
				if r.Resources.Overrides[l].Resource != l {
					c.errorf("%s: resources.overrides must map the label %s to the resource %s (per-pod metrics)", where, l, l)
				}
			}
			for _, tpl := range []string{"<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"} {
				if !strings.Contains(r.MetricsQuery, tpl) {
					c.errorf("%s: metricsQuery lacks %s", where, tpl)
				}
			}
			out[r.Name.As] = where
		}
	}
	return out
}

func (c *checker) checkPDBs() {
	covered := map[*object]bool{}
	for _, o := range c.all("policy/v1 PodDisruptionBudget") {
		pdb := o.v.(*policyv1.PodDisruptionBudget)
		var sel map[string]string
		if pdb.Spec.Selector != nil {
			sel = pdb.Spec.Selector.MatchLabels
		}
		var hits []*object
		for _, w := range c.workloads() {
			if selects(sel, podSpecOf(w).Labels) {
				hits = append(hits, w)
			}
		}
		if len(hits) != 1 {
			c.errorf("%s: selects the pods of %d workloads, want 1", o, len(hits))
			continue
		}
		covered[hits[0]] = true
		in := c.instanceOf(hits[0].kind, hits[0].meta().Name)
		if in == nil {
			continue
		}
		switch in.role {
		case "taskmanager":
			// One drain at a time: each is a rescale.
			if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" {
				c.errorf("%s: want maxUnavailable: 1 for TaskManagers (one drain at a time)", o)
			}
		case "jobmanager":
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" {
				c.errorf("%s: want maxUnavailable: 1 for the JobManagers (never both at once, but either may go)", o)
			}
		}
	}
	for _, in := range c.insts {
		if !covered[in.o] {
			c.errorf("%s: no PodDisruptionBudget covers it", in.o)
		}
	}
}

func (c *checker) checkServices() {
	for _, o := range c.all("v1 Service") {
		svc := o.v.(*corev1.Service)
		var hits []*object
		for _, w := range c.workloads() {
			if selects(svc.Spec.Selector, podSpecOf(w).Labels) {
				hits = append(hits, w)
			}
		}
		if len(hits) == 0 {
			c.errorf("%s: selector %v selects no pods", o, svc.Spec.Selector)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			for _, w := range hits {
				ok := false
				for _, ct := range podSpecOf(w).containers() {
					_, found := containerPort(ct, sp.TargetPort)
					ok = ok || found
				}
				if sp.TargetPort.String() == "0" || sp.TargetPort.String() == "" {
					ok = false
				}
				if !ok {
					c.errorf("%s: port %s targetPort %s is not a port of %s", o, sp.Name, sp.TargetPort.String(), w)
				}
			}
		}
	}
	for _, o := range c.all("apps/v1 StatefulSet") {
		ss := o.v.(*appsv1.StatefulSet)
		svc := c.find("v1 Service", ss.Spec.ServiceName)
		if svc == nil || svc.v.(*corev1.Service).Spec.ClusterIP != corev1.ClusterIPNone || !selects(svc.v.(*corev1.Service).Spec.Selector, ss.Spec.Template.Labels) {
			c.errorf("%s: serviceName %q is not a headless Service selecting its pods", o, ss.Spec.ServiceName)
		}
	}
}

// TestManifests builds every kustomization under deploy/kubernetes and
// checks it.
func TestManifests(t *testing.T) {
	b := newBinary(t)
	bundles, err := loadAll(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, bun := range bundles {
		dirs = append(dirs, bun.dir)
		t.Run(bun.dir, func(t *testing.T) {
			c := checkBundle(b, bun)
			errs := c.errs
			for _, e := range errs {
				t.Error(e)
			}
			// dev is the whole thing in one go: ebbflow must find its etcd
			// and S3 there.
			if bun.dir == "dev" && (!c.local["etcd:2379"] || !c.local["minio:9000"]) {
				t.Errorf("dev: ebbflow's etcd and S3 endpoints are not the Services etcd:2379 and minio:9000 of the kustomization (found %v)", c.local)
			}
			if len(errs) == 0 {
				kinds := map[string]int{}
				for _, o := range bun.objects {
					kinds[o.kind]++
				}
				t.Logf("%d objects, no contradiction: %v", len(bun.objects), kinds)
			}
		})
	}
	sort.Strings(dirs)
	if want := []string{".", "base", "dev", "scale-on-records"}; !slices.Equal(dirs, want) {
		t.Errorf("kustomizations %v, want %v (the guide names these)", dirs, want)
	}
}
