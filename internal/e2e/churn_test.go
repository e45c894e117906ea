package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// Churn with real processes, a real etcd and a real MinIO: while wordcount
// runs, at least 20 membership changes in random order and timing — add
// TaskManagers (one or several at once), SIGTERM one (graceful drain),
// kill -9 one (loss) — then: the committed output is exactly-once, the final
// parallelism matches the live slots, every drained TaskManager was
// released and exited 0, and the rescale history ends at the final
// parallelism.
func TestClusterChurn(t *testing.T) {
	runChurn(t, false)
}

// The same churn with a standby JobManager, killing the leader once in the
// middle.
func TestClusterChurnWithLeaderKill(t *testing.T) {
	runChurn(t, true)
}

func runChurn(t *testing.T, killLeader bool) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("churn seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 42))
	m := testenv.StartMinIO(t)
	c := newCluster(t, "s3://ebbflow-churn/checkpoints",
		append(minioEnv(m), "EBBFLOW_JOBMANAGER_STABILIZATION=300ms", "EBBFLOW_JOBMANAGER_COOLDOWN=500ms", "EBBFLOW_JOBMANAGER_DRAIN_TIMEOUT=8s",
			"EBBFLOW_TASKMANAGER_DRAIN_TIMEOUT=20s")...)
	in, out, args := wcJob(t, c.dir, 120000, 4000)
	c.jobArgs = args

	type tmProc struct {
		id    string
		slots int
		p     *proc
		gone  bool
		drain bool
	}
	var tms []*tmProc
	next := 0
	add := func() {
		next++
		slots := 1 + rng.IntN(2)
		id := fmt.Sprintf("tm-%d", next)
		tms = append(tms, &tmProc{id: id, slots: slots, p: c.taskmanager(id, slots)})
	}
	alive := func() []*tmProc {
		var a []*tmProc
		for _, tm := range tms {
			if !tm.gone {
				a = append(a, tm)
			}
		}
		return a
	}
	add()
	jms := []*jobmanager{c.jobmanager("jm-a")}
	if killLeader {
		jms = append(jms, c.jobmanager("jm-b"))
	}
	leader := func() *jobmanager {
		for {
			for _, j := range jms {
				if st, ok := j.status(); ok && st.Epoch > 0 && st.Phase != "standby" {
					return j
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	leader().waitStatus("running", time.Minute, func(s jobStatus) bool { return s.Phase == "running" })

	changes := 0
	killedLeader := false
	var log []string
	for changes < 20 {
		live := alive()
		switch op := rng.IntN(10); {
		case op < 3 || len(live) < 2:
			add()
			changes++
			log = append(log, "add "+tms[len(tms)-1].id)
		case op < 5:
			n := 2 + rng.IntN(2)
			for i := 0; i < n; i++ {
				add()
			}
			changes += n
			log = append(log, fmt.Sprintf("add %d at once", n))
		case op < 8:
			tm := live[rng.IntN(len(live))]
			tm.gone, tm.drain = true, true
			if err := tm.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			changes++
			log = append(log, "SIGTERM "+tm.id)
		default:
			tm := live[rng.IntN(len(live))]
			tm.gone = true
			tm.p.kill9()
			changes++
			log = append(log, "kill -9 "+tm.id)
		}
		if killLeader && !killedLeader && changes >= 10 {
			l := leader()
			l.kill9()
			killedLeader = true
			log = append(log, "kill -9 leader")
			var rest []*jobmanager
			for _, j := range jms {
				if j != l {
					rest = append(rest, j)
				}
			}
			jms = rest
		}
		// Random timing is the point of this test: changes land in every
		// phase (stabilizing, mid-savepoint, mid-deploy, steady).
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
	}
	t.Logf("%d membership changes: %s", changes, strings.Join(log, ", "))

	slots := 0
	for _, tm := range alive() {
		slots += tm.slots
	}
	jm := leader()
	final := jm.waitStatus(fmt.Sprintf("parallelism %d on the live slots", slots), 2*time.Minute, func(s jobStatus) bool {
		return s.Phase == "running" && s.Parallelism == slots && s.Slots == slots
	})
	if n := len(final.Rescales); n < 3 || final.Rescales[n-1].To != slots {
		t.Fatalf("rescale history %+v does not end at parallelism %d", final.Rescales, slots)
	}
	triggers := map[string]int{}
	for _, r := range final.Rescales {
		triggers[r.Trigger]++
	}
	t.Logf("%d rescales by trigger: %v", len(final.Rescales), triggers)
	// The history outlives the leader: the new one continues it from etcd
	// and records its own takeover.
	if killLeader && triggers["failover"] != 1 {
		t.Fatalf("rescale history after one leader kill has %d failover records: %+v", triggers["failover"], final.Rescales)
	}
	if code := jm.wait(3 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	for _, tm := range tms {
		if !tm.drain {
			continue
		}
		if code := tm.p.wait(30 * time.Second); code != 0 {
			t.Fatalf("drained %s exit %d:\n%s", tm.id, code, tm.p.stderr())
		}
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}
