package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ebbflow/ebbflow/codec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// --- helpers ---------------------------------------------------------------

// setKey routes k to its key group and makes it current; it fails the test
// if the backend does not own the key group.
func setKey(t testing.TB, b *Backend[string], k string) {
	t.Helper()
	if err := b.SetCurrentKey(k, KeyGroupOf(HashString(k), b.maxP)); err != nil {
		t.Fatalf("SetCurrentKey(%q): %v", k, err)
	}
}

// testOp is one keyed operator subtask with a value and a map state, as a
// user's Process function would declare them.
type testOp struct {
	b   *Backend[string]
	cnt *Value[string, int64]
	tag *Map[string, string, string]
}

func newTestOp(r Range, maxP int) *testOp {
	b := NewBackend[string](r, maxP, codec.String())
	return &testOp{
		b:   b,
		cnt: NewValue[int64](b, "count", codec.Int64()),
		tag: NewMap[string, string](b, "tags", codec.String(), codec.String()),
	}
}

// decoded is the content of a snapshot decoded by the reference decoder
// below, which follows docs/format/checkpoint.md and not the backend's code.
type decoded struct {
	kg    int
	value map[string]int64
	tags  map[string]map[string]string
}

func readUvarint(t testing.TB, b []byte) (uint64, []byte) {
	t.Helper()
	n, k := binary.Uvarint(b)
	if k <= 0 {
		t.Fatalf("bad uvarint in % x", b)
	}
	return n, b[k:]
}

func readBytes(t testing.TB, b []byte) ([]byte, []byte) {
	t.Helper()
	n, rest := readUvarint(t, b)
	if uint64(len(rest)) < n {
		t.Fatalf("chunk of %d bytes in %d", n, len(rest))
	}
	return rest[:n], rest[n:]
}

// decodeKG decodes one key group's blob: repeated {uvarint len name, name,
// uvarint len data, data}; names sorted and unique.
func decodeKG(t testing.TB, kg int, blob []byte) decoded {
	t.Helper()
	d := decoded{kg: kg, value: map[string]int64{}, tags: map[string]map[string]string{}}
	var names []string
	for len(blob) > 0 {
		var name, data []byte
		name, blob = readBytes(t, blob)
		data, blob = readBytes(t, blob)
		names = append(names, string(name))
		switch string(name) {
		case "count":
			n, rest := readUvarint(t, data)
			for i := uint64(0); i < n; i++ {
				var k, v []byte
				k, rest = readBytes(t, rest)
				v, rest = readBytes(t, rest)
				x, err := codec.Int64().Decode(v)
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := d.value[string(k)]; dup {
					t.Fatalf("kg %d: key %q twice in value state", kg, k)
				}
				d.value[string(k)] = x
			}
			if len(rest) != 0 {
				t.Fatalf("kg %d: %d trailing bytes in value state", kg, len(rest))
			}
		case "tags":
			n, rest := readUvarint(t, data)
			for i := uint64(0); i < n; i++ {
				var k []byte
				k, rest = readBytes(t, rest)
				var cnt uint64
				cnt, rest = readUvarint(t, rest)
				if cnt == 0 {
					t.Fatalf("kg %d: key %q with an empty map written", kg, k)
				}
				m := map[string]string{}
				for j := uint64(0); j < cnt; j++ {
					var uk, uv []byte
					uk, rest = readBytes(t, rest)
					uv, rest = readBytes(t, rest)
					m[string(uk)] = string(uv)
				}
				if _, dup := d.tags[string(k)]; dup {
					t.Fatalf("kg %d: key %q twice in map state", kg, k)
				}
				d.tags[string(k)] = m
			}
			if len(rest) != 0 {
				t.Fatalf("kg %d: %d trailing bytes in map state", kg, len(rest))
			}
		default:
			t.Fatalf("kg %d: unexpected state %q", kg, name)
		}
	}
	if len(names) == 0 {
		t.Fatalf("kg %d: empty blob in snapshot (empty key groups must be omitted)", kg)
	}
	if !sort.StringsAreSorted(names) || len(names) > 2 || (len(names) == 2 && names[0] == names[1]) {
		t.Fatalf("kg %d: state names %q not sorted and unique", kg, names)
	}
	return d
}

