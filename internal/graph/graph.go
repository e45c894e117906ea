// Package graph is the untyped job graph that the typed ebbflow API builds and
// the runtime executes: vertices (operators with stable names), edges (how
// records move between them) and chaining (which vertices run in one task).
//
// Types are erased at this level: a vertex's Build function receives its typed
// downstream collector as an `any` and returns its typed input as an `any`, so
// the type assertions happen once when a task is built, never per record.
package graph

import (
	"context"
	"errors"
	"fmt"

	"github.com/ebbflow/ebbflow/state"
)

// VertexKind says how the runtime drives a vertex.
type VertexKind int

const (
	// KindSource vertices produce records when polled.
	KindSource VertexKind = iota
	// KindOperator vertices transform records.
	KindOperator
	// KindSink vertices consume records and have no outputs.
	KindSink
)

func (k VertexKind) String() string {
	switch k {
	case KindSource:
		return "source"
	case KindOperator:
		return "operator"
	case KindSink:
		return "sink"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// EdgeKind says how records are partitioned across an edge.
type EdgeKind int

const (
	// Forward sends subtask i's records to subtask i of the consumer.
	Forward EdgeKind = iota
	// Hash sends each record to the subtask that owns its key group.
	Hash
	// Rebalance spreads records round-robin over all consumer subtasks.
	Rebalance
)

func (k EdgeKind) String() string {
	switch k {
	case Forward:
		return "forward"
	case Hash:
		return "hash"
	case Rebalance:
		return "rebalance"
	}
	return fmt.Sprintf("edge(%d)", int(k))
}

// Runtime is what an operator instance knows about where it runs.
type Runtime struct {
	Ctx            context.Context
	Job            string
	Operator       string
	Subtask        int
	Parallelism    int
	MaxParallelism int
	KeyGroups      state.Range
	// Attempt increases every time the job is (re)deployed; it is unique
	// across restarts of the job and usable in file names.
	Attempt int64
	// Restored is the state handed to this subtask, nil on a fresh start.
	Restored *RestoredState
	// Logf logs a line about this operator.
	Logf func(format string, args ...any)
	// Fail records an error raised inside a record call (which cannot return
	// one); the task fails after the current batch.
	Fail func(err error)
}

// RestoredState is an operator's share of a snapshot after redistribution.
type RestoredState struct {
	// CheckpointID is the snapshot restored from.
	CheckpointID int64
	// KeyGroups maps each key group this subtask owns to its state bytes.
	KeyGroups map[int][]byte
	// List holds the operator list-state entries assigned to this subtask
	// (all entries of all old subtasks when the state is a union).
	List [][]byte
}

// Snapshot is one operator's state at a checkpoint barrier.
type Snapshot struct {
	// KeyGroups maps key group to its serialized keyed state.
	KeyGroups map[int][]byte
	// List is the operator (non-keyed) list state.
	List [][]byte
	// Union marks list state that every subtask gets whole on restore
	// instead of an even split.
	Union bool
}

// Operator is the lifecycle every operator instance has.
type Operator interface {
	// Open is called once after restore and before the first record.
	Open() error
	// Snapshot captures the operator's state for checkpoint id. It runs on
	// the task goroutine between records, so it sees a consistent state.
	Snapshot(id int64) (Snapshot, error)
	// NotifyCheckpointComplete tells the operator that checkpoint id is
	// committed (two-phase sinks publish here).
	NotifyCheckpointComplete(id int64) error
	// EndInput is called when no more records will arrive.
	EndInput() error
	// Close releases resources; it is called once, also after failures.
	Close() error
}

// PollStatus is what a source reports after a poll.
type PollStatus int

const (
	// MoreAvailable: poll again right away.
	MoreAvailable PollStatus = iota
	// NothingAvailable: nothing now; poll again after a short wait.
	NothingAvailable
	// EndOfInput: the source's splits are exhausted.
	EndOfInput
)

// SourceOperator is an Operator that produces records when polled.
type SourceOperator interface {
	Operator
	// Poll emits at most max records into the vertex's output.
	Poll(max int) (PollStatus, error)
}

// RecordWriter is the network output of a task for one edge. Records are
// appended to per-channel buffers; the writer sends full buffers.
type RecordWriter interface {
	// Channels is the number of consumer channels of this edge.
	Channels() int
	// Buf returns channel c's current buffer to append one framed record to.
	Buf(c int) []byte
	// Put stores the appended buffer back; it sends it when full.
	Put(c int, b []byte)
}

// Vertex is one operator of the job.
type Vertex struct {
	ID      int
	Name    string
	Kind    VertexKind
	Inputs  []*Edge
	Outputs []*Edge
	// Build creates the operator for one subtask. out is the typed downstream
	// collector (nil for sinks); in is the typed input collector (nil for
	// sources).
	Build func(rt *Runtime, out any) (in any, op Operator, err error)
	// FanOut merges several typed downstream collectors into one, for
	// vertices with more than one consumer.
	FanOut func(outs []any) any
	// Rate limits a source's records per second across all its subtasks
	// (0 = unlimited).
	Rate float64
}

// Edge connects a producer vertex to a consumer vertex.
type Edge struct {
	ID   int
	From *Vertex
	To   *Vertex
	Kind EdgeKind
	// NewWriter returns the producer-side typed collector that encodes and
	// partitions records into w.
	NewWriter func(w RecordWriter, rt *Runtime) any
	// NewReader returns a decoder that turns one record payload into a call
	// of the consumer's typed input collector.
	NewReader func(in any) func(payload []byte) error
}

// Graph is a whole job.
type Graph struct {
	Job            string
	MaxParallelism int
	Vertices       []*Vertex
	Edges          []*Edge
}

// AddVertex appends a vertex, giving it the next id.
func (g *Graph) AddVertex(v *Vertex) *Vertex {
	v.ID = len(g.Vertices)
	g.Vertices = append(g.Vertices, v)
	return v
}

// Connect adds an edge between two vertices.
func (g *Graph) Connect(e *Edge) *Edge {
	e.ID = len(g.Edges)
	g.Edges = append(g.Edges, e)
	e.From.Outputs = append(e.From.Outputs, e)
	e.To.Inputs = append(e.To.Inputs, e)
	return e
}

// Validate checks names, connectivity and kinds.
func (g *Graph) Validate() error {
	if len(g.Vertices) == 0 {
		return fmt.Errorf("graph: job %q has no operators", g.Job)
	}
	if g.MaxParallelism < 1 || g.MaxParallelism > state.MaxMaxParallelism {
		return fmt.Errorf("graph: job %q: max parallelism %d out of range [1,%d]", g.Job, g.MaxParallelism, state.MaxMaxParallelism)
	}
	names := map[string]bool{}
	hasSource := false
	for _, v := range g.Vertices {
		if v.Name == "" {
			return fmt.Errorf("graph: job %q: operator %d has no name", g.Job, v.ID)
		}
		if names[v.Name] {
			return fmt.Errorf("graph: job %q: operator name %q used twice; names identify state in checkpoints and must be unique", g.Job, v.Name)
		}
		names[v.Name] = true
		switch v.Kind {
		case KindSource:
			hasSource = true
			if len(v.Inputs) != 0 {
				return fmt.Errorf("graph: source %q has inputs", v.Name)
			}
		case KindSink:
			if len(v.Outputs) != 0 {
				return fmt.Errorf("graph: sink %q has outputs", v.Name)
			}
		}
		if v.Kind != KindSource && len(v.Inputs) == 0 {
			return fmt.Errorf("graph: operator %q has no input", v.Name)
		}
		if v.Kind != KindSink && len(v.Outputs) == 0 {
			return fmt.Errorf("graph: operator %q has no consumer; end the stream with a sink", v.Name)
		}
	}
	if !hasSource {
		return fmt.Errorf("graph: job %q has no source", g.Job)
	}
	return nil
}

// Chain is a group of vertices that run in one task, connected by direct
// calls. Vertices are in topological order; the first is the head.
type Chain struct {
	ID       int
	Vertices []*Vertex
	// Inputs are the network edges into the head.
	Inputs []*Edge
	// Outputs are the network edges leaving any vertex of the chain.
	Outputs []*Edge
}

// Head is the first vertex of the chain.
func (c *Chain) Head() *Vertex { return c.Vertices[0] }

// Name joins the chain's vertex names.
func (c *Chain) Name() string {
	s := ""
	for i, v := range c.Vertices {
		if i > 0 {
			s += " -> "
		}
		s += v.Name
	}
	return s
}

// Chainable reports whether an edge is a direct call inside a chain: a
// forward edge from a vertex with one consumer to a vertex with one input.
func Chainable(e *Edge) bool {
	return e.Kind == Forward && len(e.From.Outputs) == 1 && len(e.To.Inputs) == 1
}

// Chains groups the graph into chains, in a deterministic order (by head
// vertex id), so every process computes the same chain ids.
func (g *Graph) Chains() []*Chain {
	chainOf := map[*Vertex]*Chain{}
	var chains []*Chain
	for _, v := range g.Vertices { // vertices are added in topological order
		if len(v.Inputs) == 1 && Chainable(v.Inputs[0]) {
			c := chainOf[v.Inputs[0].From]
			c.Vertices = append(c.Vertices, v)
			chainOf[v] = c
			continue
		}
		c := &Chain{ID: len(chains), Vertices: []*Vertex{v}, Inputs: v.Inputs}
		chains = append(chains, c)
		chainOf[v] = c
	}
	for _, c := range chains {
		for _, v := range c.Vertices {
			for _, e := range v.Outputs {
				if !Chainable(e) {
					c.Outputs = append(c.Outputs, e)
				}
			}
		}
	}
	return chains
}

// Registry builds a registered job's graph from its arguments; the same
// binary serves it in every process, so every process builds the same graph.
type Registry interface {
	Build(job string, args []string) (*Graph, error)
}

// unrecoverable marks an error that restarting the job cannot fix.
type unrecoverable struct{ err error }

func (u unrecoverable) Error() string { return u.err.Error() }
func (u unrecoverable) Unwrap() error { return u.err }

// Unrecoverable wraps err so the JobManager fails the job at once instead of
// restarting it.
func Unrecoverable(err error) error {
	if err == nil {
		return nil
	}
	return unrecoverable{err: err}
}

// IsUnrecoverable reports whether err (or an error it wraps) is marked
// unrecoverable.
func IsUnrecoverable(err error) bool {
	var u unrecoverable
	return errors.As(err, &u)
}

// decline marks a snapshot error after which the task can go on.
type decline struct{ err error }

func (d decline) Error() string { return d.err.Error() }
func (d decline) Unwrap() error { return d.err }

// DeclineCheckpoint wraps a snapshot error to mean: this checkpoint cannot
// be taken (say, the store is unreachable), but the operator's state is
// intact and the task can go on; the checkpoint is declined instead of the
// task failing.
func DeclineCheckpoint(err error) error {
	if err == nil {
		return nil
	}
	return decline{err: err}
}

// IsDecline reports whether err (or an error it wraps) declines a
// checkpoint.
func IsDecline(err error) bool {
	var d decline
	return errors.As(err, &d)
}
