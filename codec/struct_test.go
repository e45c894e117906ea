package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/codec"
)

type inner struct {
	Name  string
	Tags  []string
	Score float64
}

type Embedded struct{ E1 int16 }

type embedded struct{ E2 string }

// record has a field of every kind the reflection codec handles.
type record struct {
	ID       int64
	Word     Word
	Count    uint32
	Ok       bool
	Small    int8
	Big      uint64
	Plain    int
	Ratio    float32
	Data     []byte
	Blob     Blob
	Key      [4]byte
	Grid     [2][2]int16
	Inner    inner
	Ptr      *inner
	NilPtr   *inner
	IntPtr   *int
	Items    []inner
	PtrItems []*inner
	Words    []Word
	Matrix   [][]float64
	C        complex128
	C64      complex64
	U        uintptr
	Empty    struct{}
	Nothing  []struct{}
	Embedded
	embedded
	hidden int // unexported: not encoded
	_      int
}

func sampleRecord() record {
	seven := 7
	return record{
		ID: -42, Word: "wörd", Count: 1 << 20, Ok: true, Small: -128, Big: math.MaxUint64, Plain: math.MinInt,
		Ratio: 0.25, Data: []byte{0, 1, 2}, Blob: Blob("blob"), Key: [4]byte{9, 8, 7, 6},
		Grid:  [2][2]int16{{1, -1}, {math.MaxInt16, math.MinInt16}},
		Inner: inner{Name: "in", Tags: []string{"a", ""}, Score: 1.5},
		Ptr:   &inner{Name: "ptr"}, IntPtr: &seven,
		Items:    []inner{{Name: "x"}, {Tags: []string{"y"}}},
		PtrItems: []*inner{{Name: "p"}, nil},
		Words:    []Word{"w1", "w2"},
		Matrix:   [][]float64{{1, 2}, nil, {math.Inf(-1)}},
		C:        complex(1, -2), C64: complex(3, 4), U: 0xdeadbeef,
		Nothing:  make([]struct{}, 3),
		Embedded: Embedded{E1: -3}, embedded: embedded{E2: "promoted"},
	}
}

// node is recursive through a pointer and a slice.
type node struct {
	Val  int
	Next *node
	Kids []node
}

func sampleNode() *node {
	return &node{Val: 1, Next: &node{Val: 2, Kids: []node{{Val: 3}, {Val: 4, Next: &node{Val: 5}}}}}
}

// withMap cannot use the reflection codec, so For falls back to JSON.
type withMap struct {
	Name   string
	Counts map[string]int
}

func sampleWithMap() withMap {
	return withMap{Name: "m", Counts: map[string]int{"b": 2, "a": 1, "c": 3}}
}

func TestStructRoundTrip(t *testing.T) {
	want := sampleRecord()
	want.hidden = 99
	c := codec.For[record]()
	got, err := c.Decode(c.Append(nil, want))
	if err != nil {
		t.Fatal(err)
	}
	if got.hidden != 0 {
		t.Errorf("unexported field decoded as %d, want 0", got.hidden)
	}
	want.hidden = 0
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}

	roundTrip(t, codec.For[*node](), deepEq[*node], nil, &node{}, sampleNode())
	roundTrip(t, codec.For[[]string](), deepEq[[]string], nil, []string{""}, []string{"a", "b"})
	roundTrip(t, codec.For[*int](), deepEq[*int], nil, new(int))
	roundTrip(t, codec.For[[16]byte](), eq, [16]byte{}, [16]byte{1, 15: 0xff})
	roundTrip(t, codec.For[struct{}](), eq, struct{}{})
}

