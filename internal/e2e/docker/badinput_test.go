package docker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// runContainer runs the ebbflow image to completion without a network and
// returns its exit code, its output and its health-check log. The container
// is removed afterwards.
func runContainer(t *testing.T, timeout time.Duration, dockerArgs []string, args ...string) (int, string, []healthProbe, time.Duration) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "ebbflow-e2e-" + hex.EncodeToString(b)
	t.Cleanup(func() { _, _ = run(time.Minute, nil, "docker", "rm", "-f", name) })
	create := append([]string{"create", "--name", name, "--network", "none"}, dockerArgs...)
	create = append(append(create, ebbflowImage), args...)
	docker(t, time.Minute, create...)
	t0 := time.Now()
	docker(t, time.Minute, "start", name)
	code := docker(t, timeout, "wait", name)
	elapsed := time.Since(t0)
	out, _ := run(time.Minute, nil, "docker", "logs", name)
	var st struct {
		Health *struct{ Log []healthProbe }
	}
	if err := json.Unmarshal([]byte(docker(t, time.Minute, "inspect", "--format", "{{json .State}}", name)), &st); err != nil {
		t.Fatal(err)
	}
	var probes []healthProbe
	if st.Health != nil {
		probes = st.Health.Log
	}
	t.Logf("%v exited %s after %v", args, code, elapsed.Round(time.Millisecond))
	n := 0
	for _, c := range code {
		n = n*10 + int(c-'0')
	}
	return n, out, probes, elapsed
}

type healthProbe struct {
	ExitCode int
	Output   string
}

// An unreachable etcd: the TaskManager retries for etcd.startup-timeout,
// then exits non-zero with a message naming the endpoint and the key. It is
// never healthy meanwhile.
func TestContainerUnreachableEtcd(t *testing.T) {
	e := requireEngine(t)
	requireImages(t, e)
	code, out, probes, elapsed := runContainer(t, 2*time.Minute, []string{
		"-e", "EBBFLOW_ETCD_ENDPOINTS=etcd-nowhere:2379", "-e", "EBBFLOW_ETCD_STARTUP_TIMEOUT=6s",
		"-e", "EBBFLOW_CHECKPOINT_DIR=file:///checkpoints", "--tmpfs", "/checkpoints:mode=1777",
		"--health-interval", "1s", "--health-timeout", "1s",
	}, "taskmanager")
	if code == 0 {
		t.Fatalf("taskmanager with an unreachable etcd exited 0:\n%s", out)
	}
	// The last attempt may start just before the deadline and take up to
	// etcd.dial-timeout (5 s).
	if limit := 6*time.Second + 5*time.Second + 10*time.Second; elapsed > limit {
		t.Errorf("the taskmanager gave up after %v, want within etcd.startup-timeout + etcd.dial-timeout (%v with a margin)", elapsed, limit)
	}
	for _, want := range []string{"etcd-nowhere:2379", "etcd.startup-timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("the taskmanager's output does not name %q:\n%s", want, tail(out, 20))
		}
	}
	if len(probes) == 0 {
		t.Fatalf("no health check ran in the 6 s the taskmanager retried etcd")
	}
	for _, p := range probes {
		if p.ExitCode == 0 {
			t.Fatalf("the health check passed while etcd was unreachable: %q", p.Output)
		}
	}
	t.Logf("%d health checks, all failing; the last said: %s", len(probes), strings.TrimSpace(probes[len(probes)-1].Output))
}

// S3 checkpoints without an endpoint: the TaskManager exits at once naming
// the key, without waiting for etcd.
func TestContainerMissingS3Endpoint(t *testing.T) {
	e := requireEngine(t)
	requireImages(t, e)
	code, out, _, _ := runContainer(t, time.Minute, []string{
		"-e", "EBBFLOW_CHECKPOINT_DIR=s3://ebbflow/checkpoints", "-e", "EBBFLOW_S3_ACCESS_KEY=x", "-e", "EBBFLOW_S3_SECRET_KEY=very-secret-value",
		"-e", "EBBFLOW_ETCD_STARTUP_TIMEOUT=5m",
	}, "taskmanager")
	if code != 2 {
		t.Fatalf("exit code %d, want 2 (bad configuration):\n%s", code, out)
	}
	if !strings.Contains(out, "s3.endpoint") {
		t.Fatalf("the message does not name s3.endpoint:\n%s", out)
	}
	if strings.Contains(out, "very-secret-value") {
		t.Fatalf("the S3 secret appears in the output:\n%s", out)
	}
}

// An unknown subcommand prints the usage and exits 2.
func TestContainerUnknownSubcommand(t *testing.T) {
	e := requireEngine(t)
	requireImages(t, e)
	code, out, _, _ := runContainer(t, time.Minute, nil, "jobmanagr")
	if code != 2 {
		t.Fatalf("exit code %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{`unknown command "jobmanagr"`, "Available Commands:", "jobmanager", "taskmanager", "healthcheck"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