// --- semantics -------------------------------------------------------------

func TestValueStateSemantics(t *testing.T) {
	op := newTestOp(RangeFor(0, 8, 1), 8)
	setKey(t, op.b, "a")
	if v, ok := op.cnt.Get(); ok || v != 0 {
		t.Fatalf("Get of unset key = %d, %v; want 0, false", v, ok)
	}
	op.cnt.Set(0) // the zero value is a value, not absence
	if v, ok := op.cnt.Get(); !ok || v != 0 {
		t.Fatalf("Get after Set(0) = %d, %v; want 0, true", v, ok)
	}
	op.cnt.Set(41)
	op.cnt.Set(42)
	if v, ok := op.cnt.Get(); !ok || v != 42 {
		t.Fatalf("Get after Set(42) = %d, %v", v, ok)
	}
	if op.b.CurrentKey() != "a" {
		t.Fatalf("CurrentKey = %q", op.b.CurrentKey())
	}
	setKey(t, op.b, "b")
	if _, ok := op.cnt.Get(); ok {
		t.Fatal("key b sees key a's value")
	}
	op.cnt.Set(7)
	op.cnt.Clear()
	if _, ok := op.cnt.Get(); ok {
		t.Fatal("value still set after Clear")
	}
	op.cnt.Clear() // clearing an unset key is a no-op
	setKey(t, op.b, "a")
	if v, _ := op.cnt.Get(); v != 42 {
		t.Fatalf("Clear of b changed a: %d", v)
	}
}

// Two keys that land in the same key group, and keys in different key
// groups, never see each other's state.
func TestValueStateKeysInSameKeyGroup(t *testing.T) {
	const maxP = 4
	byKG := map[int][]string{}
	for i := 0; len(byKG[0]) < 3; i++ {
		k := fmt.Sprint("k", i)
		kg := KeyGroupOf(HashString(k), maxP)
		byKG[kg] = append(byKG[kg], k)
	}
	op := newTestOp(RangeFor(0, maxP, 1), maxP)
	var all []string
	for _, ks := range byKG {
		all = append(all, ks...)
	}
	for i, k := range all {
		setKey(t, op.b, k)
		op.cnt.Set(int64(i))
	}
	for i, k := range all {
		setKey(t, op.b, k)
		if v, ok := op.cnt.Get(); !ok || v != int64(i) {
			t.Fatalf("key %q = %d, %v; want %d", k, v, ok, i)
		}
	}
}

func TestMapStateSemantics(t *testing.T) {
	op := newTestOp(RangeFor(0, 8, 1), 8)
	setKey(t, op.b, "a")
	if op.tag.Len() != 0 {
		t.Fatal("Len of fresh key != 0")
	}
	if _, ok := op.tag.Get("x"); ok {
		t.Fatal("Get on fresh key found something")
	}
	op.tag.Remove("x") // no-op on a key without a map
	op.tag.Put("x", "1")
	op.tag.Put("y", "2")
	op.tag.Put("x", "3") // overwrite
	if v, ok := op.tag.Get("x"); !ok || v != "3" {
		t.Fatalf("Get(x) = %q, %v", v, ok)
	}
	if op.tag.Len() != 2 {
		t.Fatalf("Len = %d, want 2", op.tag.Len())
	}
	got := map[string]string{}
	op.tag.All(func(k, v string) bool { got[k] = v; return true })
	if len(got) != 2 || got["x"] != "3" || got["y"] != "2" {
		t.Fatalf("All = %v", got)
	}
	calls := 0
	op.tag.All(func(string, string) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("All kept calling after false: %d calls", calls)
	}

	setKey(t, op.b, "b")
	if op.tag.Len() != 0 {
		t.Fatal("key b sees key a's map")
	}
	op.tag.All(func(string, string) bool { t.Fatal("All called for an empty map"); return true })
	op.tag.Put("z", "9")

	setKey(t, op.b, "a")
	op.tag.Remove("x")
	op.tag.Remove("nope")
	if _, ok := op.tag.Get("x"); ok || op.tag.Len() != 1 {
		t.Fatalf("after Remove(x): Len=%d", op.tag.Len())
	}
	op.tag.Remove("y")
	if op.tag.Len() != 0 {
		t.Fatal("map not empty after removing every entry")
	}
	// Removing the last entry removes the key: it is absent from a snapshot.
	setKey(t, op.b, "b")
	op.tag.Clear()
	if op.tag.Len() != 0 {
		t.Fatal("Clear left entries")
	}
	if snap := op.b.Snapshot(); len(snap) != 0 {
		t.Fatalf("snapshot of an emptied map state holds %d key groups", len(snap))
	}
}

