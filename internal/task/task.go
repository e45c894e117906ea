// Package task runs one task: one subtask of one operator chain. It builds
// the chain's operators, connects its network inputs and outputs, and drives
// records, checkpoint barriers and end of stream through it on a single
// goroutine. Sources are polled; other chains read their input gate, whose
// channels block after a barrier until every channel has delivered it
// (aligned checkpoints).
package task

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/network"
	"github.com/ebbflow/ebbflow/state"
)

// CommandKind is a command from the JobManager to a running task.
type CommandKind int

const (
	// CmdTrigger starts checkpoint ID at a source task.
	CmdTrigger CommandKind = iota
	// CmdNotifyComplete tells the task that checkpoint ID is committed.
	CmdNotifyComplete
	// CmdFinish makes a finished source task emit end of stream.
	CmdFinish
)

// Command is sent to a task's mailbox.
type Command struct {
	Kind  CommandKind
	ID    int64
	Flags byte // network.Barrier* flags for triggers
}

// Output is where one network edge of the chain goes: one address per
// channel (consumer subtask reachable from this subtask).
type Output struct {
	Edge  *graph.Edge
	Addrs []string
	// Targets are the consumer subtask index of each channel.
	Targets []int
}

// Listener receives a task's reports. Calls come from the task goroutine.
type Listener interface {
	Running()
	// Snapshot hands over the chain's state for checkpoint id; the listener
	// persists it (asynchronously) and acknowledges.
	Snapshot(id int64, flags byte, snaps map[string]graph.Snapshot)
	// Decline reports that an operator could not snapshot for checkpoint
	// id but the task goes on (graph.DeclineCheckpoint).
	Decline(id int64, err error)
	SourceFinished()
	// FirstRecord reports the first record a sink of this task received.
	FirstRecord(at time.Time)
}

// Config describes a task to run.
type Config struct {
	Graph          *graph.Graph
	Chain          *graph.Chain
	Subtask        int
	Parallelism    int
	MaxParallelism int
	Attempt        int64
	Restored       map[string]*graph.RestoredState // by operator name
	Gate           *network.Gate                   // nil for source chains
	Outputs        []Output
	BufferSize     int
	BufferTimeout  time.Duration
	ConnectTimeout time.Duration
	Listener       Listener
	Logf           func(format string, args ...any)
}

// Stats are counters readable from other goroutines.
type Stats struct {
	RecordsIn  atomic.Int64 // records emitted by the source or read from the gate
	RecordsOut atomic.Int64 // records written to the network
}

// Task is one running task.
type Task struct {
	cfg   Config
	cmds  chan Command
	Stats Stats

	ops     []graph.Operator
	source  graph.SourceOperator
	writers []*network.Writer
	readers map[int]func([]byte) error // by edge id
	failure error
	sinks   int

	lastSnapshot int64 // last checkpoint this task snapshotted
	lastNotified int64 // last checkpoint notified complete
}

// New prepares a task; Run starts it.
func New(cfg Config) *Task {
	if cfg.BufferTimeout <= 0 {
		cfg.BufferTimeout = 10 * time.Millisecond
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	// The mailbox is buffered so that the control connection never blocks
	// on a busy task; commands are rare (a few per checkpoint).
	return &Task{cfg: cfg, cmds: make(chan Command, 64)}
}

// Send queues a command; it fails only if the mailbox is full.
func (t *Task) Send(c Command) error {
	select {
	case t.cmds <- c:
		return nil
	default:
		return errors.New("task: mailbox full")
	}
}

// Run executes the task until it finishes (nil), ctx ends, or it fails.
func (t *Task) Run(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("task %s subtask %d: panic: %v\n%s", t.cfg.Chain.Name(), t.cfg.Subtask, r, debug.Stack())
		}
		err = errors.Join(err, t.close())
	}()
	if err := t.build(ctx); err != nil {
		return err
	}
	// A consumer cut off by a network partition sends no more credits and
	// no FIN or RST either, so a send waiting for credit (or a write into a
	// full socket buffer) would wait forever and the task could never be
	// stopped. Cancelling the task closes its output channels, which wakes
	// such a send with an error.
	defer context.AfterFunc(ctx, func() {
		for _, w := range t.writers {
			_ = w.Close()
		}
	})()
	if t.cfg.Gate != nil {
		select {
		case <-t.cfg.Gate.Attached():
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(t.cfg.ConnectTimeout):
			return fmt.Errorf("task %s subtask %d: inputs not connected after %v", t.cfg.Chain.Name(), t.cfg.Subtask, t.cfg.ConnectTimeout)
		}
	}
	for _, op := range t.ops {
		if err := op.Open(); err != nil {
			return err
		}
	}
	t.cfg.Listener.Running()
	if t.source != nil {
		return t.runSource(ctx)
	}
	return t.runInput(ctx)
}

func (t *Task) fail(err error) {
	if t.failure == nil {
		t.failure = err
	}
}

