package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/connectors/filesink"
	"github.com/ebbflow/ebbflow/internal/testenv"
)

// cluster is a standalone job cluster of real processes around a real etcd.
type cluster struct {
	t       *testing.T
	etcd    *testenv.Etcd
	env     []string
	dir     string
	jobArgs []string
}

func newCluster(t *testing.T, checkpointDir string, extraEnv ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, etcd: testenv.StartEtcd(t), dir: t.TempDir()}
	if checkpointDir == "" {
		checkpointDir = "file://" + filepath.Join(c.dir, "checkpoints")
	}
	c.env = append(os.Environ(), "EBBFLOW_ETCD_ENDPOINTS="+c.etcd.Endpoint, "EBBFLOW_CLUSTER_ID=e2e",
		"EBBFLOW_CHECKPOINT_DIR="+checkpointDir, "EBBFLOW_LOG_FORMAT=console", "EBBFLOW_TASKMANAGER_LEASE_TTL=2s",
		"EBBFLOW_JOBMANAGER_SESSION_TTL=2s", "EBBFLOW_CHECKPOINT_INTERVAL=300ms")
	c.env = append(c.env, extraEnv...)
	return c
}

func (c *cluster) startProc(args ...string) *proc {
	c.t.Helper()
	p := &proc{t: c.t, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = c.env
	return startPrepared(c.t, p)
}

func (c *cluster) taskmanager(id string, slots int) *proc {
	return c.startProc("taskmanager", "--id", id, "--slots", strconv.Itoa(slots), "--bind", "127.0.0.1:0", "--data-bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
}

type jobmanager struct {
	*proc
	http string
}

func (c *cluster) jobmanager(id string) *jobmanager {
	c.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(c.t))
	p := c.startProc(append([]string{"jobmanager", "--id", id, "--http", addr}, c.jobArgs...)...)
	return &jobmanager{proc: p, http: addr}
}

type jobStatus struct {
	Phase         string `json:"phase"`
	Epoch         int64  `json:"epoch"`
	Parallelism   int    `json:"parallelism"`
	Restarts      int    `json:"restarts"`
	Slots         int    `json:"slots"`
	LastCompleted *struct {
		ID int64 `json:"id"`
	} `json:"lastCompleted"`
	Rescales []struct {
		Trigger   string  `json:"trigger"`
		From      int     `json:"from"`
		To        int     `json:"to"`
		Savepoint bool    `json:"savepoint"`
		PauseMs   float64 `json:"pauseMs"`
	} `json:"rescales"`
}

// status reads GET /v1/job?local=1 (this JobManager's own view, also on a
// standby, which would otherwise forward to the leader); ok=false while the
// server is not up.
func (j *jobmanager) status() (jobStatus, bool) {
	var st jobStatus
	resp, err := http.Get("http://" + j.http + "/v1/job?local=1")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return st, false
	}
	return st, true
}

