package ebbflow

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/ebbflow/ebbflow/codec"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/state"
)

// Source adds a source operator called name that reads from c.
func Source[T any](job *Job, name string, c SourceConnector[T], opts ...Option) Stream[T] {
	o := applyOptions(opts)
	s := Stream[T]{job: job, codec: outputCodec[T](job, name, o)}
	s.v = job.g.AddVertex(&graph.Vertex{
		Name:   name,
		Kind:   graph.KindSource,
		Rate:   o.rate,
		FanOut: fanOut[T],
		Build: func(rt *graph.Runtime, out any) (any, graph.Operator, error) {
			var splits [][]byte
			if rt.Restored != nil {
				splits = rt.Restored.List
			} else {
				all, err := c.Splits()
				if err != nil {
					return nil, nil, fmt.Errorf("source %q: enumerate splits: %w", name, err)
				}
				for j, sp := range all {
					if j%rt.Parallelism == rt.Subtask {
						splits = append(splits, sp)
					}
				}
			}
			r, err := c.NewReader(SourceContext{Subtask: rt.Subtask, Parallelism: rt.Parallelism, Attempt: rt.Attempt, Logf: rt.Logf}, splits)
			if err != nil {
				return nil, nil, fmt.Errorf("source %q: open reader: %w", name, err)
			}
			op := &sourceOp[T]{r: r}
			op.out = &countingCollector[T]{next: out.(Collector[T]), n: &op.n}
			return nil, op, nil
		},
	})
	return s
}

type sourceOp[T any] struct {
	nopOperator
	r   SourceReader[T]
	out Collector[T]
	n   int64
}

// Emitted is the number of records the source has produced.
func (s *sourceOp[T]) Emitted() int64 { return s.n }

type countingCollector[T any] struct {
	next Collector[T]
	n    *int64
}

func (c *countingCollector[T]) Collect(v T) {
	*c.n++
	c.next.Collect(v)
}

func (s *sourceOp[T]) Poll(max int) (graph.PollStatus, error) { return s.r.Poll(s.out, max) }
func (s *sourceOp[T]) Snapshot(int64) (graph.Snapshot, error) {
	l, err := s.r.Snapshot()
	return graph.Snapshot{List: l}, err
}
func (s *sourceOp[T]) Close() error { return s.r.Close() }

// Map applies fn to every record.
func Map[T, O any](s Stream[T], name string, fn func(T) O, opts ...Option) Stream[O] {
	return addOp[T, O](s, name, graph.Forward, nil, opts, func(rt *graph.Runtime, out Collector[O]) (Collector[T], graph.Operator, error) {
		return CollectorFunc[T](func(v T) { out.Collect(fn(v)) }), nopOperator{}, nil
	})
}

// FlatMap calls fn for every record; fn emits any number of records.
func FlatMap[T, O any](s Stream[T], name string, fn func(T, Collector[O]), opts ...Option) Stream[O] {
	return addOp[T, O](s, name, graph.Forward, nil, opts, func(rt *graph.Runtime, out Collector[O]) (Collector[T], graph.Operator, error) {
		return CollectorFunc[T](func(v T) { fn(v, out) }), nopOperator{}, nil
	})
}

// Filter keeps the records for which fn returns true.
func Filter[T any](s Stream[T], name string, fn func(T) bool) Stream[T] {
	return addOp[T, T](s, name, graph.Forward, nil, []Option{WithCodec(s.codec)}, func(rt *graph.Runtime, out Collector[T]) (Collector[T], graph.Operator, error) {
		return CollectorFunc[T](func(v T) {
			if fn(v) {
				out.Collect(v)
			}
		}), nopOperator{}, nil
	})
}

// Rebalance spreads records round-robin over all subtasks of the next operator.
func Rebalance[T any](s Stream[T]) Stream[T] {
	return Stream[T]{job: s.job, v: s.v, codec: s.codec, rebalance: true}
}

