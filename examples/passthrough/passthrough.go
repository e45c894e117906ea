// Package passthrough is a stateless job for measuring the runtime: a
// generator of sequence numbers straight into a sink, optionally through a
// network shuffle.
package passthrough

import (
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/filesink"
	"github.com/ebbflow/ebbflow/connectors/generator"
)

// Args are the job's flags.
type Args struct {
	Count     int64   `flag:"count" default:"10000000" usage:"numbers to generate"`
	Output    string  `flag:"output" usage:"folder for committed output (empty: count records and discard them)"`
	Rate      float64 `flag:"rate" usage:"total records per second (0 = unthrottled)"`
	Rebalance bool    `flag:"rebalance" usage:"send records over the network (round-robin) instead of chaining source and sink"`
}

// Validate checks the flags.
func (a *Args) Validate() error {
	if a.Count < 1 {
		return errors.New("--count must be at least 1")
	}
	if a.Rate < 0 {
		return errors.New("--rate must not be negative")
	}
	if a.Output != "" {
		return filesink.Check(a.Output)
	}
	return nil
}

// Register adds the job to app as "passthrough".
func Register(app *ebbflow.App) {
	ebbflow.Register(app, "passthrough", "generate numbers into a sink (runtime benchmark)", Build)
}

// Discarded counts records the discard sink received in this process.
var Discarded atomic.Int64

// Build fills in the job graph.
func Build(job *ebbflow.Job, args *Args) error {
	nums := ebbflow.Source(job, "numbers", generator.Sequence(args.Count, 128), ebbflow.WithRate(args.Rate))
	if args.Rebalance {
		nums = ebbflow.Rebalance(nums)
	}
	if args.Output == "" {
		ebbflow.Sink(nums, "discard", discard{})
		return nil
	}
	ebbflow.Sink(nums, "out", filesink.Lines(args.Output, func(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }))
	return nil
}

type discard struct{}

func (discard) NewWriter(ebbflow.SinkContext) (ebbflow.SinkWriter[int64], error) {
	return &discardWriter{}, nil
}

type discardWriter struct{ n int64 }

func (d *discardWriter) Write(int64) error { d.n++; return nil }
func (d *discardWriter) PreCommit(int64) ([][]byte, error) {
	Discarded.Add(d.n)
	d.n = 0
	return nil, nil
}
func (d *discardWriter) Commit([][]byte) error { return nil }
func (d *discardWriter) Close() error          { return nil }
