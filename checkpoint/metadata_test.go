package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/state"
)

// Operators of the test job: keyed state, an evenly split list (source
// splits) and a union list (every subtask needs all of it).
const (
	opKeyed = "count"
	opList  = "source"
	opUnion = "sink"
)

// countingStorage counts Gets per object, to check that Load reads each
// object once.
type countingStorage struct {
	Storage
	mu    sync.Mutex
	gets  map[string]int
	bytes int64 // read by GetRange
}

func (c *countingStorage) Get(ctx context.Context, name string) ([]byte, error) {
	c.mu.Lock()
	c.gets[name]++
	c.mu.Unlock()
	return c.Storage.Get(ctx, name)
}

func (c *countingStorage) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	c.mu.Lock()
	c.gets[name]++
	c.bytes += n
	c.mu.Unlock()
	return c.Storage.GetRange(ctx, name, off, n)
}

// written is what a test checkpoint holds, for comparison after restore.
type written struct {
	dir     string
	md      *Metadata
	objects []string          // object names (relative to dir), by old subtask
	keyed   map[int][]byte    // key group → bytes
	owner   map[int]int       // key group → old subtask
	list    []string          // list entries in (old subtask, entry) order
	union   []string          // union entries in (old subtask, entry) order
	spans   map[string][]Span // object → every span in it, in order
}

// oldSnapshots are the snapshots that old subtask i of p takes.
func oldSnapshots(i, p, maxP int) map[string]graph.Snapshot {
	keyed := map[int][]byte{}
	r := state.RangeFor(i, maxP, p)
	for kg := r.Start; kg <= r.End; kg++ {
		if kg%3 == 1 {
			continue // key groups without state are not in the snapshot
		}
		keyed[kg] = []byte(fmt.Sprintf("state of key group %d written by %d/%d", kg, i, p))
	}
	var list [][]byte
	for e := 0; e < (i+p)%4; e++ { // 0..3 entries, some subtasks have none
		list = append(list, []byte(fmt.Sprintf("split %d.%d", i, e)))
	}
	union := [][]byte{[]byte(fmt.Sprintf("txn %d", i))}
	if i%2 == 1 {
		union = append(union, []byte{}) // an empty entry is an entry
	}
	return map[string]graph.Snapshot{
		opKeyed: {KeyGroups: keyed},
		opList:  {List: list},
		opUnion: {List: union, Union: true},
	}
}