// KeyedStream is a stream partitioned by a key: all records with the same
// key go to the same subtask, which holds that key's state.
type KeyedStream[K comparable, T any] struct {
	s        Stream[T]
	key      func(T) K
	keyCodec codec.Codec[K]
	// newHash makes a key hasher; each task gets its own, because a hasher
	// may keep a scratch buffer and tasks run on different goroutines.
	newHash func() func(K) uint64
}

// KeyBy partitions s by key. The key's codec (codec.For[K]) defines its
// canonical bytes, whose hash picks the key group.
func KeyBy[K comparable, T any](s Stream[T], key func(T) K) KeyedStream[K, T] {
	kc := codec.For[K]()
	return KeyedStream[K, T]{s: s, key: key, keyCodec: kc, newHash: func() func(K) uint64 { return keyHasher(kc) }}
}

// keyHasher returns the stable hash of a key: the hash of its codec bytes,
// with a fast path for string keys (whose codec bytes are the string).
func keyHasher[K comparable](kc codec.Codec[K]) func(K) uint64 {
	var zero K
	if reflect.TypeOf(zero).Kind() == reflect.String {
		probe := *(*K)(unsafe.Pointer(&[]string{"ebbflow-probe"}[0]))
		if string(kc.Append(nil, probe)) == "ebbflow-probe" {
			return func(k K) uint64 { return state.HashString(*(*string)(unsafe.Pointer(&k))) }
		}
	}
	var buf []byte
	return func(k K) uint64 {
		buf = kc.Append(buf[:0], k)
		return state.Hash(buf)
	}
}

// KeyedContext is what a keyed process function sees besides the record.
type KeyedContext[K comparable] struct {
	b *state.Backend[K]
}

// Key is the key of the record being processed.
func (c *KeyedContext[K]) Key() K { return c.b.CurrentKey() }

// KeyedProcessFunc handles one record of a keyed stream.
type KeyedProcessFunc[K comparable, T, O any] func(ctx *KeyedContext[K], v T, out Collector[O])

// KeyedSetup is passed to a keyed operator's setup function once per
// subtask; declare state through it.
type KeyedSetup[K comparable] struct {
	b  *state.Backend[K]
	rt *graph.Runtime
}

// Subtask is the index of the subtask being set up.
func (s *KeyedSetup[K]) Subtask() int { return s.rt.Subtask }

// Parallelism is the operator's current parallelism.
func (s *KeyedSetup[K]) Parallelism() int { return s.rt.Parallelism }

// ValueState is a state holding one value per key.
type ValueState[K comparable, V any] = state.Value[K, V]

// MapState is a state holding a map per key.
type MapState[K comparable, UK comparable, UV any] = state.Map[K, UK, UV]

// NewValueState declares a value state called name (unique in the operator).
func NewValueState[V any, K comparable](s *KeyedSetup[K], name string, opts ...Option) *ValueState[K, V] {
	o := applyOptions(opts)
	vc := codec.For[V]()
	if c, ok := o.codec.(codec.Codec[V]); ok {
		vc = c
	}
	return state.NewValue[V](s.b, name, vc)
}

// NewMapState declares a map state called name (unique in the operator).
func NewMapState[UK comparable, UV any, K comparable](s *KeyedSetup[K], name string) *MapState[K, UK, UV] {
	return state.NewMap[UK, UV](s.b, name, codec.For[UK](), codec.For[UV]())
}