func TestDeclareStateTwicePanics(t *testing.T) {
	b := NewBackend[string](RangeFor(0, 8, 1), 8, codec.String())
	NewValue[int64](b, "s", codec.Int64())
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), `"s"`) {
			t.Fatalf("second declaration of %q: recover() = %v", "s", r)
		}
	}()
	NewMap[string, string](b, "s", codec.String(), codec.String())
}

func TestSetCurrentKeyOutsideRange(t *testing.T) {
	r := RangeFor(1, 12, 3) // [4,7]
	if r != (Range{Start: 4, End: 7}) {
		t.Fatalf("RangeFor(1,12,3) = %v", r)
	}
	op := newTestOp(r, 12)
	if err := op.b.SetCurrentKey("in", 4); err != nil {
		t.Fatal(err)
	}
	op.cnt.Set(1)
	for _, kg := range []int{-1, 0, 3, 8, 11, 12} {
		err := op.b.SetCurrentKey("out", kg)
		if err == nil {
			t.Fatalf("SetCurrentKey with key group %d outside %v: no error", kg, r)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(kg)) || !strings.Contains(err.Error(), r.String()) {
			t.Errorf("error %q names neither key group %d nor range %v", err, kg, r)
		}
		// A refused key does not become current.
		if op.b.CurrentKey() != "in" {
			t.Fatalf("CurrentKey = %q after a refused SetCurrentKey", op.b.CurrentKey())
		}
		if v, ok := op.cnt.Get(); !ok || v != 1 {
			t.Fatalf("refused SetCurrentKey changed the current entry: %d, %v", v, ok)
		}
	}
	for kg := r.Start; kg <= r.End; kg++ {
		if err := op.b.SetCurrentKey("k", kg); err != nil {
			t.Fatalf("key group %d inside %v: %v", kg, r, err)
		}
	}
}

// --- snapshot format -------------------------------------------------------

// The bytes of a snapshot are part of the persisted format
// (docs/format/checkpoint.md); this pins them for single-entry states, whose
// encoding does not depend on map iteration order.
func TestSnapshotGoldenBytes(t *testing.T) {
	op := newTestOp(Range{Start: 0, End: 0}, 1)
	setKey(t, op.b, "a")
	op.cnt.Set(1) // zig-zag varint 0x02
	op.tag.Put("x", "yz")
	snap := op.b.Snapshot()
	want := []byte{
		5, 'c', 'o', 'u', 'n', 't', // name "count"
		5,            // len(data)
		1,            // one entry
		1, 'a', 1, 2, // key "a", value int64(1)
		4, 't', 'a', 'g', 's', // name "tags"
		9,      // len(data)
		1,      // one key
		1, 'a', // key "a"
		1,                   // one map entry
		1, 'x', 2, 'y', 'z', // "x" -> "yz"
	}
	if len(snap) != 1 || !bytes.Equal(snap[0], want) {
		t.Fatalf("snapshot = %v\nwant kg 0 = % x", snap, want)
	}
}