// writeCheckpoint stores checkpoint id taken at parallelism p the way the
// runtime does: each task writes its data object and acks, the coordinator
// completes, and _metadata is written last and create-only.
func writeCheckpoint(t *testing.T, st Storage, job string, id int64, savepoint bool, p, maxP int) *written {
	t.Helper()
	ctx := context.Background()
	const attempt = 3
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tasks := make([]TaskID, p)
	for i := range tasks {
		tasks[i] = TaskID{Chain: 0, Subtask: i}
	}
	c := NewCoordinator(tasks, id-1, time.Minute, time.Minute, now)
	pend, err := c.Trigger(now, savepoint, false)
	if err != nil {
		t.Fatal(err)
	}
	if pend.ID != id {
		t.Fatalf("triggered id %d, want %d", pend.ID, id)
	}
	dir := Dir(job, id)
	if savepoint {
		dir = SavepointDir(job, id)
	}
	w := &written{dir: dir, keyed: map[int][]byte{}, owner: map[int]int{}, spans: map[string][]Span{}}
	var complete *Pending
	for i := 0; i < p; i++ {
		snaps := oldSnapshots(i, p, maxP)
		for kg, b := range snaps[opKeyed].KeyGroups {
			w.keyed[kg] = b
			w.owner[kg] = i
		}
		for _, b := range snaps[opList].List {
			w.list = append(w.list, string(b))
		}
		for _, b := range snaps[opUnion].List {
			w.union = append(w.union, string(b))
		}
		object := fmt.Sprintf("a%d-c%d-s%d.state", attempt, 0, i)
		data, states, union := EncodeTaskState(object, snaps)
		if err := st.Put(ctx, dir+object, data); err != nil {
			t.Fatal(err)
		}
		w.objects = append(w.objects, object)
		for _, op := range []string{opKeyed, opList, opUnion} {
			w.spans[object] = append(w.spans[object], states[op].KeyGroups...)
			w.spans[object] = append(w.spans[object], states[op].List...)
		}
		complete, err = c.Acknowledge(id, Ack{Task: tasks[i], States: states, Union: union, Bytes: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		if (complete != nil) != (i == p-1) {
			t.Fatalf("ack %d of %d: complete = %v", i+1, p, complete != nil)
		}
	}
	md := BuildMetadata(job, complete, attempt, maxP, p, now)
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(ctx, dir+MetadataName, b); err != nil {
		t.Fatal(err)
	}
	c.Finish(id, now)
	w.md, err = ReadMetadata(ctx, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRedistributeEndToEnd(t *testing.T) {
	ctx := context.Background()
	for _, maxP := range []int{7, 128} {
		l, _ := newLocal(t)
		for p := 1; p <= 5; p++ {
			w := writeCheckpoint(t, l, "wc", int64(p), p%2 == 0, p, maxP)
			if w.md.Parallelism != p || w.md.MaxParallelism != maxP || w.md.ID != int64(p) || w.md.Savepoint != (p%2 == 0) {
				t.Fatalf("metadata header %+v", w.md)
			}
			if !w.md.Operators[opUnion].Union || w.md.Operators[opList].Union || w.md.Operators[opKeyed].Union {
				t.Fatalf("union flags: keyed %v list %v union %v", w.md.Operators[opKeyed].Union, w.md.Operators[opList].Union, w.md.Operators[opUnion].Union)
			}
			for q := 1; q <= 5; q++ {
				t.Run(fmt.Sprintf("maxP=%d/%d->%d", maxP, p, q), func(t *testing.T) {
					checkRedistribution(t, ctx, l, w, maxP, p, q)
				})
			}
		}
	}
}

func checkRedistribution(t *testing.T, ctx context.Context, l *Local, w *written, maxP, p, q int) {
	keyedSeen := map[int]int{}
	listSeen := map[string]int{}
	minList, maxList := math.MaxInt, -1
	for j := 0; j < q; j++ {
		r := state.RangeFor(j, maxP, q)
		cs := &countingStorage{Storage: l, gets: map[string]int{}}
		load := func(op string) *graph.RestoredState {
			t.Helper()
			a := Assign(w.md, op, j, q)
			if a == nil {
				t.Fatalf("Assign(%q) = nil for an operator in the snapshot", op)
			}
			objs := a.Objects()
			seen := map[string]bool{}
			for _, o := range objs {
				if seen[o] {
					t.Fatalf("Objects() lists %s twice", o)
				}
				seen[o] = true
			}
			clear(cs.gets)
			cs.bytes = 0
			rs, err := Load(ctx, cs, w.dir, w.md.ID, a)
			if err != nil {
				t.Fatalf("Load(%q) for subtask %d: %v", op, j, err)
			}
			// Keyed state is read exactly: a subtask's key groups are
			// contiguous in each old object, and nothing else is fetched.
			if op == opKeyed {
				var want int64
				for _, p := range a.pieces {
					want += p.span.Len
				}
				if cs.bytes != want {
					t.Fatalf("Load(%q) for subtask %d of %d read %d bytes for %d bytes of assigned spans", op, j, q, cs.bytes, want)
				}
			}
			if rs.CheckpointID != w.md.ID {
				t.Fatalf("CheckpointID %d, want %d", rs.CheckpointID, w.md.ID)
			}
			if a.Empty() != (len(rs.KeyGroups)+len(rs.List) == 0) {
				t.Fatalf("Empty() = %v with %d key groups and %d entries", a.Empty(), len(rs.KeyGroups), len(rs.List))
			}
			for _, o := range objs {
				if cs.gets[w.dir+o] == 0 {
					t.Fatalf("Objects() lists %s but Load did not read it", o)
				}
			}
			for name, n := range cs.gets {
				if n != 1 || !seen[strings.TrimPrefix(name, w.dir)] {
					t.Fatalf("Load(%q) for subtask %d read %s %d times (Objects() = %q)", op, j, name, n, objs)
				}
			}
			return rs
		}

		// Keyed: exactly the key groups of j's range that have state.
		rs := load(opKeyed)
		if len(rs.List) != 0 {
			t.Fatalf("keyed operator restored %d list entries", len(rs.List))
		}
		for kg, b := range rs.KeyGroups {
			if !r.Contains(kg) {
				t.Fatalf("subtask %d (range %v) got key group %d", j, r, kg)
			}
			if !bytes.Equal(b, w.keyed[kg]) {
				t.Fatalf("key group %d = %q, want %q", kg, b, w.keyed[kg])
			}
			keyedSeen[kg]++
		}
		for kg := r.Start; kg <= r.End; kg++ {
			if _, has := w.keyed[kg]; has {
				if _, got := rs.KeyGroups[kg]; !got {
					t.Fatalf("subtask %d did not get key group %d of its range", j, kg)
				}
			}
		}

		// List: an even share.
		rs = load(opList)
		if len(rs.KeyGroups) != 0 {
			t.Fatalf("list operator restored %d key groups", len(rs.KeyGroups))
		}
		for _, b := range rs.List {
			listSeen[string(b)]++
		}
		minList, maxList = min(minList, len(rs.List)), max(maxList, len(rs.List))

		// Union: everything, in (old subtask, entry) order.
		rs = load(opUnion)
		var got []string
		for _, b := range rs.List {
			got = append(got, string(b))
		}
		if !reflect.DeepEqual(got, w.union) {
			t.Fatalf("union state of subtask %d = %q, want %q", j, got, w.union)
		}

	}
	if len(keyedSeen) != len(w.keyed) {
		t.Fatalf("%d of %d key groups restored", len(keyedSeen), len(w.keyed))
	}
	for kg, n := range keyedSeen {
		if n != 1 {
			t.Fatalf("key group %d restored %d times", kg, n)
		}
	}
	if len(listSeen) != len(w.list) {
		t.Fatalf("%d of %d list entries restored", len(listSeen), len(w.list))
	}
	for e, n := range listSeen {
		if n != 1 {
			t.Fatalf("list entry %q restored %d times", e, n)
		}
	}
	if maxList-minList > 1 {
		t.Fatalf("uneven list split: between %d and %d entries per subtask", minList, maxList)
	}
}

// The list split is round-robin in (old subtask, entry) order, so the
// order is part of the format and documented.
func TestAssignListRoundRobinOrder(t *testing.T) {
	md := &Metadata{MaxParallelism: 4, Parallelism: 2, Operators: map[string]*OperatorState{
		"src": {Subtasks: []SubtaskState{
			{Object: "o0", List: []Span{{Off: 0, Len: 1}, {Off: 1, Len: 1}, {Off: 2, Len: 1}}},
			{Object: "o1", List: []Span{{Off: 0, Len: 1}, {Off: 1, Len: 1}}},
		}},
	}}
	type ref struct {
		obj string
		off int64
	}
	for q, want := range map[int][][]ref{
		1: {{{"o0", 0}, {"o0", 1}, {"o0", 2}, {"o1", 0}, {"o1", 1}}},
		2: {{{"o0", 0}, {"o0", 2}, {"o1", 1}}, {{"o0", 1}, {"o1", 0}}},
		3: {{{"o0", 0}, {"o1", 0}}, {{"o0", 1}, {"o1", 1}}, {{"o0", 2}}},
		7: {{{"o0", 0}}, {{"o0", 1}}, {{"o0", 2}}, {{"o1", 0}}, {{"o1", 1}}, nil, nil},
	} {
		for j := 0; j < q; j++ {
			a := Assign(md, "src", j, q)
			var got []ref
			for _, pc := range a.pieces {
				got = append(got, ref{pc.object, pc.span.Off})
			}
			if !reflect.DeepEqual(got, want[j]) {
				t.Errorf("q=%d subtask %d: %v, want %v", q, j, got, want[j])
			}
			if a.Empty() != (len(want[j]) == 0) {
				t.Errorf("q=%d subtask %d: Empty() = %v", q, j, a.Empty())
			}
		}
	}
}

func TestAssignUnknownOperator(t *testing.T) {
	md := &Metadata{MaxParallelism: 8, Parallelism: 1, Operators: map[string]*OperatorState{}}
	a := Assign(md, "new-operator", 0, 1)
	if a != nil || !a.Empty() {
		t.Fatalf("Assign of an operator without state = %+v", a)
	}
	l, _ := newLocal(t)
	rs, err := Load(context.Background(), l, "wc/chk-1/", 5, a)
	if err != nil || rs.CheckpointID != 5 || len(rs.KeyGroups) != 0 || len(rs.List) != 0 {
		t.Fatalf("Load(nil) = %+v, %v", rs, err)
	}
}

func TestEncodeTaskStateLayout(t *testing.T) {
	snaps := map[string]graph.Snapshot{
		"b-keyed": {KeyGroups: map[int][]byte{9: []byte("nine"), 0: []byte("zero"), 3: []byte("three")}, List: [][]byte{[]byte("bl")}},
		"a-list":  {List: [][]byte{[]byte("x"), {}, []byte("yy")}},
		"c-union": {List: [][]byte{[]byte("u")}, Union: true},
		"d-empty": {},
	}
	data, states, union := EncodeTaskState("a1-c2-s3.state", snaps)
	// Operators in name order; per operator key groups ascending, then list
	// entries; no padding or headers.
	want := "x" + "" + "yy" + "zero" + "three" + "nine" + "bl" + "u"
	if string(data) != want {
		t.Fatalf("object = %q, want %q", data, want)
	}
	if len(states) != 4 {
		t.Fatalf("states for %d operators, want 4 (also the empty one)", len(states))
	}
	if !union["c-union"] || union["a-list"] || union["b-keyed"] || union["d-empty"] {
		t.Fatalf("union = %v", union)
	}
	if s := states["d-empty"]; s.Object != "a1-c2-s3.state" || len(s.KeyGroups)+len(s.List) != 0 {
		t.Fatalf("empty operator: %+v", s)
	}
	var off int64
	for _, op := range []string{"a-list", "b-keyed", "c-union"} {
		s := states[op]
		if s.Object != "a1-c2-s3.state" {
			t.Fatalf("%s: object %q", op, s.Object)
		}
		for i, sp := range append(append([]Span(nil), s.KeyGroups...), s.List...) {
			if sp.Off != off {
				t.Fatalf("%s span %d at %d, want %d (spans must tile the object)", op, i, sp.Off, off)
			}
			b := data[sp.Off : sp.Off+sp.Len]
			if sp.CRC != crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) {
				t.Fatalf("%s span %d: crc %08x is not CRC-32C of %q", op, i, sp.CRC, b)
			}
			off += sp.Len
		}
	}
	if off != int64(len(data)) {
		t.Fatalf("spans cover %d of %d bytes", off, len(data))
	}
	var kgs []int
	for _, sp := range states["b-keyed"].KeyGroups {
		kgs = append(kgs, sp.KeyGroup)
	}
	if !reflect.DeepEqual(kgs, []int{0, 3, 9}) {
		t.Fatalf("key group spans %v, want [0 3 9]", kgs)
	}
	// Deterministic for equal input.
	data2, states2, _ := EncodeTaskState("a1-c2-s3.state", snaps)
	if !bytes.Equal(data, data2) || !reflect.DeepEqual(states, states2) {
		t.Fatal("EncodeTaskState is not deterministic")
	}
}

func TestChecksumIsCRC32C(t *testing.T) {
	// The standard check value of CRC-32C (Castagnoli).
	if got := Checksum([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("Checksum(123456789) = %08x, want e3069283", got)
	}
	if Checksum(nil) != 0 {
		t.Fatal("Checksum of nothing != 0")
	}
}

func TestDirNames(t *testing.T) {
	if got := Dir("wordcount", 17); got != "wordcount/chk-17/" {
		t.Fatalf("Dir = %q", got)
	}
	if got := SavepointDir("wordcount", 4); got != "wordcount/savepoint-4/" {
		t.Fatalf("SavepointDir = %q", got)
	}
	if MetadataName != "_metadata" || FormatVersion != 1 {
		t.Fatalf("MetadataName %q FormatVersion %d: update docs/format/checkpoint.md", MetadataName, FormatVersion)
	}
}

// spanAt returns the operator and span of object that covers offset off.
func spanAt(t *testing.T, md *Metadata, object string, off int64) (string, Span, bool) {
	t.Helper()
	for op, os := range md.Operators {
		for _, sub := range os.Subtasks {
			if sub.Object != object {
				continue
			}
			for _, sp := range sub.KeyGroups {
				if off >= sp.Off && off < sp.Off+sp.Len {
					return op, sp, false
				}
			}
			for _, sp := range sub.List {
				if off >= sp.Off && off < sp.Off+sp.Len {
					return op, sp, true
				}
			}
		}
	}
	t.Fatalf("offset %d of %s is in no span", off, object)
	return "", Span{}, false
}

// Flipping any byte of a data object is detected by the span that holds it;
// the error wraps ErrCorrupt and names the object and the key group (or
// says it is a list entry). Other operators' spans in the same object still
// load.
func TestLoadDetectsEveryFlippedByte(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	const maxP = 7
	w := writeCheckpoint(t, l, "wc", 1, false, 2, maxP)
	object := w.objects[0]
	name := w.dir + object
	orig, err := l.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for off := range orig {
		bad := append([]byte(nil), orig...)
		bad[off] ^= 0x20
		if err := l.Put(ctx, name, bad); err != nil {
			t.Fatal(err)
		}
		hit, sp, isList := spanAt(t, w.md, object, int64(off))
		for _, op := range []string{opKeyed, opList, opUnion} {
			_, err := Load(ctx, l, w.dir, w.md.ID, Assign(w.md, op, 0, 1))
			if op != hit {
				if err != nil {
					t.Fatalf("byte %d is in %s's state, yet loading %s failed: %v", off, hit, op, err)
				}
				continue
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d flipped in %s (%s): err = %v, want ErrCorrupt", off, op, name, err)
			}
			if !strings.Contains(err.Error(), l.URL()+"/"+name) {
				t.Fatalf("error %q does not name the object %s", err, name)
			}
			what := fmt.Sprintf("key group %d", sp.KeyGroup)
			if isList {
				what = "list entry"
			}
			if !strings.Contains(err.Error(), what) {
				t.Fatalf("error %q does not say %q", err, what)
			}
		}
	}
	if err := l.Put(ctx, name, orig); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{opKeyed, opList, opUnion} {
		if _, err := Load(ctx, l, w.dir, w.md.ID, Assign(w.md, op, 0, 1)); err != nil {
			t.Fatalf("restored object: %v", err)
		}
	}
}

func TestLoadMissingObject(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	w := writeCheckpoint(t, l, "wc", 4, false, 3, 12)
	gone := w.objects[1]
	if err := l.Delete(ctx, w.dir+gone); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{opKeyed, opUnion} { // old subtask 1 holds both
		for q := 1; q <= 3; q++ {
			for j := 0; j < q; j++ {
				a := Assign(w.md, op, j, q)
				reads := false
				for _, o := range a.Objects() {
					reads = reads || o == gone
				}
				_, err := Load(ctx, l, w.dir, w.md.ID, a)
				if !reads {
					if err != nil {
						t.Fatalf("%s %d/%d does not read %s, yet: %v", op, j, q, gone, err)
					}
					continue
				}
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s %d/%d: err = %v, want ErrNotFound", op, j, q, err)
				}
				if !strings.Contains(err.Error(), w.dir+gone) {
					t.Fatalf("error %q does not name %s", err, w.dir+gone)
				}
				if errors.Is(err, ErrCorrupt) {
					t.Fatalf("a missing object reported as corrupt: %v", err)
				}
			}
		}
	}
}

func TestLoadTruncatedObject(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	w := writeCheckpoint(t, l, "wc", 2, false, 1, 16)
	name := w.dir + w.objects[0]
	orig, err := l.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	spans := w.spans[w.objects[0]]
	for _, n := range []int{0, 1, len(orig) / 2, len(orig) - 1} {
		if err := l.Put(ctx, name, orig[:n]); err != nil {
			t.Fatal(err)
		}
		// The operators whose spans reach past n must fail.
		for _, op := range []string{opKeyed, opList, opUnion} {
			cut := false
			for _, sub := range w.md.Operators[op].Subtasks {
				for _, sp := range append(append([]Span(nil), sub.KeyGroups...), sub.List...) {
					cut = cut || sp.Off+sp.Len > int64(n)
				}
			}
			_, err := Load(ctx, l, w.dir, w.md.ID, Assign(w.md, op, 0, 1))
			if !cut {
				if err != nil {
					t.Fatalf("truncation to %d does not touch %s, yet: %v", n, op, err)
				}
				continue
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s truncated to %d of %d bytes, loading %s: err = %v, want ErrCorrupt naming it", name, n, len(orig), op, err)
			}
		}
	}
	if len(spans) == 0 {
		t.Fatal("test checkpoint has no spans")
	}
}

// Spans in _metadata are not checksummed themselves; impossible ones must
// be reported as corrupt, never panic.
func TestLoadImpossibleSpans(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	if err := l.Put(ctx, "wc/chk-1/o", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []Span{
		{Off: -1, Len: 2},
		{Off: 8, Len: 3},
		{Off: 11, Len: 0},
		{Off: 5, Len: -3},
		{Off: 5, Len: math.MaxInt64},
		{Off: math.MaxInt64, Len: 1},
		{Off: math.MaxInt64, Len: math.MaxInt64},
	} {
		md := &Metadata{Version: FormatVersion, ID: 1, MaxParallelism: 1, Parallelism: 1, Operators: map[string]*OperatorState{
			"k": {Subtasks: []SubtaskState{{Object: "o", KeyGroups: []Span{sp}}}},
			"l": {Subtasks: []SubtaskState{{Object: "o", List: []Span{sp}}}},
		}}
		for _, op := range []string{"k", "l"} {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Load panicked on span %+v: %v", sp, r)
					}
				}()
				_, err := Load(ctx, l, "wc/chk-1/", 1, Assign(md, op, 0, 1))
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "wc/chk-1/o") {
					t.Fatalf("span %+v: err = %v, want ErrCorrupt naming the object", sp, err)
				}
			}()
		}
	}
}

