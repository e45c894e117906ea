// Package statebench is a job with a chosen amount of keyed state, for
// measuring rescale pauses: a sequence generator keyed by n mod keys, each
// key holding a value of value-bytes bytes, into a discard sink.
package statebench

import (
	"errors"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/generator"
)

// Args are the job's flags.
type Args struct {
	Keys       int     `flag:"keys" default:"10000" usage:"number of distinct keys"`
	ValueBytes int     `flag:"value-bytes" default:"1000" usage:"bytes of state per key"`
	Count      int64   `flag:"count" default:"0" usage:"records to generate (0 = unbounded)"`
	Rate       float64 `flag:"rate" default:"50000" usage:"records per second in total (0 = unthrottled)"`
}

// Validate checks the flags.
func (a *Args) Validate() error {
	if a.Keys < 1 || a.ValueBytes < 1 || a.Count < 0 || a.Rate < 0 {
		return errors.New("--keys and --value-bytes must be positive, --count and --rate not negative")
	}
	return nil
}

// Register adds the job to app as "statebench".
func Register(app *ebbflow.App) {
	ebbflow.Register(app, "statebench", "keyed state of a chosen size (rescale benchmark)", Build)
}

// Build fills in the job graph.
func Build(job *ebbflow.Job, args *Args) error {
	nums := ebbflow.Source(job, "numbers", generator.Sequence(args.Count, 64), ebbflow.WithRate(args.Rate))
	keys := int64(args.Keys)
	keyed := ebbflow.KeyBy(nums, func(n int64) int64 { return n % keys })
	touched := ebbflow.Process(keyed, "state", func(s *ebbflow.KeyedSetup[int64]) ebbflow.KeyedProcessFunc[int64, int64, int64] {
		v := ebbflow.NewValueState[[]byte](s, "value")
		return func(ctx *ebbflow.KeyedContext[int64], n int64, out ebbflow.Collector[int64]) {
			b, ok := v.Get()
			if !ok {
				b = make([]byte, args.ValueBytes)
			}
			b[n%int64(len(b))]++
			v.Set(b)
			out.Collect(n)
		}
	})
	ebbflow.Sink(touched, "discard", discard{})
	return nil
}

type discard struct{}

func (discard) NewWriter(ebbflow.SinkContext) (ebbflow.SinkWriter[int64], error) {
	return discardW{}, nil
}

type discardW struct{}

func (discardW) Write(int64) error                 { return nil }
func (discardW) PreCommit(int64) ([][]byte, error) { return nil, nil }
func (discardW) Commit([][]byte) error             { return nil }
func (discardW) Close() error                      { return nil }
