// Package generator is a deterministic, replayable ebbflow source of int64
// values, for tests, benchmarks and demos.
//
// [Sequence] with a count emits 0..count-1 once, cut into contiguous ranges
// (one per split). With count 0 it is unbounded: split s of k emits s, s+k,
// s+2k, … so that the splits together emit every non-negative number.
//
// A split's state is a compact binary record:
//
//	version  byte     1
//	next     varint   next value to emit
//	end      varint   first value not to emit; -1 when unbounded
//	step     varint   distance between values (1 for ranges, k when unbounded)
//
// A bounded split with next >= end is finished.
//
// A reader emits its bounded splits one after the other and its unbounded
// splits in turn. Poll returns EndOfInput, possibly together with the last
// values, once all its splits are finished (at once for a reader without
// splits), and keeps returning it; a reader with an unbounded split never
// ends.
package generator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/ebbflow/ebbflow"
)

const stateVersion = 1

// Sequence returns a source of 0..count-1 cut into splits contiguous ranges,
// or, when count is 0, an unbounded source whose split s emits s, s+splits,
// s+2*splits, …
func Sequence(count int64, splits int) ebbflow.SourceConnector[int64] {
	return &connector{count: count, splits: splits}
}

type connector struct {
	count  int64
	splits int
}

// Splits returns the splits' initial states.
func (c *connector) Splits() ([][]byte, error) {
	if c.count < 0 {
		return nil, fmt.Errorf("generator: count %d is negative", c.count)
	}
	if c.splits < 1 {
		return nil, fmt.Errorf("generator: %d splits, want at least 1", c.splits)
	}
	k := int64(c.splits)
	out := make([][]byte, c.splits)
	for s := range k {
		var st split
		if c.count == 0 {
			st = split{next: s, end: -1, step: k}
		} else {
			// s*count/k without overflowing for large counts.
			st = split{next: part(c.count, s, k), end: part(c.count, s+1, k), step: 1}
		}
		out[s] = st.encode()
	}
	return out, nil
}

// part returns floor(count*s/k) for 0 <= s <= k.
func part(count, s, k int64) int64 {
	q, r := count/k, count%k
	return q*s + r*s/k
}

// NewReader decodes the split states and returns a reader over them.
func (c *connector) NewReader(ctx ebbflow.SourceContext, states [][]byte) (ebbflow.SourceReader[int64], error) {
	r := &reader{splits: make([]split, len(states))}
	for i, b := range states {
		s, err := decodeSplit(b)
		if err != nil {
			return nil, fmt.Errorf("generator: split state %d: %w", i, err)
		}
		r.splits[i] = s
	}
	return r, nil
}

type split struct {
	next, end, step int64
}

func (s split) unbounded() bool { return s.end < 0 }

func (s split) done() bool { return !s.unbounded() && s.next >= s.end }

func (s split) encode() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64)
	b = append(b, stateVersion)
	b = binary.AppendVarint(b, s.next)
	b = binary.AppendVarint(b, s.end)
	b = binary.AppendVarint(b, s.step)
	return b
}

func decodeSplit(b []byte) (split, error) {
	if len(b) == 0 {
		return split{}, errors.New("empty state")
	}
	if b[0] != stateVersion {
		return split{}, fmt.Errorf("unknown state version %d", b[0])
	}
	b = b[1:]
	var v [3]int64
	for i := range v {
		x, n := binary.Varint(b)
		if n <= 0 {
			return split{}, errors.New("malformed state")
		}
		v[i], b = x, b[n:]
	}
	if len(b) != 0 {
		return split{}, errors.New("malformed state: trailing bytes")
	}
	s := split{next: v[0], end: v[1], step: v[2]}
	if s.next < 0 || s.step < 1 || s.end < -1 {
		return split{}, fmt.Errorf("inconsistent state next=%d end=%d step=%d", s.next, s.end, s.step)
	}
	return s, nil
}

// reader emits its bounded splits one after the other and its unbounded
// splits in turn, one value each.
type reader struct {
	splits []split
	turn   int // next split to serve
}

// Poll emits up to max values. It returns EndOfInput, possibly together with
// the last values, once every split is finished; a reader with an unbounded
// split never ends.
func (r *reader) Poll(out ebbflow.Collector[int64], max int) (ebbflow.PollStatus, error) {
	n := 0
	for n < max {
		progressed := false
		for range len(r.splits) {
			s := &r.splits[r.turn]
			if s.done() {
				r.turn = (r.turn + 1) % len(r.splits)
				continue
			}
			out.Collect(s.next)
			n++
			progressed = true
			if s.next > math.MaxInt64-s.step {
				s.end = s.next // the next value would overflow: stop
			}
			s.next += min(s.step, math.MaxInt64-s.next)
			if s.unbounded() {
				r.turn = (r.turn + 1) % len(r.splits)
			}
			break
		}
		if !progressed {
			return ebbflow.EndOfInput, nil
		}
	}
	for _, s := range r.splits {
		if !s.done() {
			return ebbflow.MoreAvailable, nil
		}
	}
	return ebbflow.EndOfInput, nil
}

// Snapshot returns the state of every split, finished ones included.
func (r *reader) Snapshot() ([][]byte, error) {
	out := make([][]byte, len(r.splits))
	for i, s := range r.splits {
		out[i] = s.encode()
	}
	return out, nil
}

// Close does nothing: the reader holds no resources.
func (r *reader) Close() error { return nil }