// waitStatus polls the REST API until cond holds.
func (j *jobmanager) waitStatus(what string, timeout time.Duration, cond func(jobStatus) bool) jobStatus {
	j.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, ok := j.status()
		if ok && cond(st) {
			return st
		}
		select {
		case <-j.done:
			j.t.Fatalf("jobmanager exited while waiting for %s:\n%s", what, j.stderr())
		default:
		}
		if time.Now().After(deadline) {
			j.t.Fatalf("jobmanager: %s not reached in %v (last status %+v)\n%s", what, timeout, st, j.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkpointed(after int64) func(jobStatus) bool {
	return func(st jobStatus) bool { return st.LastCompleted != nil && st.LastCompleted.ID > after }
}

func wcJob(t *testing.T, dir string, lines int, rate int) (in, out string, args []string) {
	in = filepath.Join(dir, "in.txt")
	writeCorpus(t, in, lines, uint64(lines))
	out = filepath.Join(dir, "out")
	return in, out, []string{"wordcount", "--input", in, "--output", out, "--rate", strconv.Itoa(rate)}
}

// JobManager + 2 TaskManagers + real etcd: kill -9 one TaskManager mid-run
// and start another; the job restores from the latest checkpoint and the
// committed output is exactly-once.
func TestClusterTaskManagerKilled(t *testing.T) {
	c := newCluster(t, "")
	in, out, args := wcJob(t, c.dir, 24000, 6000)
	c.jobArgs = args
	tm1 := c.taskmanager("tm-1", 2)
	c.taskmanager("tm-2", 2)
	jm := c.jobmanager("jm-1")
	st := jm.waitStatus("parallelism 4 and a checkpoint", time.Minute, func(st jobStatus) bool {
		return st.Parallelism == 4 && checkpointed(0)(st)
	})
	killedAt := time.Now()
	tm1.kill9()
	after := jm.waitStatus("restore after the loss", 30*time.Second, func(s jobStatus) bool {
		return len(s.Rescales) > 0 && s.Rescales[len(s.Rescales)-1].Trigger == "loss" && s.Phase == "running"
	})
	t.Logf("records reach the sink again %v after kill -9 (lease TTL 2s) at parallelism %d; pause %.0f ms", time.Since(killedAt).Round(time.Millisecond), after.Parallelism, after.Rescales[len(after.Rescales)-1].PauseMs)
	c.taskmanager("tm-3", 2)
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	_ = st
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// Two JobManagers: kill -9 the leader mid-run; the standby takes over,
// resumes from the latest checkpoint and finishes the job (exit 0).
func TestClusterLeaderFailover(t *testing.T) {
	c := newCluster(t, "")
	in, out, args := wcJob(t, c.dir, 24000, 6000)
	c.jobArgs = args
	c.taskmanager("tm-1", 2)
	c.taskmanager("tm-2", 1)
	a := c.jobmanager("jm-a")
	a.waitStatus("leadership", time.Minute, func(s jobStatus) bool { return s.Epoch > 0 })
	b := c.jobmanager("jm-b")
	b.waitStatus("standby", time.Minute, func(s jobStatus) bool { return s.Phase == "standby" })
	// The standby forwards REST requests to the leader: behind one Service
	// both answer as the leader.
	lead, _ := a.status()
	resp, err := http.Get("http://" + b.http + "/v1/job")
	if err != nil {
		t.Fatal(err)
	}
	var fwd jobStatus
	err = json.NewDecoder(resp.Body).Decode(&fwd)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || fwd.Epoch != lead.Epoch || fwd.Phase == "standby" || resp.Header.Get("X-Ebbflow-Forwarded-By") != "jm-b" {
		t.Fatalf("GET /v1/job on the standby: status %d, epoch %d (leader's %d), phase %q, forwarded-by %q, err %v",
			resp.StatusCode, fwd.Epoch, lead.Epoch, fwd.Phase, resp.Header.Get("X-Ebbflow-Forwarded-By"), err)
	}
	a.waitStatus("a checkpoint", time.Minute, checkpointed(0))
	a.kill9()
	took := b.waitStatus("takeover", 30*time.Second, func(s jobStatus) bool { return s.Epoch > 0 && s.Phase == "running" })
	t.Logf("standby took over with epoch %d", took.Epoch)
	if code := b.wait(2 * time.Minute); code != 0 {
		t.Fatalf("standby exit %d:\n%s", code, b.stderr())
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// Fencing: a leader paused with SIGSTOP loses its session; the standby
// takes over; when the old leader resumes (SIGCONT) it can neither move the
// checkpoint pointer nor command a TaskManager, and it stops.
func TestClusterFencing(t *testing.T) {
	c := newCluster(t, "")
	in, out, args := wcJob(t, c.dir, 30000, 6000)
	c.jobArgs = args
	c.taskmanager("tm-1", 2)
	c.taskmanager("tm-2", 2)
	a := c.jobmanager("jm-a")
	first := a.waitStatus("leadership and a checkpoint", time.Minute, func(s jobStatus) bool { return s.Epoch > 0 && checkpointed(0)(s) })
	b := c.jobmanager("jm-b")
	b.waitStatus("standby", time.Minute, func(s jobStatus) bool { return s.Phase == "standby" })
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	took := b.waitStatus("takeover", 30*time.Second, func(s jobStatus) bool { return s.Epoch > first.Epoch && s.Phase == "running" })
	b.waitStatus("a checkpoint by the new leader", time.Minute, checkpointed(first.LastCompleted.ID))
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The old leader must notice and stop acting: it exits non-zero.
	if code := a.wait(30 * time.Second); code == 0 {
		t.Fatalf("deposed leader exited 0:\n%s", a.stderr())
	}
	if !strings.Contains(a.stderr(), "leadership") && !strings.Contains(a.stderr(), "session") {
		t.Fatalf("deposed leader did not say it lost leadership:\n%s", a.stderr())
	}
	if code := b.wait(2 * time.Minute); code != 0 {
		t.Fatalf("new leader exit %d:\n%s", code, b.stderr())
	}
	t.Logf("epochs %d → %d", first.Epoch, took.Epoch)
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// Bad settings exit with a message naming the key or endpoint.
func TestClusterBadSettings(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	os.WriteFile(in, []byte("a b\n"), 0o644)
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("etcd:\n  endpoints: [127.0.0.1:1]\ncheckpoint:\n  dir: file:///tmp/x\n  intervall: 5s\n"), 0o644)
	badType := filepath.Join(dir, "badtype.yaml")
	os.WriteFile(badType, []byte("checkpoint:\n  dir: file:///tmp/x\n  interval: often\n"), 0o644)
	job := []string{"wordcount", "--input", in, "--output", filepath.Join(dir, "o")}
	port := testenv.FreePort(t)
	cases := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"unknown config key", append([]string{"jobmanager", "--config", cfg}, job...), nil, []string{"checkpoint.intervall"}},
		{"wrong type", append([]string{"jobmanager", "--config", badType}, job...), nil, []string{"checkpoint.interval", "often"}},
		{"missing checkpoint dir", append([]string{"jobmanager"}, job...), nil, []string{"checkpoint.dir"}},
		{"unreachable etcd", append([]string{"jobmanager", "--etcd-startup-timeout", "1s", "--checkpoint-dir", "file://" + dir + "/chk"}, job...),
			[]string{"EBBFLOW_ETCD_ENDPOINTS=127.0.0.1:" + strconv.Itoa(port)}, []string{"127.0.0.1:" + strconv.Itoa(port), "unreachable"}},
		{"bad env value", []string{"taskmanager"}, []string{"EBBFLOW_TASKMANAGER_SLOTS=many", "EBBFLOW_CHECKPOINT_DIR=file://" + dir}, []string{"taskmanager.slots", "many"}},
		{"zero slots", []string{"taskmanager", "--slots", "0"}, []string{"EBBFLOW_CHECKPOINT_DIR=file://" + dir}, []string{"slots"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("exit 0; stderr:\n%s", stderr.String())
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("still running after 30s (should fail fast):\n%s", stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Fatalf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

var _ = fmt.Sprint

// A savepoint triggered from the CLI is self-contained: a new cluster
// started from it at another parallelism finishes the job exactly-once.
func TestClusterSavepointRestore(t *testing.T) {
	c := newCluster(t, "", "EBBFLOW_CHECKPOINT_INTERVAL=1h") // only the savepoint commits output
	in, out, args := wcJob(t, c.dir, 20000, 5000)
	c.jobArgs = args
	tm := c.taskmanager("tm-1", 3)
	jm := c.jobmanager("jm-1")
	jm.waitStatus("running at parallelism 3", time.Minute, func(s jobStatus) bool { return s.Phase == "running" && s.Parallelism == 3 })
	cmd := exec.Command(binary, "savepoint", "--jobmanager", "http://"+jm.http)
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ebbflow savepoint: %v\n%s", err, outb)
	}
	m := regexp.MustCompile(`savepoint (\d+) completed: (\S+)`).FindStringSubmatch(string(outb))
	if m == nil {
		t.Fatalf("unexpected savepoint output: %s", outb)
	}
	jm.kill9()
	tm.kill9()
	// A new cluster id: no checkpoint pointer, so --from-savepoint applies.
	c.env = append(c.env, "EBBFLOW_CLUSTER_ID=e2e-restored")
	c.taskmanager("tm-2", 2)
	c.jobArgs = append([]string{"--from-savepoint", m[2]}, args...)
	jm2 := c.jobmanager("jm-2")
	if code := jm2.wait(2 * time.Minute); code != 0 {
		t.Fatalf("restored jobmanager exit %d:\n%s", code, jm2.stderr())
	}
	if !strings.Contains(jm2.stderr(), "resuming from checkpoint") {
		t.Fatalf("restored run did not resume from the savepoint:\n%s", jm2.stderr())
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// Reactive mode with real processes: a TaskManager joins (planned scale-up
// through a stop-with-savepoint), then gets SIGTERM (graceful drain:
// savepoint, redeploy without it, release; it exits 0), and the output is
// exactly-once.
func TestClusterScaleUpAndDrain(t *testing.T) {
	c := newCluster(t, "", "EBBFLOW_JOBMANAGER_STABILIZATION=500ms", "EBBFLOW_JOBMANAGER_COOLDOWN=1s")
	in, out, args := wcJob(t, c.dir, 40000, 5000)
	c.jobArgs = args
	c.taskmanager("tm-1", 2)
	jm := c.jobmanager("jm-1")
	jm.waitStatus("running at 2", time.Minute, func(s jobStatus) bool { return s.Phase == "running" && s.Parallelism == 2 })
	tm2 := c.taskmanager("tm-2", 2)
	up := jm.waitStatus("scale-up to 4", time.Minute, func(s jobStatus) bool {
		return s.Parallelism == 4 && len(s.Rescales) >= 1 && s.Rescales[len(s.Rescales)-1].To == 4
	})
	r := up.Rescales[len(up.Rescales)-1]
	if r.Trigger != "scale-up" || !r.Savepoint {
		t.Fatalf("scale-up rescale %+v: want trigger scale-up through a savepoint", r)
	}
	t.Logf("scale-up 2→4 paused %.0f ms", r.PauseMs)
	if err := tm2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	down := jm.waitStatus("drain to 2", time.Minute, func(s jobStatus) bool {
		return len(s.Rescales) >= 2 && s.Rescales[len(s.Rescales)-1].Trigger == "drain" && s.Rescales[len(s.Rescales)-1].To == 2
	})
	d := down.Rescales[len(down.Rescales)-1]
	if !d.Savepoint {
		t.Fatalf("drain %+v did not use a savepoint", d)
	}
	t.Logf("drain 4→2 paused %.0f ms", d.PauseMs)
	hist, err := exec.Command(binary, "rescales", "--jobmanager", jm.http).CombinedOutput()
	if err != nil || !strings.Contains(string(hist), "scale-up") || !strings.Contains(string(hist), "drain") {
		t.Fatalf("ebbflow rescales: %v\n%s", err, hist)
	}
	if code := tm2.wait(30 * time.Second); code != 0 {
		t.Fatalf("drained taskmanager exit %d:\n%s", code, tm2.stderr())
	}
	if !strings.Contains(tm2.stderr(), "released") {
		t.Fatalf("drained taskmanager was not released by the JobManager:\n%s", tm2.stderr())
	}
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	// Planned rescales and drains replay nothing: the sources emitted each
	// of the 40000 input lines exactly once over all deployments.
	if !strings.Contains(jm.output(), " 40000 source records") {
		t.Fatalf("records were replayed (want exactly 40000 source records):\n%s", jm.output())
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// Checkpoints in a real MinIO: the job runs with s3:// storage, MinIO is
// stopped for a few checkpoint intervals and started again; checkpoints in
// the outage are declined, the job keeps running, and the output stays
// exactly-once.
func TestClusterS3CheckpointsSurviveOutage(t *testing.T) {
	m := testenv.StartMinIO(t)
	c := newCluster(t, "s3://ebbflow-e2e/checkpoints",
		append(minioEnv(m), "EBBFLOW_CHECKPOINT_TOLERABLE_FAILURES=1000", "EBBFLOW_CHECKPOINT_TIMEOUT=3s")...)
	in, out, args := wcJob(t, c.dir, 40000, 5000)
	c.jobArgs = args
	c.taskmanager("tm-1", 2)
	c.taskmanager("tm-2", 1)
	jm := c.jobmanager("jm-1")
	before := jm.waitStatus("a checkpoint in S3", time.Minute, checkpointed(0))
	m.Stop()
	// The outage lasts until checkpoints have failed, not a fixed time.
	failed := jm.waitStatus("a failed checkpoint during the outage", time.Minute, func(s jobStatus) bool {
		return s.Phase == "running" && failedCheckpoints(jm) > 0
	})
	nFailed := failedCheckpoints(jm)
	m.Start(t)
	jm.waitStatus("a checkpoint after the outage", time.Minute, checkpointed(failed.LastCompleted.ID))
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	if strings.Contains(jm.stderr(), m.SecretKey) {
		t.Fatal("the S3 secret key appears in the JobManager's log")
	}
	t.Logf("checkpoint %d before the outage, %d failed during it", before.LastCompleted.ID, nFailed)
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// failedCheckpoints counts declined, expired and failed checkpoints from
// the JobManager's history.
func failedCheckpoints(j *jobmanager) int {
	resp, err := http.Get("http://" + j.http + "/v1/checkpoints")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var v struct {
		History []struct {
			Status string `json:"status"`
		} `json:"history"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return 0
	}
	n := 0
	for _, h := range v.History {
		if h.Status != "completed" {
			n++
		}
	}
	return n
}

// Pods and VMs share no folder: the job writes its output to S3 as well,
// a TaskManager is killed mid-run, and the committed objects are
// exactly-once.
func TestClusterS3OutputExactlyOnce(t *testing.T) {
	m := testenv.StartMinIO(t)
	s3env := minioEnv(m)
	c := newCluster(t, "s3://ebbflow-out/checkpoints", s3env...)
	in := filepath.Join(c.dir, "in.txt")
	writeCorpus(t, in, 24000, 11)
	const out = "s3://ebbflow-out/output"
	c.jobArgs = []string{"wordcount", "--input", in, "--output", out, "--rate", "6000"}
	tm1 := c.taskmanager("tm-1", 2)
	c.taskmanager("tm-2", 2)
	jm := c.jobmanager("jm-1")
	jm.waitStatus("a checkpoint", time.Minute, func(s jobStatus) bool { return s.Parallelism == 4 && checkpointed(0)(s) })
	tm1.kill9()
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	assertS3OutputExactlyOnce(t, s3env, out, in)
}

// Checkpoints and output both in S3, and S3 stops for a while mid-run:
// checkpoints are declined (the TaskManagers cannot store their snapshots,
// the sinks cannot stage their transactions, which stay open), the
// publishing of completed ones waits, and once S3 is back the job goes on
// without a single restart and finishes with its output exactly-once.
func TestClusterS3OutputSurvivesOutage(t *testing.T) {
	m := testenv.StartMinIO(t)
	s3env := minioEnv(m)
	c := newCluster(t, "s3://ebbflow-out/checkpoints", append(s3env, "EBBFLOW_CHECKPOINT_TOLERABLE_FAILURES=1000", "EBBFLOW_CHECKPOINT_TIMEOUT=3s")...)
	in := filepath.Join(c.dir, "in.txt")
	writeCorpus(t, in, 40000, 17)
	const out = "s3://ebbflow-out/output"
	c.jobArgs = []string{"wordcount", "--input", in, "--output", out, "--rate", "4000"}
	tms := []*proc{c.taskmanager("tm-1", 2), c.taskmanager("tm-2", 1)}
	jm := c.jobmanager("jm-1")
	before := jm.waitStatus("a checkpoint in S3", time.Minute, checkpointed(0))
	m.Stop()
	// The outage lasts until a sink itself has declined a checkpoint (not
	// only a snapshot upload), however long its retries take.
	sinkDeclined := func() bool {
		for _, tm := range tms {
			if strings.Contains(tm.stderr(), "an operator declined the checkpoint") {
				return true
			}
		}
		return false
	}
	failed := jm.waitStatus("a sink declining a checkpoint during the outage", 2*time.Minute, func(s jobStatus) bool {
		return s.Phase == "running" && failedCheckpoints(jm) > 0 && sinkDeclined()
	})
	nFailed := failedCheckpoints(jm)
	m.Start(t)
	after := jm.waitStatus("a checkpoint after the outage", 2*time.Minute, checkpointed(failed.LastCompleted.ID))
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	if after.Restarts != 0 || strings.Contains(jm.stderr(), "attempt failed") {
		t.Fatalf("the job restarted (%d restarts by the checkpoint after the outage):\n%s", after.Restarts, jm.stderr())
	}
	if strings.Contains(jm.stderr(), m.SecretKey) {
		t.Fatal("the S3 secret key appears in the JobManager's log")
	}
	for _, tm := range tms {
		if strings.Contains(tm.stderr(), m.SecretKey) {
			t.Fatal("the S3 secret key appears in a TaskManager's log")
		}
	}
	t.Logf("checkpoint %d before the outage, %d failed during it, %d after", before.LastCompleted.ID, nFailed, after.LastCompleted.ID)
	assertS3OutputExactlyOnce(t, s3env, out, in)
}

// minioEnv is the S3 connection of the processes (and of the S3 output) to
// MinIO m, creating buckets as needed.
func minioEnv(m *testenv.MinIO) []string {
	return []string{"EBBFLOW_S3_ENDPOINT=" + m.Endpoint, "EBBFLOW_S3_ACCESS_KEY=" + m.AccessKey, "EBBFLOW_S3_SECRET_KEY=" + m.SecretKey,
		"EBBFLOW_S3_TLS=false", "EBBFLOW_S3_CREATE_BUCKET=true"}
}

// assertS3OutputExactlyOnce reads the committed wordcount output in S3 (with
// the processes' S3 connection s3env) and checks it against input in.
func assertS3OutputExactlyOnce(t *testing.T, s3env []string, out, in string) {
	t.Helper()
	for _, kv := range s3env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	lines, err := filesink.ReadCommitted(out)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	testenv.AssertExactlyOnce(t, lines, testenv.WordcountReference(t, in))
}
