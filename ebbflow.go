// Package ebbflow is the job API of the ebbflow stream processor: a job is
// ordinary Go code that builds a graph of typed streams and hands it to
// ebbflow's command line, so one binary runs as `local`, `jobmanager` or
// `taskmanager`.
//
//	app := ebbflow.NewApp("my-pipeline")
//	ebbflow.Register(app, "wordcount", "count words", func(job *ebbflow.Job, args *Args) error {
//		lines := ebbflow.Source(job, "lines", filesource.Lines(args.Input))
//		words := ebbflow.FlatMap(lines, "tokenize", tokenize)
//		counts := ebbflow.Process(ebbflow.KeyBy(words, identity), "count", countPerWord)
//		ebbflow.Sink(counts, "out", filesink.Lines(args.Output, format))
//		return nil
//	})
//	app.Main()
//
// Transformations are package functions because Go methods cannot take type
// parameters. Every operator has a name that is stable across versions of the
// job: state in checkpoints is keyed by it.
package ebbflow

import (
	"fmt"

	"github.com/ebbflow/ebbflow/codec"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/state"
)

// Unrecoverable marks an error (from a connector or user function) that a
// restart cannot fix, such as an output folder that holds another run's
// output: the job fails at once with it instead of restarting.
func Unrecoverable(err error) error { return graph.Unrecoverable(err) }

// DeclineCheckpoint marks an error of a snapshot (a sink's PreCommit) that
// leaves the operator intact: the store is unreachable for now, and the
// transaction stays open to be pre-committed at the next checkpoint. The
// checkpoint is declined (counted against checkpoint.tolerable-failures)
// and the task goes on, instead of failing into a restore.
func DeclineCheckpoint(err error) error { return graph.DeclineCheckpoint(err) }

// Collector receives records from an operator.
type Collector[T any] interface {
	Collect(v T)
}

// CollectorFunc adapts a function to a Collector.
type CollectorFunc[T any] func(v T)

// Collect calls f(v).
func (f CollectorFunc[T]) Collect(v T) { f(v) }

// Job is the graph a job's build function fills in.
type Job struct {
	g   *graph.Graph
	err error
}

func newJob(name string) *Job {
	return &Job{g: &graph.Graph{Job: name, MaxParallelism: state.DefaultMaxParallelism}}
}

// Name is the job's registered name.
func (j *Job) Name() string { return j.g.Job }

// SetMaxParallelism sets the number of key groups (default 128). It is fixed
// for the job's lifetime: a checkpoint can only be restored by a job with
// the same max parallelism.
func (j *Job) SetMaxParallelism(n int) {
	if n < 1 || n > state.MaxMaxParallelism {
		j.fail(fmt.Errorf("ebbflow: max parallelism %d out of range [1,%d]", n, state.MaxMaxParallelism))
		return
	}
	j.g.MaxParallelism = n
}

func (j *Job) fail(err error) {
	if j.err == nil {
		j.err = err
	}
}

// Stream is a typed stream of records.
type Stream[T any] struct {
	job   *Job
	v     *graph.Vertex
	codec codec.Codec[T]
	// rebalance makes the next edge round-robin instead of forward.
	rebalance bool
}

// Option configures an operator.
type Option func(*options)

type options struct {
	codec any
	rate  float64
}

// WithCodec sets the codec of the operator's output records (default:
// codec.For of the output type).
func WithCodec[T any](c codec.Codec[T]) Option {
	return func(o *options) { o.codec = c }
}

// WithRate limits a source to n records per second in total, shared evenly
// by its subtasks. 0 means unlimited.
func WithRate(n float64) Option {
	return func(o *options) { o.rate = n }
}

func applyOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

func outputCodec[T any](j *Job, name string, o options) codec.Codec[T] {
	if o.codec != nil {
		c, ok := o.codec.(codec.Codec[T])
		if !ok {
			j.fail(fmt.Errorf("ebbflow: operator %q: WithCodec has type %T, want codec.Codec[%T]", name, o.codec, *new(T)))
			return codec.For[T]()
		}
		return c
	}
	return codec.For[T]()
}
