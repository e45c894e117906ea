package kubernetes_test

// The checks can fail: each case below breaks one thing in the real
// manifests and asserts that exactly that is reported.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func findObj(t *testing.T, bun *bundle, kind, name string) *object {
	t.Helper()
	for _, o := range bun.objects {
		if o.kind == kind && o.meta().Name == name {
			return o
		}
	}
	t.Fatalf("%s: no %s %s", bun.dir, kind, name)
	return nil
}

func tmDeployment(t *testing.T, bun *bundle) *appsv1.Deployment {
	return findObj(t, bun, "apps/v1 Deployment", "ebbflow-taskmanager").v.(*appsv1.Deployment)
}

func jmStatefulSet(t *testing.T, bun *bundle) *appsv1.StatefulSet {
	return findObj(t, bun, "apps/v1 StatefulSet", "ebbflow-jobmanager").v.(*appsv1.StatefulSet)
}

func hpa(t *testing.T, bun *bundle) *autoscalingv2.HorizontalPodAutoscaler {
	return findObj(t, bun, "autoscaling/v2 HorizontalPodAutoscaler", "ebbflow-taskmanager").v.(*autoscalingv2.HorizontalPodAutoscaler)
}

func configFile(t *testing.T, bun *bundle) *corev1.ConfigMap {
	return findObj(t, bun, "v1 ConfigMap", "ebbflow-config").v.(*corev1.ConfigMap)
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

func replaceIn(t *testing.T, s *string, old, new string) {
	t.Helper()
	if !strings.Contains(*s, old) {
		t.Fatalf("%q not found", old)
	}
	*s = strings.Replace(*s, old, new, 1)
}

func TestCheckerCatches(t *testing.T) {
	b := newBinary(t)
	cases := []struct {
		name   string
		dir    string // kustomization; "" = the root
		mutate func(t *testing.T, bun *bundle)
		want   string // in one reported error
	}{
		{"replicas on the HPA's Deployment", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Replicas = ptr(int32(3))
		}, "spec.replicas is set (3)"},
		{"grace period shorter than the drain", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.TerminationGracePeriodSeconds = ptr(int64(30))
		}, "terminationGracePeriodSeconds 30s is shorter than 32s"},
		{"default grace period with the default drain", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.TerminationGracePeriodSeconds = nil
		}, "terminationGracePeriodSeconds 30s is shorter than 32s"},
		{"drain timeout raised in the config file", "", func(t *testing.T, bun *bundle) {
			cm := configFile(t, bun)
			s := cm.Data["ebbflow.yaml"]
			replaceIn(t, &s, "  drain-timeout: 25s", "  drain-timeout: 35s")
			cm.Data["ebbflow.yaml"] = s
		}, "shorter than 42s (preStop 0s + taskmanager.drain-timeout 35s"},
		{"a preStop on the TaskManager eats the drain's budget", "", func(t *testing.T, bun *bundle) {
			c := &tmDeployment(t, bun).Spec.Template.Spec.Containers[0]
			c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 10}}}
		}, "shorter than 42s (preStop 10s"},
		{"JobManager drain timeout not below the TaskManager's", "", func(t *testing.T, bun *bundle) {
			cm := configFile(t, bun)
			s := cm.Data["ebbflow.yaml"]
			replaceIn(t, &s, "drain-timeout: 20s", "drain-timeout: 25s")
			cm.Data["ebbflow.yaml"] = s
		}, "jobmanager.drain-timeout 25s is not below taskmanager.drain-timeout 25s"},
		{"readiness probe on a port the binary does not serve", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromInt32(6121)
		}, "readinessProbe port 6121 is not taskmanager.http (8082)"},
		{"probe port name that does not exist", "", func(t *testing.T, bun *bundle) {
			jmStatefulSet(t, bun).Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port = intstr.FromString("htp")
		}, "livenessProbe port htp is not a port of the container"},
		{"liveness on a path nobody serves", "", func(t *testing.T, bun *bundle) {
			jmStatefulSet(t, bun).Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Path = "/healthz"
		}, "livenessProbe path /healthz is not served by the jobmanager"},
		{"liveness on /readyz (a standby would be killed)", "", func(t *testing.T, bun *bundle) {
			jmStatefulSet(t, bun).Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Path = "/readyz"
		}, "livenessProbe path /readyz, want /livez"},
		{"http port moved by a flag but not in the manifest", "", func(t *testing.T, bun *bundle) {
			c := &tmDeployment(t, bun).Spec.Template.Spec.Containers[0]
			c.Args = append(c.Args, "--http=:9090")
		}, "the binary listens on 9090 (taskmanager.http) but the container declares no such port"},
		{"a container port the binary does not listen on", "", func(t *testing.T, bun *bundle) {
			c := &tmDeployment(t, bun).Spec.Template.Spec.Containers[0]
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: "grpc", ContainerPort: 9000})
		}, "container port grpc 9000 is not a port the binary listens on"},
		{"a flag the subcommand does not have", "", func(t *testing.T, bun *bundle) {
			c := &tmDeployment(t, bun).Spec.Template.Spec.Containers[0]
			c.Args = append(c.Args, "--slot=2")
		}, "the binary refuses it: taskmanager: unknown flag: --slot"},
		{"a subcommand the binary does not have", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Containers[0].Args[0] = "worker"
		}, `args[0] "worker" is not a server subcommand`},
		{"a job flag the job does not have", "", func(t *testing.T, bun *bundle) {
			c := &jmStatefulSet(t, bun).Spec.Template.Spec.Containers[0]
			c.Args = append(c.Args, "--rat=5")
		}, "job statebench: unknown flag: --rat"},
		{"a job the binary does not bundle", "", func(t *testing.T, bun *bundle) {
			c := &jmStatefulSet(t, bun).Spec.Template.Spec.Containers[0]
			c.Args = []string{"jobmanager", "--config=/etc/ebbflow/config/ebbflow.yaml", "clicks"}
		}, `unknown job "clicks"`},
		{"a command overriding the entrypoint", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Containers[0].Command = []string{"/bin/sh", "-c"}
		}, "the image's entrypoint is the ebbflow binary"},
		{"a misspelt EBBFLOW_ variable", "", func(t *testing.T, bun *bundle) {
			setEnv(&tmDeployment(t, bun).Spec.Template.Spec.Containers[0], "EBBFLOW_TASKMANAGER_DRAIN_TIMOUT", "10s")
		}, "env EBBFLOW_TASKMANAGER_DRAIN_TIMOUT is not a configuration key"},
		{"a variable of the other role", "", func(t *testing.T, bun *bundle) {
			setEnv(&tmDeployment(t, bun).Spec.Template.Spec.Containers[0], "EBBFLOW_JOBMANAGER_DRAIN_TIMEOUT", "10s")
		}, "env EBBFLOW_JOBMANAGER_DRAIN_TIMEOUT (jobmanager.drain-timeout) is not used by taskmanager"},
		{"a secret as a plain value", "", func(t *testing.T, bun *bundle) {
			setEnv(&tmDeployment(t, bun).Spec.Template.Spec.Containers[0], "EBBFLOW_S3_SECRET_KEY", "hunter2")
		}, "env EBBFLOW_S3_SECRET_KEY holds a secret"},
		{"a secret in the ConfigMap", "", func(t *testing.T, bun *bundle) {
			cm := configFile(t, bun)
			s := cm.Data["ebbflow.yaml"]
			replaceIn(t, &s, "  secret-key-file: /etc/ebbflow/secrets/s3-secret-key", "  secret-key: hunter2")
			cm.Data["ebbflow.yaml"] = s
		}, "sets the secret s3.secret-key in a ConfigMap"},
		{"an unknown key in the config file", "", func(t *testing.T, bun *bundle) {
			cm := configFile(t, bun)
			s := cm.Data["ebbflow.yaml"]
			replaceIn(t, &s, "  drain-timeout: 25s", "  drain-timeout: 25s\n  drain-timout: 25s")
			cm.Data["ebbflow.yaml"] = s
		}, "unknown key taskmanager.drain-timout"},
		{"a badly typed value in the config file", "", func(t *testing.T, bun *bundle) {
			cm := configFile(t, bun)
			s := cm.Data["ebbflow.yaml"]
			replaceIn(t, &s, "  drain-timeout: 25s", "  drain-timeout: soon")
			cm.Data["ebbflow.yaml"] = s
		}, `config key taskmanager.drain-timeout (EBBFLOW_TASKMANAGER_DRAIN_TIMEOUT): invalid value "soon"`},
		{"a secret file that is not mounted", "", func(t *testing.T, bun *bundle) {
			s := findObj(t, bun, "v1 Secret", "ebbflow-credentials").v.(*corev1.Secret)
			delete(s.StringData, "s3-secret-key")
		}, "s3.secret-key-file is /etc/ebbflow/secrets/s3-secret-key, but the volume mounted there has no such file"},
		{"a Secret key the env refers to is missing", "", func(t *testing.T, bun *bundle) {
			s := findObj(t, bun, "v1 Secret", "ebbflow-credentials").v.(*corev1.Secret)
			delete(s.StringData, "s3-access-key")
		}, "env EBBFLOW_S3_ACCESS_KEY: Secret ebbflow-credentials has no key s3-access-key"},
		{"TaskManagers advertising their host name", "", func(t *testing.T, bun *bundle) {
			c := &tmDeployment(t, bun).Spec.Template.Spec.Containers[0]
			var env []corev1.EnvVar
			for _, e := range c.Env {
				if e.Name != "EBBFLOW_TASKMANAGER_ADVERTISE" {
					env = append(env, e)
				}
			}
			c.Env = env
		}, "taskmanager.advertise is unset"},
		{"advertising a port that is not bound", "", func(t *testing.T, bun *bundle) {
			setEnv(&tmDeployment(t, bun).Spec.Template.Spec.Containers[0], "EBBFLOW_TASKMANAGER_DATA_ADVERTISE", "$(POD_IP):7000")
		}, "taskmanager.data-advertise 192.0.2.10:7000 does not end in the port the binary binds (taskmanager.data-bind 6122)"},
		{"a start-up probe shorter than etcd.startup-timeout", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Containers[0].StartupProbe.FailureThreshold = 10
		}, "the start-up probe gives up after 20s, before etcd.startup-timeout (1m0s)"},
		{"no standby", "", func(t *testing.T, bun *bundle) {
			jmStatefulSet(t, bun).Spec.Replicas = ptr(int32(1))
		}, "1 replica(s): want 2, a leader and a hot standby"},
		{"roles on different images", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Containers[0].Image = "ebbflow:other"
		}, "one image for every role"},
		{"roles in different clusters", "", func(t *testing.T, bun *bundle) {
			setEnv(&tmDeployment(t, bun).Spec.Template.Spec.Containers[0], "EBBFLOW_CLUSTER_ID", "other")
		}, `has cluster.id "`},
		{"a writable root file system", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false)
		}, "readOnlyRootFilesystem must be true"},
		{"root", "", func(t *testing.T, bun *bundle) {
			jmStatefulSet(t, bun).Spec.Template.Spec.SecurityContext.RunAsUser = ptr(int64(0))
		}, "runAsUser: 65532"},
		{"no scale-down behavior", "", func(t *testing.T, bun *bundle) {
			hpa(t, bun).Spec.Behavior.ScaleDown = nil
		}, "no behavior.scaleDown"},
		{"scale-down too fast", "", func(t *testing.T, bun *bundle) {
			hpa(t, bun).Spec.Behavior.ScaleDown.Policies[0].Value = 4
		}, "scale-down policy 4 pods per 120s removes more than 1 TaskManager per minute"},
		{"scale-down by percent", "", func(t *testing.T, bun *bundle) {
			sd := hpa(t, bun).Spec.Behavior.ScaleDown
			sd.Policies = append(sd.Policies, autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: 50, PeriodSeconds: 60})
		}, "use Pods policies"},
		{"more TaskManagers than key groups", "", func(t *testing.T, bun *bundle) {
			hpa(t, bun).Spec.MaxReplicas = 200
		}, "maxReplicas 200 x 1 slots exceeds the job's 128 key groups"},
		{"an HPA aimed at nothing", "", func(t *testing.T, bun *bundle) {
			hpa(t, bun).Spec.ScaleTargetRef.Name = "ebbflow-taskmanagers"
		}, "scaleTargetRef ebbflow-taskmanagers is not a TaskManager Deployment"},
		{"CPU utilization without a CPU request", "", func(t *testing.T, bun *bundle) {
			delete(tmDeployment(t, bun).Spec.Template.Spec.Containers[0].Resources.Requests, corev1.ResourceCPU)
		}, "scales on cpu utilization, but"},
		{"a Pods metric no adapter rule serves", "scale-on-records", func(t *testing.T, bun *bundle) {
			hpa(t, bun).Spec.Metrics[0].Pods.Metric.Name = "ebbflow_records_per_second"
		}, "Pods metric ebbflow_records_per_second: no prometheus-adapter rule here serves it"},
		{"rate() of the per-attempt gauge", "scale-on-records", func(t *testing.T, bun *bundle) {
			cm := findObj(t, bun, "v1 ConfigMap", "ebbflow-prometheus-adapter").v.(*corev1.ConfigMap)
			s := cm.Data["config.yaml"]
			replaceIn(t, &s, "'ebbflow_taskmanager_source_records_total{", "'ebbflow_taskmanager_source_records{")
			replaceIn(t, &s, "matches: ^ebbflow_taskmanager_source_records_total$", "matches: ^ebbflow_taskmanager_source_records$")
			cm.Data["config.yaml"] = s
		}, "ebbflow_taskmanager_source_records is a gauge; rate() needs a counter"},
		{"an adapter rule on a metric nobody exports", "scale-on-records", func(t *testing.T, bun *bundle) {
			cm := findObj(t, bun, "v1 ConfigMap", "ebbflow-prometheus-adapter").v.(*corev1.ConfigMap)
			s := cm.Data["config.yaml"]
			replaceIn(t, &s, "'ebbflow_taskmanager_source_records_total{", "'ebbflow_taskmanager_records_total{")
			cm.Data["config.yaml"] = s
		}, "the TaskManager exports no metric ebbflow_taskmanager_records_total"},
		{"TaskManagers not scraped", "scale-on-records", func(t *testing.T, bun *bundle) {
			delete(tmDeployment(t, bun).Spec.Template.Annotations, "prometheus.io/scrape")
		}, "is not annotated for scraping"},
		{"scrape annotation on the wrong port", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Annotations["prometheus.io/port"] = "8081"
		}, `annotation prometheus.io/port "8081", but /metrics is on taskmanager.http (8082)`},
		{"a PDB that lets two TaskManagers go at once", "", func(t *testing.T, bun *bundle) {
			p := findObj(t, bun, "policy/v1 PodDisruptionBudget", "ebbflow-taskmanager").v.(*policyv1.PodDisruptionBudget)
			p.Spec.MaxUnavailable = ptr(intstr.FromInt32(2))
		}, "want maxUnavailable: 1 for TaskManagers"},
		{"no PDB for the JobManagers", "", func(t *testing.T, bun *bundle) {
			p := findObj(t, bun, "policy/v1 PodDisruptionBudget", "ebbflow-jobmanager").v.(*policyv1.PodDisruptionBudget)
			p.Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "taskmanager"
		}, "no PodDisruptionBudget covers it"},
		{"a Service on a port name the pods lack", "", func(t *testing.T, bun *bundle) {
			s := findObj(t, bun, "v1 Service", "ebbflow-jobmanager").v.(*corev1.Service)
			s.Spec.Ports[0].TargetPort = intstr.FromString("rest")
		}, "targetPort rest is not a port of"},
		{"a Service selecting nothing", "", func(t *testing.T, bun *bundle) {
			s := findObj(t, bun, "v1 Service", "ebbflow-taskmanager").v.(*corev1.Service)
			s.Spec.Selector = map[string]string{"app.kubernetes.io/component": "worker"}
		}, "selects no pods"},
		{"a missing headless Service", "", func(t *testing.T, bun *bundle) {
			jmStatefulSet(t, bun).Spec.ServiceName = "jobmanagers"
		}, `serviceName "jobmanagers" is not a headless Service`},
		{"a volume of a ConfigMap that does not exist", "", func(t *testing.T, bun *bundle) {
			tmDeployment(t, bun).Spec.Template.Spec.Volumes[0].ConfigMap.Name = "ebbflow-conf"
		}, "volume config: no ConfigMap ebbflow-conf"},
		{"the config file pointing at a port the dev etcd does not serve", "dev", func(t *testing.T, bun *bundle) {
			cm := configFile(t, bun)
			s := cm.Data["ebbflow.yaml"]
			replaceIn(t, &s, "endpoints: [etcd:2379]", "endpoints: [etcd:2380]")
			cm.Data["ebbflow.yaml"] = s
		}, "endpoint etcd:2380: Service etcd has no port 2380"},
		{"a probe port of a third-party container", "dev", func(t *testing.T, bun *bundle) {
			findObj(t, bun, "apps/v1 Deployment", "minio").v.(*appsv1.Deployment).Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("api")
		}, "readinessProbe port api is not a port of the container"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = "."
			}
			bun, err := build(".", dir)
			if err != nil {
				t.Fatal(err)
			}
			if errs := check(b, bun); len(errs) != 0 {
				t.Fatalf("the unmodified manifests already fail: %v", errs)
			}
			tc.mutate(t, bun)
			errs := check(b, bun)
			for _, e := range errs {
				if strings.Contains(e, tc.want) {
					t.Logf("reported: %s", e)
					return
				}
			}
			t.Fatalf("not reported (want %q); got %d errors:\n%s", tc.want, len(errs), strings.Join(errs, "\n"))
		})
	}
}

