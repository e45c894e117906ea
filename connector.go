package ebbflow

import (
	"context"

	"github.com/ebbflow/ebbflow/internal/graph"
)

// PollStatus is what a source reader reports after a poll.
type PollStatus = graph.PollStatus

const (
	// MoreAvailable: the reader has more records right now.
	MoreAvailable = graph.MoreAvailable
	// NothingAvailable: nothing right now (an unbounded source waiting).
	NothingAvailable = graph.NothingAvailable
	// EndOfInput: every split of this reader is exhausted.
	EndOfInput = graph.EndOfInput
)

// SourceContext tells a source reader where it runs.
type SourceContext struct {
	Subtask     int
	Parallelism int
	Attempt     int64
	Logf        func(format string, args ...any)
}

// SourceConnector is a replayable source made of splits. A split's state is
// an opaque byte string that the connector defines (for a file: path, byte
// range, position). On a fresh start every subtask calls Splits and takes
// the splits j with j mod parallelism == subtask; on restore the runtime
// hands each subtask its share of the snapshotted split states.
type SourceConnector[T any] interface {
	// Splits enumerates the whole input, deterministically: every process
	// must get the same list in the same order.
	Splits() ([][]byte, error)
	// NewReader opens a reader over the given split states.
	NewReader(ctx SourceContext, splits [][]byte) (SourceReader[T], error)
}

// SourceReader reads the splits assigned to one subtask.
type SourceReader[T any] interface {
	// Poll emits at most max records into out.
	Poll(out Collector[T], max int) (PollStatus, error)
	// Snapshot returns the current state of every assigned split, finished
	// ones included, in the form NewReader accepts.
	Snapshot() ([][]byte, error)
	// Close releases the reader.
	Close() error
}

// SinkContext tells a sink writer where it runs.
type SinkContext struct {
	Subtask     int
	Parallelism int
	// Attempt is unique per deployment of the job and increases; use it in
	// names of files in progress so leftovers of older attempts can be told
	// apart.
	Attempt int64
	// Restored is true when the job resumed from a snapshot.
	Restored bool
	// Committables are the pre-committed transactions recorded in the
	// snapshot the job resumed from, all of them, handed to subtask 0 only.
	// That writer must commit them (idempotently) and may discard leftovers
	// of older attempts that are not among them.
	Committables [][]byte
	Logf         func(format string, args ...any)
	// Ctx is done when the task is cancelled: a writer's requests and
	// background work should end with it.
	Ctx context.Context
}

// SinkConnector creates two-phase sink writers.
type SinkConnector[T any] interface {
	NewWriter(ctx SinkContext) (SinkWriter[T], error)
}

// SinkWriter is one subtask's writer of a two-phase sink. Records written
// between two checkpoint barriers form a transaction: PreCommit at the
// barrier of checkpoint n finishes it and describes it as committables, which
// go into checkpoint n; Commit publishes them once n is committed, and again
// after a restore, so it must be idempotent.
type SinkWriter[T any] interface {
	Write(v T) error
	PreCommit(checkpointID int64) ([][]byte, error)
	Commit(committables [][]byte) error
	// Close aborts whatever is not pre-committed.
	Close() error
}

// SinkCommitWaiter is implemented by sink writers whose Commit only starts
// publishing the committables (in the background, so that the task is not
// held up) and reports a failure from a later call.
//
// Publishing returns the committables handed to Commit that are not
// published yet: the runtime keeps them in every snapshot until they are,
// so that a restore from any later checkpoint publishes them (Close may
// abandon publishing in progress). WaitCommitted returns once everything
// handed to Commit is published, or the first error, or SinkContext.Ctx's
// error; the runtime calls it when the sink's input has ended and its last
// checkpoint is complete, so that a bounded job ends only with its output
// published.
type SinkCommitWaiter interface {
	Publishing() [][]byte
	WaitCommitted() error
}
