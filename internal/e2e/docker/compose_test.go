package docker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/connectors/filesink"
	"github.com/ebbflow/ebbflow/internal/testenv"
	"github.com/ebbflow/ebbflow/jobcluster"
)

// The input: lines at rate lines/s make a job of about 90 s, which the
// scaling steps below (40 s here) must fit in.
const (
	inputLines = 27000
	inputRate  = 300
)

// TestComposeStackRescales is the compose stack as a user runs it: up with
// one TaskManager, `up --scale` to 3 and back to 2, `docker stop` one
// (drain), `docker kill` one (loss), and cut one off the network for longer
// than its lease TTL and back. After each step the REST API must show the
// parallelism the TaskManagers allow, and at the end the output committed
// to MinIO must be exactly-once.
func TestComposeStackRescales(t *testing.T) {
	e := requireEngine(t)
	requireImages(t, e)
	checkImage(t)

	in := t.TempDir()
	// The containers run as 65532, not as the owner of the temp folder.
	if err := os.Chmod(in, 0o755); err != nil {
		t.Fatal(err)
	}
	corpus := filepath.Join(in, "input.txt")
	testenv.WriteCorpus(t, corpus, inputLines, 7)
	s := newStack(t, e, in, map[string]string{
		"EBBFLOW_RATE":                strconv.Itoa(inputRate),
		"EBBFLOW_CHECKPOINT_INTERVAL": "1s",
		"EBBFLOW_JOBMANAGER_COOLDOWN": "2s",
	})
	start := time.Now()

	// 1 TaskManager.
	s.up(1)
	s.waitParallelism("up with 1 taskmanager", 1, "", 3*time.Minute)
	poll(t, "a completed checkpoint", time.Minute, func() (bool, string) {
		st, err := s.status()
		if err != nil {
			return false, err.Error()
		}
		return st.LastCompleted != nil, describe(st)
	})
	tm := s.running("taskmanager")[0]
	if top := docker(t, time.Minute, "top", tm.ID, "-o", "uid,pid,args"); !strings.Contains(top, "65532") {
		t.Fatalf("the taskmanager does not run as uid 65532:\n%s", top)
	}

	// 1 → 3: a planned scale-up through a stop-with-savepoint.
	s.up(3)
	st := s.waitParallelism("scaled to 3", 3, "scale-up", 2*time.Minute)
	if r := st.Rescales[len(st.Rescales)-1]; r.From != 1 || !r.Savepoint {
		t.Fatalf("scale-up 1 -> 3: got %+v, want from 1 through a savepoint", r)
	}

	// 3 → 2: compose stops the surplus TaskManager, which drains.
	s.up(2)
	st = s.waitParallelism("scaled to 2", 2, "drain", 2*time.Minute)
	if r := st.Rescales[len(st.Rescales)-1]; r.From != 3 || !r.Savepoint {
		t.Fatalf("drain 3 -> 2: got %+v, want from 3 through a savepoint", r)
	}

	// docker stop: SIGTERM reaches the binary (PID 1), it drains and exits 0
	// within stop_grace_period.
	tms := s.running("taskmanager")
	if len(tms) != 2 {
		t.Fatalf("%d taskmanagers running after scaling to 2", len(tms))
	}
	stopped := tms[0]
	t0 := time.Now()
	docker(t, 2*time.Minute, "stop", stopped.ID)
	if c := s.inspect(stopped.ID); c.Running || c.ExitCode != 0 {
		t.Fatalf("docker stop: taskmanager %s is %s with exit code %d after %v, want exited 0 (drained)", tmOf(c), c.Status, c.ExitCode, time.Since(t0))
	}
	if l := s.logs(stopped.ID); !strings.Contains(l, "drained") {
		t.Fatalf("docker stop: taskmanager %s exited 0 without draining:\n%s", tmOf(stopped), tail(l, 20))
	}
	t.Logf("docker stop of a taskmanager: drained and exited 0 in %v", time.Since(t0).Round(time.Millisecond))
	s.waitParallelism("after docker stop", 1, "drain", 2*time.Minute)

	// The health check: the image's HEALTHCHECK runs the binary itself.
	poll(t, "the jobmanager container healthy", 90*time.Second, func() (bool, string) {
		c := s.running("jobmanager")
		if len(c) != 1 {
			return false, fmt.Sprintf("%d jobmanagers running", len(c))
		}
		return c[0].Health == "healthy", c[0].Health
	})

	// Back to 3 (compose starts the stopped one again and adds one).
	s.up(3)
	s.waitParallelism("scaled to 3 again", 3, "scale-up", 2*time.Minute)

	// docker kill: a loss; the job restores from the latest checkpoint.
	tms = s.running("taskmanager")
	killed := tms[len(tms)-1]
	docker(t, time.Minute, "kill", killed.ID)
	st = s.waitParallelism("after docker kill", 2, "loss", 2*time.Minute)
	if r := st.Rescales[len(st.Rescales)-1]; r.Savepoint {
		t.Fatalf("loss: restored from savepoint %d, want the latest checkpoint", r.Snapshot)
	}

	// A partition longer than the lease TTL: the JobManager must give the
	// TaskManager up, the TaskManager must stop its tasks (its lease is
	// gone) and then either rejoin with a new registration or exit.
	tms = s.running("taskmanager")
	if len(tms) != 2 {
		t.Fatalf("%d taskmanagers running, want 2", len(tms))
	}
	cut := tms[0]
	if len(cut.Networks) != 1 {
		t.Fatalf("taskmanager %s is on networks %v, want one", tmOf(cut), cut.Networks)
	}
	network := cut.Networks[0]
	docker(t, time.Minute, "network", "disconnect", network, cut.ID)
	t0 = time.Now()
	s.waitParallelism("taskmanager cut off", 1, "loss", 2*time.Minute)
	poll(t, "the cut-off taskmanager to end its tasks", 2*time.Minute, func() (bool, string) {
		c := s.inspect(cut.ID)
		l := s.logs(cut.ID)
		return strings.Contains(l, "lease") && strings.Contains(l, "lost") && (c.Restarts > cut.Restarts || !c.Running),
			fmt.Sprintf("%s, %d restarts; log:\n%s", c.Status, c.Restarts, tail(l, 10))
	})
	t.Logf("cut-off taskmanager %s gave up its lease and stopped after %v", tmOf(cut), time.Since(t0).Round(time.Millisecond))
	docker(t, time.Minute, "network", "connect", "--alias", "taskmanager", network, cut.ID)
	poll(t, "the cut-off taskmanager to rejoin or exit", 2*time.Minute, func() (bool, string) {
		c := s.inspect(cut.ID)
		if !c.Running && c.Status == "exited" && c.ExitCode != 0 {
			return true, ""
		}
		tms, err := s.taskManagers()
		if err != nil {
			return false, err.Error()
		}
		for _, tm := range tms {
			if tm.ID == tmOf(c) && tm.Connected && c.Running {
				return true, ""
			}
		}
		return false, fmt.Sprintf("container %s (%d restarts), taskmanagers %+v", c.Status, c.Restarts, tms)
	})
	rejoined := false
	if c := s.inspect(cut.ID); c.Running {
		rejoined = true
		if n := strings.Count(s.logs(cut.ID), "\tregistered\t"); n < 2 {
			t.Fatalf("the reconnected taskmanager is connected but registered %d times, want a new registration", n)
		}
		s.waitParallelism("cut-off taskmanager rejoined", 2, "scale-up", 2*time.Minute)
	} else {
		t.Logf("the cut-off taskmanager exited with code %d", c.ExitCode)
	}
	t.Logf("all steps done after %v", time.Since(start).Round(time.Second))

	// The job ends with its bounded input; the JobManager exits 0.
	var last jobcluster.Status
	poll(t, "the jobmanager to finish", 5*time.Minute, func() (bool, string) {
		cs := s.containers("jobmanager")
		if len(cs) != 1 {
			return false, fmt.Sprintf("%d jobmanager containers", len(cs))
		}
		c := cs[0]
		if !c.Running && c.Status == "exited" {
			if c.ExitCode != 0 {
				t.Fatalf("jobmanager exited %d:\n%s", c.ExitCode, tail(s.logs(c.ID), 30))
			}
			return true, ""
		}
		st, err := s.status()
		if err != nil {
			return false, err.Error()
		}
		last = st
		return false, describe(st)
	})
	jmLog := s.logs(s.containers("jobmanager")[0].ID)
	if !strings.Contains(jmLog, "wordcount finished") {
		t.Fatalf("jobmanager exited 0 without finishing the job:\n%s", tail(jmLog, 30))
	}
	if strings.Contains(jmLog, s3SecretKey) {
		t.Fatal("the S3 secret key appears in the JobManager's log")
	}
	t.Logf("job finished %v after the stack came up", time.Since(start).Round(time.Second))

	// Exactly-once: the committed output in MinIO against an independent
	// word count of the input.
	t.Setenv("EBBFLOW_S3_ENDPOINT", s.s3)
	t.Setenv("EBBFLOW_S3_ACCESS_KEY", s3AccessKey)
	t.Setenv("EBBFLOW_S3_SECRET_KEY", s3SecretKey)
	t.Setenv("EBBFLOW_S3_TLS", "false")
	got, err := filesink.ReadCommitted("s3://ebbflow/wordcount/output")
	if err != nil {
		t.Fatal(err)
	}
	testenv.AssertExactlyOnce(t, got, testenv.WordcountReference(t, corpus))
	t.Logf("%d output lines, exactly once", len(got))

	// The rescale history (REST, read last while the job ran) holds every
	// step, in order. A loss may first surface as a failed task (a data
	// channel to the dead TaskManager breaks); the deployment is gone by
	// the time the loss is handled, so its "from" is then 0.
	steps := []string{"scale-up 1->3", "drain 3->2", "drain 2->1", "scale-up 1->3", "loss *->2", "loss *->1"}
	if rejoined {
		steps = append(steps, "scale-up 1->2")
	}
	assertHistory(t, last.Rescales, steps)
}