func TestStructEncoding(t *testing.T) {
	type wordCount struct {
		Word  string
		Count int64
	}
	got := codec.For[wordCount]().Append(nil, wordCount{"hi", 3})
	if want := "\x02hi\x06"; string(got) != want {
		t.Errorf("encoding = %x, want %x", got, want)
	}
	type opt struct {
		P *int32
		S []uint16
		A [2]bool
	}
	five := int32(5)
	got = codec.For[opt]().Append(nil, opt{P: &five, S: []uint16{300}, A: [2]bool{true, false}})
	if want := "\x01\x0a\x01\xac\x02\x01\x00"; string(got) != want {
		t.Errorf("encoding = %x, want %x", got, want)
	}
}

func TestStructNilAndEmptySlices(t *testing.T) {
	c := codec.For[inner]()
	a, b := c.Append(nil, inner{Tags: nil}), c.Append(nil, inner{Tags: []string{}})
	if !bytes.Equal(a, b) {
		t.Errorf("nil slice encodes as %x, empty as %x", a, b)
	}
	got, err := c.Decode(b)
	if err != nil || got.Tags != nil {
		t.Errorf("Decode = %#v, %v; want nil Tags", got, err)
	}
}

func TestMarshalerField(t *testing.T) {
	type event struct {
		At   time.Time
		When *time.Time
	}
	at := time.Date(2024, 2, 29, 12, 30, 0, 123456789, time.FixedZone("X", 3600))
	c := codec.For[event]()
	if k := codec.Kind(c); k != "reflect" {
		t.Fatalf("For[event] is %s", k)
	}
	got, err := c.Decode(c.Append(nil, event{At: at, When: &at}))
	if err != nil {
		t.Fatal(err)
	}
	if !got.At.Equal(at) || got.When == nil || !got.When.Equal(at) {
		t.Errorf("got %v, %v; want %v", got.At, got.When, at)
	}
	if _, err := c.Decode([]byte{1, 0xff, 0}); !errors.Is(err, codec.ErrCorrupt) {
		t.Errorf("bad time: %v, want ErrCorrupt", err)
	}
}

func TestJSONFallback(t *testing.T) {
	c := codec.For[withMap]()
	want := sampleWithMap()
	enc := c.Append(nil, want)
	if string(enc) != `{"Name":"m","Counts":{"a":1,"b":2,"c":3}}` {
		t.Errorf("encoding = %s", enc)
	}
	got, err := c.Decode(enc)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Decode = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "{", `{"Name":1}`, `{} x`} {
		if _, err := c.Decode([]byte(bad)); !errors.Is(err, codec.ErrCorrupt) {
			t.Errorf("Decode(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "codec: JSON encode") {
				t.Errorf("Append of NaN: recovered %v, want a codec panic", r)
			}
		}()
		codec.JSON[float64]().Append(nil, math.NaN())
	}()
}

// TestCanonical checks that equal values built differently encode alike.
func TestCanonical(t *testing.T) {
	m1 := withMap{Counts: map[string]int{}}
	m2 := withMap{Counts: map[string]int{}}
	for i := range 50 {
		m1.Counts[fmt.Sprint(i)] = i
		m2.Counts[fmt.Sprint(49-i)] = 49 - i
	}
	jc := codec.For[withMap]()
	if a, b := jc.Append(nil, m1), jc.Append(nil, m2); !bytes.Equal(a, b) {
		t.Errorf("equal maps encode differently:\n%s\n%s", a, b)
	}

	r1, r2 := sampleRecord(), sampleRecord()
	r1.hidden, r2.hidden = 1, 2 // not encoded
	r2.Inner.Tags = append(make([]string, 0, 10), r1.Inner.Tags...)
	r2.Word = Word(strings.Repeat("wörd", 2)[:len("wörd")])
	r1.Inner.Score, r2.Inner.Score = 0, math.Copysign(0, -1)
	rc := codec.For[record]()
	if a, b := rc.Append(nil, r1), rc.Append(nil, r2); !bytes.Equal(a, b) {
		t.Errorf("equal records encode differently:\n%x\n%x", a, b)
	}
	if a, b := codec.Float64().Append(nil, 0), codec.Float64().Append(nil, math.Copysign(0, -1)); !bytes.Equal(a, b) {
		t.Errorf("+0 encodes as %x, -0 as %x", a, b)
	}
}