func TestSnapshotOmitsEmptyKeyGroups(t *testing.T) {
	const maxP = 16
	r := RangeFor(1, maxP, 2) // [8,15]
	op := newTestOp(r, maxP)
	if s := op.b.Snapshot(); len(s) != 0 {
		t.Fatalf("empty backend snapshot has %d key groups", len(s))
	}
	used := map[int]bool{}
	for i := 0; len(used) < 3; i++ {
		k := fmt.Sprint("key-", i)
		kg := KeyGroupOf(HashString(k), maxP)
		if !r.Contains(kg) || used[kg] {
			continue
		}
		used[kg] = true
		setKey(t, op.b, k)
		op.cnt.Set(int64(i))
	}
	snap := op.b.Snapshot()
	if len(snap) != len(used) {
		t.Fatalf("snapshot key groups %d, want %d", len(snap), len(used))
	}
	for kg, blob := range snap {
		if !used[kg] || !r.Contains(kg) {
			t.Fatalf("snapshot holds key group %d (range %v)", kg, r)
		}
		d := decodeKG(t, kg, blob)
		if len(d.value) != 1 || len(d.tags) != 0 {
			t.Fatalf("kg %d decoded to %+v", kg, d)
		}
	}
}

// A snapshot is a copy: changing state afterwards does not change it.
func TestSnapshotIsACopy(t *testing.T) {
	op := newTestOp(RangeFor(0, 4, 1), 4)
	setKey(t, op.b, "a")
	op.cnt.Set(1)
	s1 := op.b.Snapshot()
	kg := KeyGroupOf(HashString("a"), 4)
	before := append([]byte(nil), s1[kg]...)
	op.cnt.Set(999999)
	op.b.Snapshot()
	if !bytes.Equal(s1[kg], before) {
		t.Fatal("an earlier snapshot changed after more writes and a second snapshot")
	}
}

func fill(t testing.TB, op *testOp, keys []string, rng *rand.Rand) {
	t.Helper()
	for i, k := range keys {
		setKey(t, op.b, k)
		if i%3 != 2 {
			op.cnt.Set(int64(i) * 7919)
		}
		if i%2 == 0 {
			for j := 0; j <= rng.IntN(3); j++ {
				op.tag.Put(fmt.Sprint("f", j), fmt.Sprint(k, "/", j))
			}
		}
	}
}

func checkContent(t testing.TB, op *testOp, keys []string) {
	t.Helper()
	for i, k := range keys {
		setKey(t, op.b, k)
		v, ok := op.cnt.Get()
		if want := i%3 != 2; ok != want || (ok && v != int64(i)*7919) {
			t.Fatalf("key %q: value %d, %v", k, v, ok)
		}
		if i%2 == 0 {
			if op.tag.Len() == 0 {
				t.Fatalf("key %q: map state lost", k)
			}
			op.tag.All(func(uk, uv string) bool {
				if uv != k+"/"+strings.TrimPrefix(uk, "f") {
					t.Fatalf("key %q: map %q=%q", k, uk, uv)
				}
				return true
			})
		} else if op.tag.Len() != 0 {
			t.Fatalf("key %q: unexpected map entries", k)
		}
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const maxP = 32
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprint("user-", i)
	}
	keys = append(keys, "", "ü∑\x00binary") // unusual keys survive too
	src := newTestOp(RangeFor(0, maxP, 1), maxP)
	fill(t, src, keys, rng)
	snap := src.b.Snapshot()

	dst := newTestOp(RangeFor(0, maxP, 1), maxP)
	if err := dst.b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	checkContent(t, dst, keys)
	// Re-snapshotting restored state gives the same content.
	again := dst.b.Snapshot()
	if len(again) != len(snap) {
		t.Fatalf("re-snapshot: %d key groups, want %d", len(again), len(snap))
	}
	for kg, blob := range snap {
		a, b := decodeKG(t, kg, blob), decodeKG(t, kg, again[kg])
		if fmt.Sprint(a) != fmt.Sprint(b) { // fmt sorts map keys
			t.Fatalf("kg %d: re-snapshot differs:\n%v\n%v", kg, a, b)
		}
	}
	// Restore of nothing (nil or empty) is a fresh start.
	empty := newTestOp(RangeFor(0, maxP, 1), maxP)
	if err := empty.b.Restore(nil); err != nil {
		t.Fatal(err)
	}
	if err := empty.b.Restore(map[int][]byte{}); err != nil {
		t.Fatal(err)
	}
	if len(empty.b.Snapshot()) != 0 {
		t.Fatal("restore of nothing created state")
	}
}

// --- redistribution --------------------------------------------------------