// checkImage checks the image's configuration and reports its size.
func checkImage(t *testing.T) {
	t.Helper()
	var img []struct {
		Size   int64
		Config struct {
			User         string
			Entrypoint   []string
			ExposedPorts map[string]any
			Healthcheck  struct{ Test []string }
		}
	}
	if err := json.Unmarshal([]byte(docker(t, time.Minute, "image", "inspect", ebbflowImage)), &img); err != nil || len(img) != 1 {
		t.Fatalf("docker image inspect %s: %v", ebbflowImage, err)
	}
	c := img[0].Config
	t.Logf("image %s: %.1f MB (%d bytes)", ebbflowImage, float64(img[0].Size)/1e6, img[0].Size)
	if c.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532 (not root)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/ebbflow"}) {
		t.Errorf("entrypoint %q, want exec form [/ebbflow]", c.Entrypoint)
	}
	for _, p := range []string{"8081/tcp", "6121/tcp", "6122/tcp", "8082/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed (have %v)", p, c.ExposedPorts)
		}
	}
	if !slices.Equal(c.Healthcheck.Test, []string{"CMD", "/ebbflow", "healthcheck"}) {
		t.Errorf("health check %q, want [CMD /ebbflow healthcheck]", c.Healthcheck.Test)
	}
	// A static binary on scratch; the distroless default adds about 2 MB.
	if img[0].Size > 100<<20 {
		t.Errorf("image is %d MB; the binary alone should be a few tens of MB", img[0].Size>>20)
	}
}

// assertHistory checks that the rescale history holds the steps in order
// (other rescales may come between).
func assertHistory(t *testing.T, recs []jobcluster.RescaleRecord, want []string) {
	t.Helper()
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %d->%d", r.Trigger, r.From, r.To))
	}
	i := 0
	for _, r := range recs {
		if i == len(want) {
			break
		}
		trigger, fromTo, _ := strings.Cut(want[i], " ")
		from, to, _ := strings.Cut(fromTo, "->")
		if r.Trigger == trigger && (from == "*" || from == strconv.Itoa(r.From)) && to == strconv.Itoa(r.To) {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("rescale history %v lacks %q (in order: %v)", got, want[i], want)
	}
	t.Logf("rescale history: %v", got)
}