func TestStructDecodeErrors(t *testing.T) {
	c := codec.For[record]()
	enc := c.Append(nil, sampleRecord())
	_, err := c.Decode(append(enc, 0))
	if !errors.Is(err, codec.ErrCorrupt) || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("trailing byte: %v", err)
	}

	// The error names where in the value decoding failed.
	type outer struct {
		Items []inner
	}
	oc := codec.For[outer]()
	enc = oc.Append(nil, outer{Items: []inner{{Name: strings.Repeat("a", 30)}, {Name: "bbbbbbbbbbbb"}}})
	_, err = oc.Decode(enc[:len(enc)-7-1-8]) // cut Items[1].Name after 5 of its 12 bytes
	if !errors.Is(err, codec.ErrCorrupt) || !strings.Contains(err.Error(), "codec_test.outer.Items[1].Name: ") {
		t.Errorf("truncated: %v, want the path .Items[1].Name", err)
	}

	bad := map[string][]byte{
		"presence byte 2":      {2},
		"huge slice count":     {1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"slice count > MaxInt": {1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	nc := codec.For[*node]()
	for name, src := range bad {
		if _, err := nc.Decode(src); !errors.Is(err, codec.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestDepthLimit checks that cyclic values panic on Append instead of
// overflowing the stack, and that over-deep input fails to decode.
func TestDepthLimit(t *testing.T) {
	c := codec.For[*node]()
	cyclic := &node{Val: 1}
	cyclic.Next = cyclic
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "cyclic") {
				t.Errorf("Append of a cycle: recovered %v, want a depth panic", r)
			}
		}()
		c.Append(nil, cyclic)
	}()

	// A list of exactly the limit's length is fine.
	var list *node
	for range codec.MaxDepth {
		list = &node{Next: list}
	}
	enc := c.Append(nil, list)
	if _, err := c.Decode(enc); err != nil {
		t.Fatalf("list at the depth limit: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Errorf("Append of a list over the depth limit did not panic")
			}
		}()
		c.Append(nil, &node{Next: list})
	}()
	// One more level, crafted by hand since Append refuses it.
	deeper := append([]byte{1, 0}, enc...)
	deeper = append(deeper, 0) // its Kids
	if _, err := c.Decode(deeper); !errors.Is(err, codec.ErrCorrupt) {
		t.Errorf("list over the depth limit: %v, want ErrCorrupt", err)
	}
}

func TestZeroSizeElements(t *testing.T) {
	// A count of zero-size elements needs no input and no memory per
	// element, and neither direction loops over them.
	c := codec.For[[]struct{}]()
	enc := codec.Uint64().Append(nil, 1<<30)
	got, err := c.Decode(enc)
	if err != nil || len(got) != 1<<30 {
		t.Fatalf("Decode = len %d, %v", len(got), err)
	}
	if re := c.Append(nil, got); !bytes.Equal(re, enc) {
		t.Errorf("re-encoding = %x, want %x", re, enc)
	}
	type huge struct {
		A [1 << 30]struct{}
		B int8
	}
	hc := codec.For[huge]()
	if enc := hc.Append(nil, huge{B: -1}); string(enc) != "\x01" {
		t.Errorf("encoding = %x, want 01", enc)
	}
}

func TestConcurrentUse(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			c := codec.For[record]()
			r := sampleRecord()
			r.ID = int64(g)
			for range 100 {
				got, err := c.Decode(c.Append(nil, r))
				if err != nil || got.ID != r.ID {
					t.Errorf("goroutine %d: %v, %v", g, got.ID, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func randString(r *rand.Rand) string {
	const alphabet = "ab\x00\xffé世🌍"
	b := make([]byte, r.IntN(12))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func randInner(r *rand.Rand) inner {
	in := inner{Name: randString(r), Score: r.NormFloat64() * 1e6}
	for range r.IntN(3) {
		in.Tags = append(in.Tags, randString(r))
	}
	return in
}

func randRecord(r *rand.Rand) record {
	v := record{
		ID: int64(r.Uint64()), Word: Word(randString(r)), Count: r.Uint32(), Ok: r.IntN(2) == 1,
		Small: int8(r.Uint32()), Big: r.Uint64() >> r.IntN(64), Plain: int(r.Uint64()), Ratio: float32(r.NormFloat64()),
		U: uintptr(r.Uint64()), C: complex(r.Float64(), -r.Float64()), Inner: randInner(r),
	}
	if n := r.IntN(5); n > 0 {
		v.Data = make([]byte, n)
		for i := range v.Data {
			v.Data[i] = byte(r.Uint32())
		}
	}
	if r.IntN(2) == 1 {
		p := randInner(r)
		v.Ptr = &p
	}
	for range r.IntN(4) {
		v.Items = append(v.Items, randInner(r))
		if r.IntN(3) == 0 {
			v.PtrItems = append(v.PtrItems, nil)
		} else {
			p := randInner(r)
			v.PtrItems = append(v.PtrItems, &p)
		}
	}
	return v
}

// TestProperty checks Decode(Append(x)) == x for random values.
func TestProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rc := codec.For[record]()
	for range 2000 {
		v := randRecord(r)
		got, err := rc.Decode(rc.Append(nil, v))
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Fatalf("record round trip: %v\n got %+v\nwant %+v", err, got, v)
		}
	}
	for range 2000 {
		i, u, bits := int64(r.Uint64())>>r.IntN(64), r.Uint64()>>r.IntN(64), r.Uint64()
		if got, err := codec.Int64().Decode(codec.Int64().Append(nil, i)); err != nil || got != i {
			t.Fatalf("Int64 %d: got %d, %v", i, got, err)
		}
		if got, err := codec.Uint64().Decode(codec.Uint64().Append(nil, u)); err != nil || got != u {
			t.Fatalf("Uint64 %d: got %d, %v", u, got, err)
		}
		f := math.Float64frombits(bits)
		if got, err := codec.Float64().Decode(codec.Float64().Append(nil, f)); err != nil || !sameFloat64(got, f) {
			t.Fatalf("Float64 %x: got %x, %v", bits, math.Float64bits(got), err)
		}
		s := randString(r)
		if got, err := codec.String().Decode(codec.String().Append(nil, s)); err != nil || got != s {
			t.Fatalf("String %q: got %q, %v", s, got, err)
		}
	}
}

// FuzzStructDecode decodes arbitrary bytes: Decode must not panic, its
// errors must wrap ErrCorrupt, and whatever it accepts must re-encode to
// exactly the input (the codec is canonical).
func FuzzStructDecode(f *testing.F) {
	c := codec.For[record]()
	r := rand.New(rand.NewPCG(3, 4))
	f.Add(c.Append(nil, sampleRecord()))
	f.Add(c.Append(nil, record{}))
	for range 8 {
		f.Add(c.Append(nil, randRecord(r)))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	nc := codec.For[*node]()
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := c.Decode(data)
		if err != nil {
			if !errors.Is(err, codec.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
		} else if re := c.Append(nil, v); !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, re)
		}
		n, err := nc.Decode(data)
		if err != nil {
			if !errors.Is(err, codec.ErrCorrupt) {
				t.Fatalf("node: error does not wrap ErrCorrupt: %v", err)
			}
		} else if re := nc.Append(nil, n); !bytes.Equal(re, data) {
			t.Fatalf("node: re-encoding differs:\n in %x\nout %x", data, re)
		}
	})
}

func deepEq[T any](a, b T) bool { return reflect.DeepEqual(a, b) }