// redistribute fills p subtasks, snapshots them all, restores onto q
// subtasks (each given exactly the key groups of its range), and checks that
// every key is found exactly once, at its new owner, with its value, and that
// nothing else exists.
func redistribute(t *testing.T, maxP, p, q int, keys []string) {
	t.Helper()
	want := map[string]int64{}
	wantTags := map[string]string{}
	old := make([]*testOp, p)
	for i := range old {
		old[i] = newTestOp(RangeFor(i, maxP, p), maxP)
	}
	for n, k := range keys {
		kg := KeyGroupOf(HashString(k), maxP)
		op := old[OperatorIndexOf(kg, maxP, p)]
		setKey(t, op.b, k)
		op.cnt.Set(int64(n + 1))
		want[k] = int64(n + 1)
		if n%4 == 0 {
			op.tag.Put("k", k)
			wantTags[k] = k
		}
	}
	all := map[int][]byte{}
	for i, op := range old {
		for kg, blob := range op.b.Snapshot() {
			if !RangeFor(i, maxP, p).Contains(kg) {
				t.Fatalf("old subtask %d snapshot holds key group %d outside its range", i, kg)
			}
			if _, dup := all[kg]; dup {
				t.Fatalf("key group %d in two old snapshots", kg)
			}
			all[kg] = blob
		}
	}
	seen := map[string]int{}
	seenTags := map[string]int{}
	assigned := 0
	for j := 0; j < q; j++ {
		r := RangeFor(j, maxP, q)
		share := map[int][]byte{}
		for kg, blob := range all {
			if r.Contains(kg) {
				share[kg] = blob
			}
		}
		assigned += len(share)
		op := newTestOp(r, maxP)
		if err := op.b.Restore(share); err != nil {
			t.Fatalf("maxP=%d %d->%d subtask %d: %v", maxP, p, q, j, err)
		}
		// Everything the new subtask holds, decoded from its own snapshot.
		for kg, blob := range op.b.Snapshot() {
			d := decodeKG(t, kg, blob)
			for k, v := range d.value {
				seen[k]++
				if got := KeyGroupOf(HashString(k), maxP); got != kg {
					t.Fatalf("key %q restored in key group %d, belongs to %d", k, kg, got)
				}
				if owner := OperatorIndexOf(kg, maxP, q); owner != j {
					t.Fatalf("key %q at new subtask %d, owner is %d", k, j, owner)
				}
				if v != want[k] {
					t.Fatalf("key %q = %d, want %d", k, v, want[k])
				}
			}
			for k, m := range d.tags {
				seenTags[k]++
				if len(m) != 1 || m["k"] != wantTags[k] {
					t.Fatalf("key %q map = %v", k, m)
				}
			}
		}
		// And through the state handles.
		for k, v := range want {
			kg := KeyGroupOf(HashString(k), maxP)
			if !r.Contains(kg) {
				continue
			}
			setKey(t, op.b, k)
			if got, ok := op.cnt.Get(); !ok || got != v {
				t.Fatalf("maxP=%d %d->%d: key %q at subtask %d = %d, %v; want %d", maxP, p, q, k, j, got, ok, v)
			}
		}
	}
	if assigned != len(all) {
		t.Fatalf("maxP=%d %d->%d: %d key groups assigned, %d in snapshot", maxP, p, q, assigned, len(all))
	}
	if len(seen) != len(want) || len(seenTags) != len(wantTags) {
		t.Fatalf("maxP=%d %d->%d: %d keys restored, want %d; %d maps, want %d", maxP, p, q, len(seen), len(want), len(seenTags), len(wantTags))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("key %q restored %d times", k, n)
		}
		if _, ok := want[k]; !ok {
			t.Fatalf("key %q restored but never written", k)
		}
	}
	for k, n := range seenTags {
		if n != 1 {
			t.Fatalf("map of key %q restored %d times", k, n)
		}
	}
}

func TestRedistributionEveryParallelism(t *testing.T) {
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = fmt.Sprintf("w%04d", i)
	}
	for _, maxP := range []int{8, 128} {
		for p := 1; p <= 8; p++ {
			for q := 1; q <= 8; q++ {
				redistribute(t, maxP, p, q, keys)
			}
		}
	}
}

func TestRedistributionRandomShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(2024, 11))
	keys := make([]string, 1500)
	for i := range keys {
		keys[i] = fmt.Sprint(rng.Uint64())
	}
	for _, maxP := range []int{1, 7, 128, 300} {
		for n := 0; n < 6; n++ {
			p, q := 1+rng.IntN(maxP), 1+rng.IntN(maxP)
			if n == 0 {
				p, q = maxP, 1 // widest to narrowest
			} else if n == 1 {
				p, q = 1, maxP
			}
			redistribute(t, maxP, p, q, keys)
		}
	}
}

// --- restore errors --------------------------------------------------------

func TestRestoreUndeclaredState(t *testing.T) {
	src := newTestOp(RangeFor(0, 4, 1), 4)
	extra := NewValue[string](src.b, "dropped-state", codec.String())
	setKey(t, src.b, "a")
	extra.Set("x")
	src.cnt.Set(1)
	snap := src.b.Snapshot()

	dst := newTestOp(RangeFor(0, 4, 1), 4) // declares count and tags only
	err := dst.b.Restore(snap)
	if err == nil {
		t.Fatal("restore of a snapshot holding an undeclared state succeeded")
	}
	if !strings.Contains(err.Error(), `"dropped-state"`) {
		t.Fatalf("error %q does not name the state", err)
	}
}

func TestRestoreKeyGroupOutsideRange(t *testing.T) {
	src := newTestOp(RangeFor(0, 4, 1), 4)
	setKey(t, src.b, "a")
	src.cnt.Set(1)
	snap := src.b.Snapshot()
	kg := KeyGroupOf(HashString("a"), 4)
	// A subtask whose range excludes kg.
	var r Range
	for i := 0; i < 4; i++ {
		if r = RangeFor(i, 4, 4); !r.Contains(kg) {
			break
		}
	}
	dst := newTestOp(r, 4)
	err := dst.b.Restore(snap)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint("key group ", kg)) {
		t.Fatalf("restore of key group %d into %v: %v", kg, r, err)
	}
}