// exampleMetadata is the example in docs/format/checkpoint.md.
const exampleMetadata = `{
 "version": 1,
 "job": "wordcount",
 "id": 42,
 "attempt": 7,
 "maxParallelism": 128,
 "parallelism": 2,
 "createdAt": "2026-03-01T12:00:00Z",
 "bytes": 1234,
 "operators": {
  "count": {
   "subtasks": [
    {
     "object": "a7-c1-s0.state",
     "keyGroups": [
      {"off": 0, "len": 310, "crc": 2874201833},
      {"kg": 1, "off": 310, "len": 298, "crc": 1129407617}
     ]
    },
    {
     "object": "a7-c1-s1.state",
     "keyGroups": [
      {"kg": 64, "off": 0, "len": 301, "crc": 3405691582}
     ]
    }
   ]
  },
  "lines": {
   "subtasks": [
    {"object": "a7-c0-s0.state", "list": [{"off": 0, "len": 41, "crc": 305419896}]},
    {"object": "a7-c0-s1.state", "list": [{"off": 0, "len": 43, "crc": 2596069104}]}
   ]
  },
  "out": {
   "union": true,
   "subtasks": [
    {"object": "a7-c1-s0.state", "list": [{"off": 608, "len": 16, "crc": 4023233417}]},
    {"object": "a7-c1-s1.state", "list": [{"off": 301, "len": 16, "crc": 2343432205}]}
   ]
  }
 }
}`

