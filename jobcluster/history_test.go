package jobcluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ebbflow/ebbflow/internal/cluster"
	"github.com/ebbflow/ebbflow/internal/testenv"
)

// killEtcd stops etcd and waits until the JobManager's client knows it is
// gone: from then on a write waits for etcd to come back.
func killEtcd(t *testing.T, e *testenv.Etcd, j *testJM) {
	t.Helper()
	e.Kill()
	waitFor(t, "client connection to etcd broken", 30*time.Second, func() bool {
		// connectivity.Ready, by name: grpc is not a direct dependency.
		return j.cfg.Etcd.ActiveConnection().GetState().String() != "READY"
	})
}

// longWrites makes a stalled history write hang until etcd is back (rather
// than give up after 2s), so the test sees it in flight.
func longWrites(c *Config) { c.SessionTTL = 2 * time.Minute }

// A history write stuck on an unreachable etcd does not hold up the
// recording of rescales nor the event loop; once etcd is back the whole
// history is stored.
func TestRescaleHistoryWriteDoesNotBlock(t *testing.T) {
	e := testenv.StartEtcd(t)
	j := newTestJM(t, e, newStorage(t), "hist", "jm-a", longWrites)
	j.history.timeout = 2 * time.Minute
	j.start(t)
	j.waitLoop(t)

	killEtcd(t, e, j)
	j.recordRescale(record(1))
	waitFor(t, "history write in flight", 30*time.Second, j.history.inFlight)
	// The write hangs. recordRescale (what the loop runs for each rescale)
	// returns at once, and the loop answers a request meanwhile.
	j.recordRescale(record(2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := j.TriggerSavepoint(ctx); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("savepoint while the history write hangs: %v, want the loop's answer that the job is not running", err)
	}
	j.history.mu.Lock()
	attempts, finished := j.history.attempts, j.history.finished
	j.history.mu.Unlock()
	if attempts != 1 || finished != 0 {
		t.Fatalf("history writes: %d started, %d over; want the first one still hanging on the unreachable etcd", attempts, finished)
	}
	if got := tos(j.Status().Rescales); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("history in memory goes to %v, want [1 2]", got)
	}

	e.Restart(t)
	cli := newClient(t, e)
	waitFor(t, "both records in etcd", time.Minute, func() bool { return slices.Equal(tos(storedHistory(t, cli, "hist")), []int{1, 2}) })
	select {
	case err := <-j.done:
		t.Fatalf("Run returned %v during the etcd outage", err)
	default:
	}
}

// A leader that stops with the last records not yet stored (etcd was
// unreachable) stores them before Run returns.
func TestRescaleHistoryFlushedAtShutdown(t *testing.T) {
	e := testenv.StartEtcd(t)
	j := newTestJM(t, e, newStorage(t), "flush", "jm-a", longWrites)
	j.history.timeout, j.history.flushTimeout = 2*time.Minute, 2*time.Minute
	j.start(t)
	j.waitLoop(t)

	killEtcd(t, e, j)
	j.recordRescale(record(1))
	waitFor(t, "history write in flight", 30*time.Second, j.history.inFlight)
	// Stop while the write hangs: the writer goroutine gives up on it, and
	// only the flush at shutdown can store the record.
	j.cancel()
	e.Restart(t)
	if err := j.wait(t, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if got := tos(storedHistory(t, newClient(t, e), "flush")); !slices.Equal(got, []int{1}) {
		t.Fatalf("history in etcd after Run returned: %v, want [1]", got)
	}
}

// A history write refused by the leader guard (another JobManager leads)
// ends the JobManager with ErrLostLeadership.
func TestRescaleHistoryRefusedEndsLeadership(t *testing.T) {
	e := testenv.StartEtcd(t)
	j := newTestJM(t, e, newStorage(t), "lost", "jm-a", nil)
	j.start(t)
	j.waitLoop(t)

	cli := newClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, cluster.LeaderPrefix("lost")+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	j.recordRescale(record(1))
	if err := j.wait(t, 30*time.Second); !errors.Is(err, ErrLostLeadership) {
		t.Fatalf("Run: %v, want ErrLostLeadership", err)
	}
	if hist := storedHistory(t, cli, "lost"); hist != nil {
		t.Fatalf("history stored without leadership: %+v", hist)
	}
}