// Process runs a keyed function with keyed state over ks. setup runs once
// per subtask: it declares state and returns the function that handles
// records.
func Process[K comparable, T, O any](ks KeyedStream[K, T], name string, setup func(*KeyedSetup[K]) KeyedProcessFunc[K, T, O], opts ...Option) Stream[O] {
	part := func(maxP, channels int) func(T) int {
		hash := ks.newHash()
		return func(v T) int {
			kg := state.KeyGroupOf(hash(ks.key(v)), maxP)
			return state.OperatorIndexOf(kg, maxP, channels)
		}
	}
	return addOp[T, O](ks.s, name, graph.Hash, part, opts, func(rt *graph.Runtime, out Collector[O]) (Collector[T], graph.Operator, error) {
		b := state.NewBackend[K](rt.KeyGroups, rt.MaxParallelism, ks.keyCodec)
		fn := setup(&KeyedSetup[K]{b: b, rt: rt})
		if fn == nil {
			return nil, nil, fmt.Errorf("operator %q: setup returned a nil function", name)
		}
		if rt.Restored != nil {
			if err := b.Restore(rt.Restored.KeyGroups); err != nil {
				return nil, nil, fmt.Errorf("operator %q: %w", name, err)
			}
		}
		ctx := &KeyedContext[K]{b: b}
		maxP := rt.MaxParallelism
		hash := ks.newHash()
		in := CollectorFunc[T](func(v T) {
			k := ks.key(v)
			if err := b.SetCurrentKey(k, state.KeyGroupOf(hash(k), maxP)); err != nil {
				rt.Fail(fmt.Errorf("operator %q: %w", name, err))
				return
			}
			fn(ctx, v, out)
		})
		return in, &keyedOp[K]{b: b}, nil
	})
}

type keyedOp[K comparable] struct {
	nopOperator
	b *state.Backend[K]
}

func (k *keyedOp[K]) Snapshot(int64) (graph.Snapshot, error) {
	return graph.Snapshot{KeyGroups: k.b.Snapshot()}, nil
}

// Sink writes s to the sink connector c.
func Sink[T any](s Stream[T], name string, c SinkConnector[T]) {
	j := s.job
	v := j.g.AddVertex(&graph.Vertex{
		Name: name,
		Kind: graph.KindSink,
		Build: func(rt *graph.Runtime, _ any) (any, graph.Operator, error) {
			ctx := SinkContext{Subtask: rt.Subtask, Parallelism: rt.Parallelism, Attempt: rt.Attempt, Logf: rt.Logf, Ctx: rt.Ctx}
			if ctx.Ctx == nil {
				ctx.Ctx = context.Background()
			}
			if rt.Restored != nil {
				ctx.Restored = true
				if rt.Subtask == 0 {
					ctx.Committables = rt.Restored.List
				}
			}
			w, err := c.NewWriter(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("sink %q: %w", name, err)
			}
			op := &sinkOp[T]{w: w, pending: map[int64][][]byte{}}
			in := CollectorFunc[T](func(v T) {
				if err := w.Write(v); err != nil {
					rt.Fail(fmt.Errorf("sink %q: %w", name, err))
				}
			})
			return in, op, nil
		},
	})
	connect(s, v, graph.Forward, nil)
}

type sinkOp[T any] struct {
	nopOperator
	w       SinkWriter[T]
	pending map[int64][][]byte // committables per checkpoint, not yet committed
	ended   bool               // EndInput was called
}

func (s *sinkOp[T]) Snapshot(id int64) (graph.Snapshot, error) {
	c, err := s.w.PreCommit(id)
	if err != nil {
		return graph.Snapshot{}, err
	}
	s.pending[id] = c
	var all [][]byte
	for _, cs := range s.pending {
		all = append(all, cs...)
	}
	// Committed but not yet published (in the background): they stay in
	// the snapshots until they are.
	if w, ok := s.w.(SinkCommitWaiter); ok {
		all = append(all, w.Publishing()...)
	}
	return graph.Snapshot{List: all, Union: true}, nil
}

func (s *sinkOp[T]) NotifyCheckpointComplete(id int64) error {
	var done [][]byte
	for cid, cs := range s.pending {
		if cid <= id {
			done = append(done, cs...)
			delete(s.pending, cid)
		}
	}
	if len(done) > 0 {
		if err := s.w.Commit(done); err != nil {
			return err
		}
	}
	if s.ended && len(s.pending) == 0 {
		return s.waitCommitted()
	}
	return nil
}