func TestDecodeDocumentedExample(t *testing.T) {
	md, err := DecodeMetadata("wordcount/chk-42/_metadata", []byte(exampleMetadata))
	if err != nil {
		t.Fatal(err)
	}
	want := &Metadata{
		Version: 1, Job: "wordcount", ID: 42, Attempt: 7, MaxParallelism: 128, Parallelism: 2,
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Bytes: 1234,
		Operators: map[string]*OperatorState{
			"count": {Subtasks: []SubtaskState{
				{Object: "a7-c1-s0.state", KeyGroups: []Span{{KeyGroup: 0, Off: 0, Len: 310, CRC: 2874201833}, {KeyGroup: 1, Off: 310, Len: 298, CRC: 1129407617}}},
				{Object: "a7-c1-s1.state", KeyGroups: []Span{{KeyGroup: 64, Off: 0, Len: 301, CRC: 3405691582}}},
			}},
			"lines": {Subtasks: []SubtaskState{
				{Object: "a7-c0-s0.state", List: []Span{{Off: 0, Len: 41, CRC: 305419896}}},
				{Object: "a7-c0-s1.state", List: []Span{{Off: 0, Len: 43, CRC: 2596069104}}},
			}},
			"out": {Union: true, Subtasks: []SubtaskState{
				{Object: "a7-c1-s0.state", List: []Span{{Off: 608, Len: 16, CRC: 4023233417}}},
				{Object: "a7-c1-s1.state", List: []Span{{Off: 301, Len: 16, CRC: 2343432205}}},
			}},
		},
	}
	if !md.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("createdAt %v", md.CreatedAt)
	}
	md.CreatedAt = want.CreatedAt
	if !reflect.DeepEqual(md, want) {
		a, _ := json.Marshal(md)
		b, _ := json.Marshal(want)
		t.Fatalf("decoded\n%s\nwant\n%s", a, b)
	}

	// The example in the format document is this one.
	doc, err := os.ReadFile("../docs/format/checkpoint.md")
	if err != nil {
		t.Fatalf("format document: %v", err)
	}
	_, block, ok := strings.Cut(string(doc), "```json\n")
	if !ok {
		t.Fatal("docs/format/checkpoint.md has no ```json example")
	}
	block, _, _ = strings.Cut(block, "```")
	fromDoc, err := DecodeMetadata("docs/format/checkpoint.md", []byte(block))
	if err != nil {
		t.Fatalf("the documented example does not decode: %v", err)
	}
	fromDoc.CreatedAt = want.CreatedAt
	if !reflect.DeepEqual(fromDoc, want) {
		t.Fatal("the example in docs/format/checkpoint.md differs from exampleMetadata")
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	md := &Metadata{
		Version: 99, // EncodeMetadata stamps the current version
		Job:     "wc", ID: 12, Savepoint: true, Attempt: 4, MaxParallelism: 300, Parallelism: 3,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), Bytes: 1 << 40,
		Operators: map[string]*OperatorState{
			"k": {Subtasks: []SubtaskState{{Object: "a4-c0-s0.state", KeyGroups: []Span{{KeyGroup: 0, Off: 0, Len: 3, CRC: 1}, {KeyGroup: 299, Off: 3, Len: 1 << 33, CRC: math.MaxUint32}}}, {}, {Object: "a4-c0-s2.state"}}},
			"u": {Union: true, Subtasks: []SubtaskState{{Object: "x", List: []Span{{Off: 7, Len: 0}}}}},
		},
	}
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if md.Version != FormatVersion {
		t.Fatalf("EncodeMetadata left version %d", md.Version)
	}
	got, err := DecodeMetadata("m", b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(md.CreatedAt) {
		t.Fatalf("createdAt %v, want %v", got.CreatedAt, md.CreatedAt)
	}
	got.CreatedAt = md.CreatedAt
	if !reflect.DeepEqual(got, md) {
		t.Fatalf("round trip:\n%+v\n%+v", got, md)
	}
	// The field names are the persisted format.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"attempt", "bytes", "createdAt", "id", "job", "maxParallelism", "operators", "parallelism", "savepoint", "version"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("top-level fields %q, want %q", keys, want)
	}
	for _, s := range []string{`"union": true`, `"subtasks"`, `"object": "a4-c0-s0.state"`, `"keyGroups"`, `"kg": 299`, `"list"`, `"off": 7`, `"len": 8589934592`, `"crc": 4294967295`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("encoded metadata lacks %s:\n%s", s, b)
		}
	}
	// A checkpoint (not savepoint) omits the savepoint flag; key group 0
	// omits kg.
	md.Savepoint = false
	b, _ = EncodeMetadata(md)
	if bytes.Contains(b, []byte(`"savepoint"`)) || bytes.Contains(b, []byte(`"kg": 0`)) {
		t.Fatalf("zero fields not omitted:\n%s", b)
	}
}

