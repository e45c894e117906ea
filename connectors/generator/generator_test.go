package generator

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ebbflow/ebbflow"
)

func subtaskSplits(all [][]byte, subtask, parallelism int) [][]byte {
	var out [][]byte
	for j, s := range all {
		if j%parallelism == subtask {
			out = append(out, s)
		}
	}
	return out
}

func readers(t *testing.T, src ebbflow.SourceConnector[int64], states [][]byte, par int) []ebbflow.SourceReader[int64] {
	t.Helper()
	rs := make([]ebbflow.SourceReader[int64], par)
	for i := range par {
		var err error
		rs[i], err = src.NewReader(ebbflow.SourceContext{Subtask: i, Parallelism: par}, subtaskSplits(states, i, par))
		if err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

func snapshot(t *testing.T, rs []ebbflow.SourceReader[int64]) [][]byte {
	t.Helper()
	var states [][]byte
	for _, r := range rs {
		s, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, s...)
		r.Close()
	}
	return states
}

func TestBoundedEveryValueOnce(t *testing.T) {
	for _, count := range []int64{1, 2, 10, 1000, 12345} {
		for _, splits := range []int{1, 3, 7, 64} {
			src := Sequence(count, splits)
			states, err := src.Splits()
			if err != nil {
				t.Fatal(err)
			}
			if len(states) != splits {
				t.Fatalf("%d splits, want %d", len(states), splits)
			}
			for _, par := range []int{1, 2, 5} {
				var got []int64
				out := ebbflow.CollectorFunc[int64](func(v int64) { got = append(got, v) })
				for _, r := range readers(t, src, states, par) {
					for {
						st, err := r.Poll(out, 100)
						if err != nil {
							t.Fatal(err)
						}
						if st == ebbflow.EndOfInput {
							break
						}
					}
				}
				if par == 1 && !slices.IsSorted(got) {
					t.Fatalf("count %d splits %d: one reader emits out of order", count, splits)
				}
				slices.Sort(got)
				if int64(len(got)) != count || (count > 0 && got[count-1] != count-1) || len(slices.Compact(got)) != int(count) {
					t.Fatalf("count %d splits %d parallelism %d: got %d values", count, splits, par, len(got))
				}
			}
		}
	}
}

// TestRestoreBounded stops readers at random points and restores their
// snapshot on other parallelisms.
func TestRestoreBounded(t *testing.T) {
	for trial := range 50 {
		rng := rand.New(rand.NewPCG(uint64(trial), 11))
		count := 1 + rng.Int64N(5000)
		src := Sequence(count, 1+rng.IntN(10))
		states, _ := src.Splits()
		seen := make([]int, count)
		par := 2
		for round := 0; ; round++ {
			rs := readers(t, src, states, par)
			ended := make([]bool, par)
			polls := rng.IntN(20)
			if round > 6 {
				polls = math.MaxInt
			}
			for p := 0; p < polls && slices.Contains(ended, false); p++ {
				i := rng.IntN(par)
				st, err := rs[i].Poll(ebbflow.CollectorFunc[int64](func(v int64) { seen[v]++ }), rng.IntN(100))
				if err != nil {
					t.Fatal(err)
				}
				ended[i] = st == ebbflow.EndOfInput
			}
			states = snapshot(t, rs)
			if !slices.Contains(ended, false) {
				break
			}
			par = 1 + rng.IntN(5)
		}
		for v, n := range seen {
			if n != 1 {
				t.Fatalf("trial %d: value %d emitted %d times", trial, v, n)
			}
		}
	}
}

// TestUnbounded checks the stride interleaving across restores: each split
// emits a gapless prefix of its residue class, and readers serve all their
// splits.
func TestUnbounded(t *testing.T) {
	const k = 5
	src := Sequence(0, k)
	states, _ := src.Splits()
	rng := rand.New(rand.NewPCG(5, 5))
	seen := map[int64]int{}
	par := 2
	for range 20 {
		rs := readers(t, src, states, par)
		for range 30 {
			st, err := rs[rng.IntN(par)].Poll(ebbflow.CollectorFunc[int64](func(v int64) { seen[v]++ }), rng.IntN(50))
			if err != nil || st == ebbflow.EndOfInput && par <= k {
				t.Fatalf("poll: %v %v", st, err)
			}
		}
		states = snapshot(t, rs)
		par = 1 + rng.IntN(7) // some readers have no split
	}
	counts := make([]int64, k)
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("value %d emitted %d times", v, n)
		}
		counts[v%k]++
	}
	for s := range int64(k) {
		if counts[s] == 0 {
			t.Fatalf("split %d never emitted", s)
		}
		for i := range counts[s] {
			if seen[s+i*k] != 1 {
				t.Fatalf("split %d: gap at %d", s, s+i*k)
			}
		}
	}
}

func TestPollLimitsAndEnd(t *testing.T) {
	src := Sequence(10, 2)
	states, _ := src.Splits()
	r, _ := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, states)
	var got []int64
	out := ebbflow.CollectorFunc[int64](func(v int64) { got = append(got, v) })
	if st, _ := r.Poll(out, 0); st != ebbflow.MoreAvailable || len(got) != 0 {
		t.Fatalf("max 0: %v %v", st, got)
	}
	if st, _ := r.Poll(out, 7); st != ebbflow.MoreAvailable || len(got) != 7 {
		t.Fatalf("max 7: %v %v", st, got)
	}
	if st, _ := r.Poll(out, 3); st != ebbflow.EndOfInput || len(got) != 10 {
		t.Fatalf("last: %v %v", st, got)
	}
	for range 3 {
		if st, _ := r.Poll(out, 3); st != ebbflow.EndOfInput || len(got) != 10 {
			t.Fatalf("after end: %v %v", st, got)
		}
	}
	if s, _ := r.Snapshot(); len(s) != 2 {
		t.Fatalf("snapshot has %d splits, want 2", len(s))
	}
	none, _ := src.NewReader(ebbflow.SourceContext{}, nil)
	if st, _ := none.Poll(out, 3); st != ebbflow.EndOfInput {
		t.Fatalf("reader without splits: %v", st)
	}
	// Unbounded values stop before overflowing.
	near, _ := src.NewReader(ebbflow.SourceContext{}, [][]byte{split{next: math.MaxInt64 - 3, end: -1, step: 2}.encode()})
	got = nil
	if st, _ := near.Poll(out, 10); st != ebbflow.EndOfInput || !slices.Equal(got, []int64{math.MaxInt64 - 3, math.MaxInt64 - 1}) {
		t.Fatalf("near overflow: %v %v", st, got)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Sequence(-1, 1).Splits(); err == nil {
		t.Error("negative count accepted")
	}
	if _, err := Sequence(10, 0).Splits(); err == nil {
		t.Error("0 splits accepted")
	}
	for _, b := range [][]byte{nil, {2, 0, 0, 2}, {1, 0, 0}, {1, 0, 0, 2, 0}, split{next: 1, end: 5, step: 0}.encode()} {
		if _, err := Sequence(10, 1).NewReader(ebbflow.SourceContext{}, [][]byte{b}); err == nil {
			t.Errorf("state %v accepted", b)
		}
	}
	s := split{next: 1 << 50, end: -1, step: 9}
	if got, err := decodeSplit(s.encode()); err != nil || got != s {
		t.Errorf("round trip: %+v %v", got, err)
	}
}