// EndInput waits for the writer's commits if no checkpoint is pending; if
// one is still pending (its notification not yet handled),
// NotifyCheckpointComplete waits once it is committed.
func (s *sinkOp[T]) EndInput() error {
	s.ended = true
	if len(s.pending) == 0 {
		return s.waitCommitted()
	}
	return nil
}

func (s *sinkOp[T]) waitCommitted() error {
	if w, ok := s.w.(SinkCommitWaiter); ok {
		return w.WaitCommitted()
	}
	return nil
}

func (s *sinkOp[T]) Close() error { return s.w.Close() }

type nopOperator struct{}

func (nopOperator) Open() error                            { return nil }
func (nopOperator) Snapshot(int64) (graph.Snapshot, error) { return graph.Snapshot{}, nil }
func (nopOperator) NotifyCheckpointComplete(int64) error   { return nil }
func (nopOperator) EndInput() error                        { return nil }
func (nopOperator) Close() error                           { return nil }

// addOp adds a one-input operator vertex fed by s.
func addOp[T, O any](s Stream[T], name string, kind graph.EdgeKind, part func(maxP, channels int) func(T) int, opts []Option,
	build func(rt *graph.Runtime, out Collector[O]) (Collector[T], graph.Operator, error)) Stream[O] {
	j := s.job
	o := applyOptions(opts)
	out := Stream[O]{job: j, codec: outputCodec[O](j, name, o)}
	out.v = j.g.AddVertex(&graph.Vertex{
		Name:   name,
		Kind:   graph.KindOperator,
		FanOut: fanOut[O],
		Build: func(rt *graph.Runtime, next any) (any, graph.Operator, error) {
			in, op, err := build(rt, next.(Collector[O]))
			return in, op, err
		},
	})
	connect(s, out.v, kind, part)
	return out
}

// connect adds the edge s → to with the typed encode/partition and decode glue.
func connect[T any](s Stream[T], to *graph.Vertex, kind graph.EdgeKind, part func(maxP, channels int) func(T) int) {
	if s.rebalance && kind == graph.Forward {
		kind = graph.Rebalance
	}
	c := s.codec
	s.job.g.Connect(&graph.Edge{
		From: s.v,
		To:   to,
		Kind: kind,
		NewWriter: func(w graph.RecordWriter, rt *graph.Runtime) any {
			nw := &netWriter[T]{w: w, c: c}
			switch kind {
			case graph.Hash:
				nw.part = part(rt.MaxParallelism, w.Channels())
			case graph.Rebalance:
				n := w.Channels()
				nw.part = func(T) int { nw.rr++; return nw.rr % n }
			default:
				nw.part = func(T) int { return 0 }
			}
			return nw
		},
		NewReader: func(in any) func([]byte) error {
			col := in.(Collector[T])
			return func(p []byte) error {
				v, err := c.Decode(p)
				if err != nil {
					return err
				}
				col.Collect(v)
				return nil
			}
		},
	})
}

// netWriter encodes records into the network buffers of one edge. Each
// record is framed as a 4-byte little-endian length and the codec's bytes.
type netWriter[T any] struct {
	w    graph.RecordWriter
	c    codec.Codec[T]
	part func(T) int
	rr   int
}

func (n *netWriter[T]) Collect(v T) {
	ch := n.part(v)
	b := n.w.Buf(ch)
	off := len(b)
	b = append(b, 0, 0, 0, 0)
	b = n.c.Append(b, v)
	binary.LittleEndian.PutUint32(b[off:], uint32(len(b)-off-4))
	n.w.Put(ch, b)
}

type multiCollector[T any] []Collector[T]

func (m multiCollector[T]) Collect(v T) {
	for _, c := range m {
		c.Collect(v)
	}
}

func fanOut[T any](outs []any) any {
	m := make(multiCollector[T], len(outs))
	for i, o := range outs {
		m[i] = o.(Collector[T])
	}
	return m
}