func TestDecodeMetadataRejects(t *testing.T) {
	const name = "file:///ckpt/wc/chk-3/_metadata"
	for _, tc := range []struct {
		what    string
		data    string
		corrupt bool
		want    string
	}{
		{"empty", "", true, ""},
		{"garbage", "\x00\xffnot json", true, ""},
		{"truncated", `{"version": 1, "job": "wc", "operat`, true, ""},
		{"wrong type", `{"version": "1"}`, true, ""},
		{"array", `[1]`, true, ""},
		{"future version", `{"version": 2, "maxParallelism": 128, "parallelism": 1}`, false, "format version 2"},
		{"no version", `{"maxParallelism": 128, "parallelism": 1}`, false, "format version 0"},
		{"null", `null`, false, "format version 0"},
		{"no parallelism", `{"version": 1, "maxParallelism": 128}`, true, "parallelism 0"},
		{"no max parallelism", `{"version": 1, "parallelism": 2}`, true, "max 0"},
	} {
		_, err := DecodeMetadata(name, []byte(tc.data))
		if err == nil {
			t.Fatalf("%s: accepted", tc.what)
		}
		if errors.Is(err, ErrCorrupt) != tc.corrupt {
			t.Errorf("%s: errors.Is(ErrCorrupt) = %v, want %v: %v", tc.what, !tc.corrupt, tc.corrupt, err)
		}
		if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name the object or say %q", tc.what, err, tc.want)
		}
	}
}