// copyTree copies deploy/kubernetes's YAML files into a temporary folder.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, p), 0o755)
		}
		if !strings.HasSuffix(p, ".yaml") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func edit(t *testing.T, root, rel, old, new string) {
	t.Helper()
	p := filepath.Join(root, rel)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	replaceIn(t, &s, old, new)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoaderCatches: files that do not decode strictly, or that no
// kustomization lists, are errors.
func TestLoaderCatches(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, root string)
		want   string
	}{
		{"a manifest no kustomization lists", func(t *testing.T, root string) {
			os.WriteFile(filepath.Join(root, "extra.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"), 0o644)
		}, "not listed in any kustomization.yaml (so never applied, and never checked): extra.yaml"},
		{"a listed manifest that is missing", func(t *testing.T, root string) {
			os.Remove(filepath.Join(root, "base", "pdb.yaml"))
		}, `base/kustomization.yaml lists resource "pdb.yaml", which cannot be read`},
		{"an unknown field", func(t *testing.T, root string) {
			edit(t, root, "base/taskmanager.yaml", "  strategy:\n", "  replica: 3\n  strategy:\n")
		}, `unknown field "spec.replica"`},
		{"a field in the wrong case", func(t *testing.T, root string) {
			edit(t, root, "base/jobmanager.yaml", "  replicas: 2\n", "  Replicas: 2\n")
		}, `unknown field "spec.Replicas"`},
		{"a duplicate key", func(t *testing.T, root string) {
			edit(t, root, "base/jobmanager.yaml", "  replicas: 2\n", "  replicas: 2\n  replicas: 1\n")
		}, `"replicas" already set in map`},
		{"a wrongly typed value", func(t *testing.T, root string) {
			edit(t, root, "base/taskmanager.yaml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 40s")
		}, "terminationGracePeriodSeconds"},
		{"a kind this test does not know", func(t *testing.T, root string) {
			edit(t, root, "base/hpa.yaml", "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject")
		}, `apiVersion/kind "keda.sh/v1alpha1 ScaledObject" is not one this test decodes`},
		{"an unknown kustomization field", func(t *testing.T, root string) {
			edit(t, root, "base/kustomization.yaml", "namespace: ebbflow\n", "namespace: ebbflow\nnamePrefix: x-\n")
		}, `unknown field "namePrefix"`},
		{"a patch of nothing", func(t *testing.T, root string) {
			edit(t, root, "scale-on-records/hpa.yaml", "  name: ebbflow-taskmanager\n", "  name: ebbflow-tm\n")
		}, "patches autoscaling/v2 HorizontalPodAutoscaler ebbflow-tm but its target is HorizontalPodAutoscaler ebbflow-taskmanager"},
		{"a patch that does not decode", func(t *testing.T, root string) {
			edit(t, root, "scale-on-records/hpa.yaml", "stabilizationWindowSeconds: 30", "stabilisationWindowSeconds: 30")
		}, `unknown field "spec.behavior.scaleUp.stabilisationWindowSeconds"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTree(t)
			if _, err := loadAll(root); err != nil {
				t.Fatalf("the unmodified copy already fails: %v", err)
			}
			tc.change(t, root)
			_, err := loadAll(root)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			t.Logf("reported: %v", err)
		})
	}
}

// The patch replaces the HPA's metrics and keeps the rest.
func TestScaleOnRecordsPatch(t *testing.T) {
	base, err := build(".", ".")
	if err != nil {
		t.Fatal(err)
	}
	over, err := build(".", "scale-on-records")
	if err != nil {
		t.Fatal(err)
	}
	b, o := hpa(t, base), hpa(t, over)
	if len(o.Spec.Metrics) != 1 || o.Spec.Metrics[0].Type != autoscalingv2.PodsMetricSourceType {
		t.Fatalf("patched metrics %+v, want the one Pods metric", o.Spec.Metrics)
	}
	if len(b.Spec.Metrics) != 1 || b.Spec.Metrics[0].Type != autoscalingv2.ResourceMetricSourceType {
		t.Fatalf("base metrics %+v changed", b.Spec.Metrics)
	}
	if o.Spec.MaxReplicas != b.Spec.MaxReplicas || *o.Spec.Behavior.ScaleDown.StabilizationWindowSeconds != *b.Spec.Behavior.ScaleDown.StabilizationWindowSeconds ||
		len(o.Spec.Behavior.ScaleUp.Policies) != len(b.Spec.Behavior.ScaleUp.Policies) {
		t.Errorf("the patch lost fields of the base HPA: %+v", o.Spec)
	}
	if *o.Spec.Behavior.ScaleUp.StabilizationWindowSeconds != 30 {
		t.Errorf("scaleUp window %d, want the patch's 30", *o.Spec.Behavior.ScaleUp.StabilizationWindowSeconds)
	}
}

// `kustomize edit set image ebbflow=ebbflow:TAG` writes an images: entry;
// the loader applies it to every role, and an unpinned tag is refused.
func TestImagesEntry(t *testing.T) {
	b := newBinary(t)
	for _, tc := range []struct{ tag, want string }{{"v1.2.3", ""}, {"latest", "pin a tag"}} {
		root := copyTree(t)
		edit(t, root, "base/kustomization.yaml", "namespace: ebbflow\n", "namespace: ebbflow\nimages:\n  - name: ebbflow\n    newTag: "+tc.tag+"\n")
		bun, err := build(root, ".")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"ebbflow-taskmanager", "ebbflow-jobmanager"} {
			kind := "apps/v1 Deployment"
			if name == "ebbflow-jobmanager" {
				kind = "apps/v1 StatefulSet"
			}
			if img := podSpecOf(findObj(t, bun, kind, name)).Spec.Containers[0].Image; img != "ebbflow:"+tc.tag {
				t.Errorf("%s runs %s, want ebbflow:%s", name, img, tc.tag)
			}
		}
		errs := strings.Join(check(b, bun), "\n")
		if tc.want == "" && errs != "" {
			t.Errorf("tag %s: %s", tc.tag, errs)
		}
		if tc.want != "" && !strings.Contains(errs, tc.want) {
			t.Errorf("tag %s: got %q, want %q", tc.tag, errs, tc.want)
		}
	}
}