func (t *Task) build(ctx context.Context) error {
	c := t.cfg
	kgs := state.RangeFor(c.Subtask, c.MaxParallelism, c.Parallelism)
	// Dial every output channel first: the consumers register their gates
	// when deployed and the data server holds early connections.
	dctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	writerOf := map[int]*network.Writer{}
	for _, o := range c.Outputs {
		chans := make([]*network.OutChannel, len(o.Addrs))
		from := c.Subtask
		if o.Edge.Kind == graph.Forward {
			from = 0 // a forward channel is the consumer's only one on this edge
		}
		for i, addr := range o.Addrs {
			h := network.Hello{Job: c.Graph.Job, Attempt: c.Attempt, Chain: chainOf(c.Graph, o.Edge.To), Edge: o.Edge.ID, From: from, To: o.Targets[i], Channels: c.Parallelism}
			ch, err := network.Dial(dctx, addr, h)
			if err != nil {
				for _, x := range chans[:i] {
					x.Close()
				}
				return fmt.Errorf("task %s subtask %d: output edge %s → %s: %w", c.Chain.Name(), c.Subtask, o.Edge.From.Name, o.Edge.To.Name, err)
			}
			chans[i] = ch
		}
		w := network.NewWriter(chans, c.BufferSize)
		t.writers = append(t.writers, w)
		writerOf[o.Edge.ID] = w
	}
	// Build operators from the tail of the chain to its head, so each gets
	// its typed downstream collector.
	vs := c.Chain.Vertices
	inputs := make([]any, len(vs))
	t.ops = make([]graph.Operator, len(vs))
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		var outs []any
		for _, e := range v.Outputs {
			if graph.Chainable(e) {
				outs = append(outs, inputs[i+1])
				continue
			}
			w := writerOf[e.ID]
			if w == nil {
				return fmt.Errorf("task: edge %d of %q has no output", e.ID, v.Name)
			}
			outs = append(outs, e.NewWriter(w, t.runtime(ctx, v, kgs)))
		}
		var out any
		switch len(outs) {
		case 0:
		case 1:
			out = outs[0]
		default:
			out = v.FanOut(outs)
		}
		in, op, err := v.Build(t.runtime(ctx, v, kgs), out)
		if err != nil {
			return fmt.Errorf("task %s subtask %d: build %s %q: %w", c.Chain.Name(), c.Subtask, v.Kind, v.Name, err)
		}
		inputs[i], t.ops[i] = in, op
		if v.Kind == graph.KindSink {
			t.sinks++
		}
	}
	if vs[0].Kind == graph.KindSource {
		src, ok := t.ops[0].(graph.SourceOperator)
		if !ok {
			return fmt.Errorf("task: source %q does not implement polling", vs[0].Name)
		}
		t.source = src
		return nil
	}
	if c.Gate == nil {
		return fmt.Errorf("task %s: no input gate", c.Chain.Name())
	}
	t.readers = map[int]func([]byte) error{}
	for _, e := range c.Chain.Inputs {
		t.readers[e.ID] = e.NewReader(inputs[0])
	}
	return nil
}

func chainOf(g *graph.Graph, v *graph.Vertex) int {
	for _, c := range g.Chains() {
		for _, x := range c.Vertices {
			if x == v {
				return c.ID
			}
		}
	}
	return -1
}

func (t *Task) runtime(ctx context.Context, v *graph.Vertex, kgs state.Range) *graph.Runtime {
	c := t.cfg
	name := v.Name
	return &graph.Runtime{
		Ctx: ctx, Job: c.Graph.Job, Operator: name, Subtask: c.Subtask, Parallelism: c.Parallelism,
		MaxParallelism: c.MaxParallelism, KeyGroups: kgs, Attempt: c.Attempt, Restored: c.Restored[name],
		Logf: func(f string, a ...any) { c.Logf("%s[%d]: "+f, append([]any{name, c.Subtask}, a...)...) },
		Fail: t.fail,
	}
}

// snapshot captures every operator of the chain in order and forwards the
// barrier downstream.
func (t *Task) snapshot(id int64, flags byte) error {
	snaps := make(map[string]graph.Snapshot, len(t.ops))
	var declined error
	for i, op := range t.ops {
		s, err := op.Snapshot(id)
		if err != nil {
			err = fmt.Errorf("snapshot %q for checkpoint %d: %w", t.cfg.Chain.Vertices[i].Name, id, err)
			if !graph.IsDecline(err) {
				return err
			}
			// The operators after it are not asked: the checkpoint is
			// lost anyway, and what they would pre-commit stays open.
			declined = err
			break
		}
		snaps[t.cfg.Chain.Vertices[i].Name] = s
	}
	// The barrier goes on either way, so that downstream tasks align and
	// the stream keeps flowing.
	for _, w := range t.writers {
		if err := w.BroadcastBarrier(id, flags); err != nil {
			return err
		}
	}
	if declined != nil {
		t.cfg.Listener.Decline(id, declined)
		return nil
	}
	t.cfg.Listener.Snapshot(id, flags, snaps)
	t.lastSnapshot = id
	return nil
}

func (t *Task) notify(id int64) error {
	if id > t.lastNotified {
		t.lastNotified = id
	}
	for i, op := range t.ops {
		if err := op.NotifyCheckpointComplete(id); err != nil {
			return fmt.Errorf("%q: checkpoint %d complete: %w", t.cfg.Chain.Vertices[i].Name, id, err)
		}
	}
	return nil
}

// finish ends input for every operator and sends end of stream downstream.
func (t *Task) finish() error {
	for i, op := range t.ops {
		if err := op.EndInput(); err != nil {
			return fmt.Errorf("%q: end of input: %w", t.cfg.Chain.Vertices[i].Name, err)
		}
	}
	for _, w := range t.writers {
		if err := w.EndOfStream(); err != nil {
			return err
		}
	}
	return nil
}

func (t *Task) flush() error {
	for _, w := range t.writers {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (t *Task) checkFailure() error {
	if t.failure != nil {
		return t.failure
	}
	for _, w := range t.writers {
		if err := w.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (t *Task) countOut() {
	var n int64
	for _, w := range t.writers {
		n += w.Records()
	}
	t.Stats.RecordsOut.Store(n)
}

func (t *Task) close() error {
	var errs []error
	for i := len(t.ops) - 1; i >= 0; i-- {
		if t.ops[i] != nil {
			errs = append(errs, t.ops[i].Close())
		}
	}
	for _, w := range t.writers {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}