func TestReadMetadata(t *testing.T) {
	ctx := context.Background()
	l, _ := newLocal(t)
	_, err := ReadMetadata(ctx, l, "wc/chk-1/")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "wc/chk-1/_metadata") {
		t.Fatalf("missing _metadata: %v", err)
	}
	if err := l.Put(ctx, "wc/chk-2/_metadata", []byte(`{"version":1,"job":`)); err != nil {
		t.Fatal(err)
	}
	_, err = ReadMetadata(ctx, l, "wc/chk-2/")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), l.URL()+"/wc/chk-2/_metadata") {
		t.Fatalf("garbage _metadata: %v", err)
	}
	// The folder may be given without its trailing slash (--from-savepoint).
	w := writeCheckpoint(t, l, "wc", 3, true, 2, 8)
	md, err := ReadMetadata(ctx, l, strings.TrimSuffix(w.dir, "/"))
	if err != nil || md.ID != 3 || !md.Savepoint {
		t.Fatalf("ReadMetadata without slash: %+v, %v", md, err)
	}
	// And _metadata is create-only: a second commit of the same id fails.
	b, _ := EncodeMetadata(md)
	if err := l.PutIfAbsent(ctx, path.Join(w.dir, MetadataName), b); !errors.Is(err, ErrExists) {
		t.Fatalf("second _metadata: %v", err)
	}
}