// Restoring a state with a different type than it was written with fails
// cleanly (the value codec rejects the bytes).
func TestRestoreWithWrongValueCodec(t *testing.T) {
	b := NewBackend[string](RangeFor(0, 1, 1), 1, codec.String())
	s := NewValue[string](b, "count", codec.String())
	setKey(t, b, "a")
	s.Set("not a number \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
	snap := b.Snapshot()
	dst := newTestOp(RangeFor(0, 1, 1), 1)
	if err := dst.b.Restore(snap); err == nil {
		t.Fatal("int64 state restored from string bytes")
	}
}

// validBlob returns a key group blob holding both states with several keys,
// the offsets at which a complete {name, data} record ends, and its data
// chunks per state.
func validBlob(t *testing.T) (int, []byte, []int, map[string][]byte) {
	t.Helper()
	op := newTestOp(Range{Start: 0, End: 0}, 1)
	for i := 0; i < 5; i++ {
		k := fmt.Sprint("key", i)
		setKey(t, op.b, k)
		op.cnt.Set(int64(i) * 1000003)
		op.tag.Put("a", strings.Repeat("x", 130)) // a 2-byte length prefix
		op.tag.Put("b", k)
	}
	blob := op.b.Snapshot()[0]
	bounds := []int{0}
	chunks := map[string][]byte{}
	rest := blob
	for len(rest) > 0 {
		var name, data []byte
		name, rest = readBytes(t, rest)
		data, rest = readBytes(t, rest)
		chunks[string(name)] = data
		bounds = append(bounds, len(blob)-len(rest))
	}
	return 0, blob, bounds, chunks
}

func frame(name string, data []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// Every truncation of a valid key-group blob either is itself a valid blob
// (it ends exactly after a complete state record) or is rejected with
// ErrCorrupt; none panics.
func TestRestoreTruncatedBlob(t *testing.T) {
	kg, blob, bounds, _ := validBlob(t)
	isBound := map[int]bool{}
	for _, b := range bounds {
		isBound[b] = true
	}
	for n := 0; n < len(blob); n++ {
		dst := newTestOp(Range{Start: 0, End: 0}, 1)
		err := dst.b.Restore(map[int][]byte{kg: blob[:n]})
		if isBound[n] {
			if err != nil {
				t.Fatalf("truncation to %d bytes (a record boundary): %v", n, err)
			}
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncation to %d of %d bytes: err = %v, want ErrCorrupt", n, len(blob), err)
		}
		if !strings.Contains(err.Error(), "key group 0") {
			t.Fatalf("error %q does not name the key group", err)
		}
	}
}

// Truncating a state's data inside a well-framed record is always an error:
// the entry count and the per-entry lengths no longer fit.
func TestRestoreTruncatedStateData(t *testing.T) {
	_, _, _, chunks := validBlob(t)
	for name, data := range chunks {
		for n := 0; n < len(data); n++ {
			dst := newTestOp(Range{Start: 0, End: 0}, 1)
			err := dst.b.Restore(map[int][]byte{0: frame(name, data[:n])})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("state %q data truncated to %d of %d bytes: err = %v, want ErrCorrupt", name, n, len(data), err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
				t.Fatalf("error %q does not name state %q", err, name)
			}
		}
		// Trailing bytes after the declared entries are corrupt too.
		dst := newTestOp(Range{Start: 0, End: 0}, 1)
		if err := dst.b.Restore(map[int][]byte{0: frame(name, append(append([]byte(nil), data...), 0))}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("state %q with a trailing byte: err = %v, want ErrCorrupt", name, err)
		}
	}
}

// Random byte flips may or may not be detected (the state layer has no
// checksum; checkpoint spans do), but must never panic.
func TestRestoreBitFlipsNeverPanic(t *testing.T) {
	rng := rand.New(rand.NewPCG(99, 1))
	_, blob, _, _ := validBlob(t)
	for n := 0; n < 3000; n++ {
		b := append([]byte(nil), blob...)
		for f := 0; f <= rng.IntN(3); f++ {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		dst := newTestOp(Range{Start: 0, End: 0}, 1)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("Restore panicked on % x: %v", b, r)
				}
			}()
			_ = dst.b.Restore(map[int][]byte{0: b})
		}()
	}
}

// An entry count that the data cannot hold is rejected without allocating
// for it.
func TestRestoreHugeCountDoesNotAllocate(t *testing.T) {
	for _, name := range []string{"count", "tags"} {
		data := binary.AppendUvarint(nil, 1<<40)
		if name == "tags" { // one key whose map claims 2^40 entries
			data = binary.AppendUvarint(nil, 1)
			data = append(data, 1, 'k')
			data = binary.AppendUvarint(data, 1<<27)
		}
		dst := newTestOp(Range{Start: 0, End: 0}, 1)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := dst.b.Restore(map[int][]byte{0: frame(name, data)})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("state %q with a huge count: err = %v, want ErrCorrupt", name, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
			t.Fatalf("state %q: restoring 20 corrupt bytes allocated %d MiB", name, d>>20)
		}
	}
}

// appendEncoded writes a chunk in place; every length around the uvarint
// boundaries reads back as the same bytes, after other data.
func TestAppendEncodedLengths(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 129, 16383, 16384, 16385, 1 << 21} {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(i*31 + 7)
		}
		dst := appendEncoded([]byte("prefix"), codec.Bytes(), v)
		dst = appendEncoded(dst, codec.String(), "next")
		chunk, rest, err := readChunk(dst[len("prefix"):])
		if err != nil || !bytes.Equal(chunk, v) {
			t.Fatalf("length %d: chunk of %d bytes, err %v", n, len(chunk), err)
		}
		if want := appendChunk(nil, v); !bytes.Equal(dst[len("prefix"):len(dst)-len(rest)], want) {
			t.Fatalf("length %d: encoding differs from appendChunk", n)
		}
		next, rest, err := readChunk(rest)
		if err != nil || string(next) != "next" || len(rest) != 0 {
			t.Fatalf("length %d: the chunk after it = %q, %d left, %v", n, next, len(rest), err)
		}
	}
}
