package task_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/examples/passthrough"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/internal/task"
)

type listener struct{ running chan struct{} }

func (l *listener) Running()                                        { close(l.running) }
func (l *listener) Snapshot(int64, byte, map[string]graph.Snapshot) {}
func (l *listener) SourceFinished()                                 {}
func (l *listener) Decline(int64, error)                            {}
func (l *listener) FirstRecord(time.Time)                           {}

// A consumer cut off by a network partition neither sends credits nor
// closes the connection. A source task blocked sending to it must still
// end when it is cancelled, or its TaskManager can never stop it (nor
// redeploy, nor exit after losing its lease).
func TestCancelEndsTaskBlockedOnSilentConsumer(t *testing.T) {
	app := ebbflow.NewApp("test")
	passthrough.Register(app)
	g, err := app.Build("passthrough", []string{"--count", "100000000", "--rebalance"})
	if err != nil {
		t.Fatal(err)
	}
	var src *graph.Chain
	for _, c := range g.Chains() {
		if c.Head().Kind == graph.KindSource {
			src = c
		}
	}
	if src == nil || len(src.Outputs) != 1 {
		t.Fatalf("want a source chain with one network output, got %+v", src)
	}

	// The silent consumer: accepts, reads whatever comes, never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		accepted <- c
		_, _ = io.Copy(io.Discard, c)
	}()
	defer func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}()

	l := &listener{running: make(chan struct{})}
	tk := task.New(task.Config{
		Graph: g, Chain: src, Subtask: 0, Parallelism: 1, MaxParallelism: g.MaxParallelism, Attempt: 1,
		Outputs:  []task.Output{{Edge: src.Outputs[0], Addrs: []string{ln.Addr().String()}, Targets: []int{0}}},
		Listener: l,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tk.Run(ctx) }()

	select {
	case <-l.running:
	case err := <-done:
		t.Fatalf("task ended before running: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("task not running after 30s")
	}
	// Blocked: the source has emitted records and emits no more (its first
	// buffer waits for a credit that never comes).
	deadline := time.Now().Add(30 * time.Second)
	for last := int64(-1); ; {
		n := tk.Stats.RecordsIn.Load()
		if n > 0 && n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the source never stalled (%d records) although its consumer grants no credit", n)
		}
		last = n
		time.Sleep(200 * time.Millisecond)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled task blocked on a silent consumer did not end within 10s")
	}
}
