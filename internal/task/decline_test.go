package task_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/generator"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/internal/task"
)

// flakySink declines its first pre-commit (its store "unreachable") and
// keeps the transaction open; later pre-commits commit everything since
// the last successful one.
type flakySink struct {
	mu       sync.Mutex
	declines int
	open     int64 // records in the open transaction
}

func (s *flakySink) NewWriter(ebbflow.SinkContext) (ebbflow.SinkWriter[int64], error) { return s, nil }
func (s *flakySink) Write(int64) error {
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	return nil
}
func (s *flakySink) PreCommit(int64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.declines == 0 {
		s.declines++
		return nil, ebbflow.DeclineCheckpoint(errors.New("store unreachable"))
	}
	n := s.open
	s.open = 0
	return [][]byte{[]byte(strings.Repeat("x", int(n%7)+1))}, nil
}
func (s *flakySink) Commit([][]byte) error { return nil }
func (s *flakySink) Close() error          { return nil }

// It publishes in the background, and one committable is still on its way.
func (s *flakySink) Publishing() [][]byte { return [][]byte{[]byte("in flight")} }
func (s *flakySink) WaitCommitted() error { return nil }

type recorder struct {
	running  chan struct{}
	events   chan string
	declined chan error
	lists    chan [][]byte
}

func (r *recorder) Running() { close(r.running) }
func (r *recorder) Snapshot(id int64, _ byte, snaps map[string]graph.Snapshot) {
	r.lists <- snaps["out"].List
	r.events <- "snapshot"
}
func (r *recorder) SourceFinished()       {}
func (r *recorder) FirstRecord(time.Time) {}
func (r *recorder) Decline(id int64, err error) {
	r.events <- "decline"
	r.declined <- err
}

// An operator that declines a checkpoint (ebbflow.DeclineCheckpoint) does
// not fail its task: the checkpoint is declined, the task goes on, and the
// next checkpoint is taken.
func TestDeclinedSnapshotKeepsTheTaskRunning(t *testing.T) {
	sink := &flakySink{}
	app := ebbflow.NewApp("test")
	ebbflow.Register(app, "flaky", "", func(job *ebbflow.Job, _ *struct{}) error {
		ebbflow.Sink(ebbflow.Source(job, "numbers", generator.Sequence(1<<40, 1), ebbflow.WithRate(10000)), "out", ebbflow.SinkConnector[int64](sink))
		return nil
	})
	g, err := app.Build("flaky", nil)
	if err != nil {
		t.Fatal(err)
	}
	chains := g.Chains()
	if len(chains) != 1 {
		t.Fatalf("want one chain, got %d", len(chains))
	}
	r := &recorder{running: make(chan struct{}), events: make(chan string, 4), declined: make(chan error, 1), lists: make(chan [][]byte, 4)}
	tk := task.New(task.Config{Graph: g, Chain: chains[0], Subtask: 0, Parallelism: 1, MaxParallelism: g.MaxParallelism, Attempt: 1, Listener: r})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tk.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-r.running:
	case err := <-done:
		done <- err
		t.Fatalf("task ended: %v", err)
	}
	next := func() string {
		t.Helper()
		select {
		case ev := <-r.events:
			return ev
		case err := <-done:
			done <- err // for the deferred wait
			t.Fatalf("task ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no snapshot nor decline within 30s")
		}
		return ""
	}
	if err := tk.Send(task.Command{Kind: task.CmdTrigger, ID: 1}); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev != "decline" {
		t.Fatalf("checkpoint 1: %s, want decline", ev)
	}
	if err := <-r.declined; !graph.IsDecline(err) || !strings.Contains(err.Error(), `snapshot "out" for checkpoint 1: store unreachable`) {
		t.Fatalf("decline reason: %v", err)
	}
	if err := tk.Send(task.Command{Kind: task.CmdTrigger, ID: 2}); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev != "snapshot" {
		t.Fatalf("checkpoint 2: %s, want snapshot", ev)
	}
	// The sink's snapshot holds its new transaction and what it is still
	// publishing from earlier checkpoints.
	if l := <-r.lists; len(l) != 2 || string(l[1]) != "in flight" {
		t.Fatalf("sink snapshot: %q", l)
	}
	select {
	case err := <-done:
		done <- err
		t.Fatalf("task ended after a declined checkpoint: %v", err)
	default:
	}
}