func TestCheckCompatible(t *testing.T) {
	g := &graph.Graph{Job: "wc", MaxParallelism: 128, Vertices: []*graph.Vertex{{Name: "lines"}, {Name: "count"}, {Name: "out"}}}
	withState := SubtaskState{Object: "o", KeyGroups: []Span{{KeyGroup: 5, Len: 1}}}
	withList := SubtaskState{Object: "o", List: []Span{{Len: 1}}}
	mk := func(maxP int, ops map[string][]SubtaskState) *Metadata {
		md := &Metadata{ID: 9, Job: "wc", MaxParallelism: maxP, Parallelism: 2, Operators: map[string]*OperatorState{}}
		for op, subs := range ops {
			md.Operators[op] = &OperatorState{Subtasks: subs}
		}
		return md
	}
	for _, tc := range []struct {
		what      string
		md        *Metadata
		allowDrop bool
		want      []string // nil: compatible
	}{
		{"same job", mk(128, map[string][]SubtaskState{"count": {withState}, "lines": {withList}}), false, nil},
		{"new operator without state", mk(128, map[string][]SubtaskState{"count": {withState}}), false, nil},
		{"no operators", mk(128, nil), false, nil},
		{"max parallelism changed", mk(64, map[string][]SubtaskState{"count": {withState}}), false, []string{"64", "128", "max parallelism"}},
		{"max parallelism changed, drop allowed", mk(256, nil), true, []string{"256", "128"}},
		{"removed keyed operator", mk(128, map[string][]SubtaskState{"old-count": {{}, withState}}), false, []string{`"old-count"`, "checkpoint 9"}},
		{"removed list operator", mk(128, map[string][]SubtaskState{"old-src": {withList}}), false, []string{`"old-src"`}},
		{"removed operators listed sorted", mk(128, map[string][]SubtaskState{"zz": {withList}, "aa": {withState}, "mm": {{}}}), false, []string{`["aa" "zz"]`}},
		{"removed operator, drop allowed", mk(128, map[string][]SubtaskState{"old-count": {withState}}), true, nil},
		{"removed operator with empty state", mk(128, map[string][]SubtaskState{"gone": {{}, {Object: "o"}}}), false, nil},
		{"removed operator with no subtasks", mk(128, map[string][]SubtaskState{"gone": nil}), false, nil},
	} {
		err := CheckCompatible(tc.md, g, tc.allowDrop)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.what, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: compatible, want an error", tc.what)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.what, err, w)
			}
		}
	}
}
