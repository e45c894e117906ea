package e2e

import (
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/internal/termination/fakemeta"
	"github.com/ebbflow/ebbflow/internal/testenv"
)

// The instance metadata services in these tests are imitations
// (fakemeta.IMDS of EC2's IMDSv2, served by this test process): EC2 cannot
// be reached from here. Everything else is real — etcd, the ebbflow
// processes, the drain.

// watchingTaskManager starts a TaskManager that watches the AWS instance
// metadata at endpoint.
func (c *cluster) watchingTaskManager(id string, slots int, endpoint string, extraEnv ...string) *proc {
	c.t.Helper()
	p := &proc{t: c.t, cmd: exec.Command(binary, "taskmanager", "--id", id, "--slots", strconv.Itoa(slots),
		"--bind", "127.0.0.1:0", "--data-bind", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--termination-watch", "aws", "--metadata-endpoint", endpoint), done: make(chan struct{})}
	p.cmd.Env = append(append(append([]string{}, c.env...), "EBBFLOW_TASKMANAGER_METADATA_POLL_INTERVAL=200ms"), extraEnv...)
	return startPrepared(c.t, p)
}

// waitStderr waits until the process's log contains s.
func (p *proc) waitStderr(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr(), s) {
		select {
		case <-p.done:
			if strings.Contains(p.stderr(), s) {
				return
			}
			p.t.Fatalf("process ended before its log said %q:\n%s", s, p.stderr())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("log did not say %q in %v:\n%s", s, timeout, p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A JobManager and two TaskManagers; one of them is "an EC2 instance in an
// Auto Scaling group" watching (an imitation of) its instance metadata.
// When the group marks the instance Terminated (scale-in, with a
// termination lifecycle hook holding it in Terminating:Wait), that
// TaskManager drains exactly as on SIGTERM: the JobManager rescales it away
// through a savepoint (trigger drain), releases it, and it exits 0. The
// output is exactly-once and nothing is replayed.
func TestClusterDrainOnAWSTerminationNotice(t *testing.T) {
	imds := fakemeta.NewIMDS(nil)
	imds.SetLifecycleState("InService")
	srv := httptest.NewServer(imds)
	defer srv.Close()
	c := newCluster(t, "", "EBBFLOW_JOBMANAGER_STABILIZATION=500ms", "EBBFLOW_JOBMANAGER_COOLDOWN=1s")
	in, out, args := wcJob(t, c.dir, 30000, 5000)
	c.jobArgs = args
	c.taskmanager("tm-1", 2)
	tm2 := c.watchingTaskManager("tm-2", 2, srv.URL)
	jm := c.jobmanager("jm-1")
	jm.waitStatus("running at 4 with a checkpoint", time.Minute, func(s jobStatus) bool {
		return s.Phase == "running" && s.Parallelism == 4 && checkpointed(0)(s)
	})
	if !strings.Contains(tm2.stderr(), "watching the instance metadata for termination notices") {
		t.Fatalf("tm-2 does not say it watches the instance metadata:\n%s", tm2.stderr())
	}
	seen := imds.StateReads("InService")
	waitCond(t, "tm-2 polling target-lifecycle-state", func() bool { return imds.StateReads("InService") >= seen+2 })
	rescales := len(jm.waitStatus("status", time.Second, func(jobStatus) bool { return true }).Rescales)

	flipped := time.Now()
	imds.SetLifecycleState("Terminated")
	down := jm.waitStatus("a drain to 2", time.Minute, func(s jobStatus) bool {
		return len(s.Rescales) > rescales && s.Rescales[len(s.Rescales)-1].Trigger == "drain" && s.Rescales[len(s.Rescales)-1].To == 2
	})
	d := down.Rescales[len(down.Rescales)-1]
	if !d.Savepoint || d.From != 4 {
		t.Fatalf("drain %+v: want 4 → 2 through a savepoint", d)
	}
	if code := tm2.wait(30 * time.Second); code != 0 {
		t.Fatalf("drained taskmanager exit %d:\n%s", code, tm2.stderr())
	}
	t.Logf("target-lifecycle-state Terminated → tm-2 exited %v later; drain 4→2 paused %.0f ms", time.Since(flipped).Round(time.Millisecond), d.PauseMs)
	for _, want := range []string{"termination notice: aws autoscaling target-lifecycle-state Terminated; draining", "released by the JobManager"} {
		if !strings.Contains(tm2.stderr(), want) {
			t.Fatalf("tm-2's log lacks %q:\n%s", want, tm2.stderr())
		}
	}
	if c := imds.Counts(); c.TokenPuts < 1 || c.Unauthorized != 0 || c.BadRequests != 0 {
		t.Fatalf("tm-2 did not use IMDSv2 as the real service demands: %+v", c)
	}
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	if !strings.Contains(jm.output(), " 30000 source records") {
		t.Fatalf("records were replayed (want exactly 30000 source records):\n%s", jm.output())
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// The SIGTERM that follows a termination notice (the VM's shutdown) does
// not cut the drain short; a second signal does. No JobManager runs, so
// nothing releases the TaskManager and the drain waits.
func TestTaskManagerSignalsAfterTerminationNotice(t *testing.T) {
	imds := fakemeta.NewIMDS(nil)
	imds.SetLifecycleState("InService")
	srv := httptest.NewServer(imds)
	defer srv.Close()
	c := newCluster(t, "")
	tm := c.watchingTaskManager("tm-1", 1, srv.URL, "EBBFLOW_TASKMANAGER_DRAIN_TIMEOUT=5m")
	tm.waitStderr("registered", time.Minute)
	imds.SetSpotAction(`{"action": "terminate", "time": "2026-01-02T03:06:05Z"}`)
	tm.waitStderr("termination notice: aws spot interruption notice: terminate at 2026-01-02T03:06:05Z; draining", 30*time.Second)
	if err := tm.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	tm.waitStderr("already draining on a termination notice", 30*time.Second)
	select {
	case <-tm.done:
		t.Fatalf("the first SIGTERM after the notice stopped the drain:\n%s", tm.stderr())
	default:
	}
	if err := tm.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := tm.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, tm.stderr())
	}
	if !strings.Contains(tm.stderr(), "second signal; stopping without waiting for the drain") {
		t.Fatalf("the second signal did not stop the drain:\n%s", tm.stderr())
	}
}

// Told to watch EC2's metadata where there is none, the TaskManager fails
// at start with a message naming the key and the endpoint.
func TestTaskManagerTerminationWatchWithoutMetadata(t *testing.T) {
	dir := t.TempDir()
	ep := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	code, _, stderr := run(t, time.Minute, "taskmanager", "--termination-watch", "aws", "--metadata-endpoint", ep, "--checkpoint-dir", "file://"+dir)
	if code == 0 {
		t.Fatalf("exit 0 without a metadata service:\n%s", stderr)
	}
	for _, want := range []string{"taskmanager.termination-watch", ep, "does not answer"} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("stderr does not mention %q:\n%s", want, stderr)
		}
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
