package codec_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ebbflow/ebbflow/codec"
)

// roundTrip checks that every value survives Append then Decode, that Append
// keeps what dst already held, and that Decode does not keep src.
func roundTrip[T any](t *testing.T, c codec.Codec[T], same func(a, b T) bool, vals ...T) {
	t.Helper()
	for _, v := range vals {
		enc := c.Append(nil, v)
		got, err := c.Decode(enc)
		if err != nil {
			t.Errorf("Decode(Append(%#v)) = %v", v, err)
			continue
		}
		if !same(got, v) {
			t.Errorf("Decode(Append(%#v)) = %#v", v, got)
		}
		// Appending after existing bytes writes the same encoding.
		withPrefix := c.Append([]byte("prefix"), v)
		if !bytes.HasPrefix(withPrefix, []byte("prefix")) || !bytes.Equal(withPrefix[6:], enc) {
			t.Errorf("Append(prefix, %#v) = %x, want prefix then %x", v, withPrefix, enc)
		}
		// The decoded value must not alias the input.
		for i := range enc {
			enc[i] ^= 0xff
		}
		if !same(got, v) {
			t.Errorf("decoded %#v changed when its input was overwritten", v)
		}
	}
}

func eq[T comparable](a, b T) bool { return a == b }

func sameFloat64(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || a == b // a == b: -0 decodes as +0
}

func sameFloat32(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || a == b
}

var (
	nanPayload64  = math.Float64frombits(0x7ff8_0000_dead_beef)
	signalingNaN  = math.Float64frombits(0x7ff0_0000_0000_0001)
	negativeNaN32 = math.Float32frombits(0xffc0_0001)
)

func TestBuiltinRoundTrip(t *testing.T) {
	roundTrip(t, codec.String(), eq, "", "a", "héllo, 世界 🌍", "\xff\xfe not utf-8", "\x00", strings.Repeat("long ", 1000))
	roundTrip(t, codec.Bytes(), bytes.Equal, nil, []byte{0}, []byte{0xff, 0, 0x80}, bytes.Repeat([]byte{7}, 4096))
	roundTrip(t, codec.Bool(), eq, false, true)
	roundTrip(t, codec.Int(), eq, 0, 1, -1, math.MaxInt, math.MinInt)
	roundTrip(t, codec.Int8(), eq, 0, 1, -1, 63, 64, -64, -65, math.MaxInt8, math.MinInt8)
	roundTrip(t, codec.Int16(), eq, 0, -1, math.MaxInt16, math.MinInt16)
	roundTrip(t, codec.Int32(), eq, 0, -1, math.MaxInt32, math.MinInt32)
	roundTrip(t, codec.Int64(), eq, 0, 1, -1, 63, 64, -64, -65, 1<<40, -1<<40, math.MaxInt64, math.MinInt64)
	roundTrip(t, codec.Uint(), eq, 0, 1, math.MaxUint)
	roundTrip(t, codec.Uint8(), eq, 0, 1, 127, 128, math.MaxUint8)
	roundTrip(t, codec.Uint16(), eq, 0, 300, math.MaxUint16)
	roundTrip(t, codec.Uint32(), eq, 0, 1<<21, math.MaxUint32)
	roundTrip(t, codec.Uint64(), eq, 0, 127, 128, 1<<63, math.MaxUint64)
	roundTrip(t, codec.Float32(), sameFloat32, 0, float32(math.Copysign(0, -1)), 1.5, -2.25, math.MaxFloat32,
		math.SmallestNonzeroFloat32, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), negativeNaN32)
	roundTrip(t, codec.Float64(), sameFloat64, 0, math.Copysign(0, -1), 1.5, -2.25, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN(), nanPayload64, signalingNaN)
}

// TestBuiltinEncodings pins the wire format: key groups are computed from
// these bytes, so a change would move keys and break checkpoints.
func TestBuiltinEncodings(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"String", codec.String().Append(nil, "hé"), "h\xc3\xa9"},
		{"Bytes", codec.Bytes().Append(nil, []byte{1, 2}), "\x01\x02"},
		{"Bool(false)", codec.Bool().Append(nil, false), "\x00"},
		{"Bool(true)", codec.Bool().Append(nil, true), "\x01"},
		{"Int64(0)", codec.Int64().Append(nil, 0), "\x00"},
		{"Int64(-1)", codec.Int64().Append(nil, -1), "\x01"},
		{"Int64(1)", codec.Int64().Append(nil, 1), "\x02"},
		{"Int64(-65)", codec.Int64().Append(nil, -65), "\x81\x01"},
		{"Int(1)", codec.Int().Append(nil, 1), "\x02"},
		{"Int8(-128)", codec.Int8().Append(nil, -128), "\xff\x01"},
		{"Uint64(300)", codec.Uint64().Append(nil, 300), "\xac\x02"},
		{"Uint8(255)", codec.Uint8().Append(nil, 255), "\xff\x01"},
		{"Float64(1)", codec.Float64().Append(nil, 1), "\x00\x00\x00\x00\x00\x00\xf0\x3f"},
		{"Float64(-0)", codec.Float64().Append(nil, math.Copysign(0, -1)), "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"Float32(1)", codec.Float32().Append(nil, 1), "\x00\x00\x80\x3f"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s = %x, want %x", tt.name, tt.got, tt.want)
		}
	}
}

func TestBuiltinAppendDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 64)
	s, c := "hello, world", codec.String()
	if n := testing.AllocsPerRun(100, func() { dst = c.Append(dst[:0], s) }); n != 0 {
		t.Errorf("String().Append allocates %v times", n)
	}
	i := codec.Int64()
	if n := testing.AllocsPerRun(100, func() { dst = i.Append(dst[:0], -12345) }); n != 0 {
		t.Errorf("Int64().Append allocates %v times", n)
	}
}

// decodeErr returns the error of decoding src with c.
func decodeErr[T any](c codec.Codec[T]) func([]byte) error {
	return func(src []byte) error { _, err := c.Decode(src); return err }
}

func TestBuiltinDecodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		decode func([]byte) error
		src    string
	}{
		{"bool empty", decodeErr(codec.Bool()), ""},
		{"bool 2", decodeErr(codec.Bool()), "\x02"},
		{"bool trailing", decodeErr(codec.Bool()), "\x01\x00"},
		{"int64 empty", decodeErr(codec.Int64()), ""},
		{"int64 truncated", decodeErr(codec.Int64()), "\x80"},
		{"int64 non-minimal", decodeErr(codec.Int64()), "\x82\x00"},
		{"int64 overflow", decodeErr(codec.Int64()), "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"},
		{"int64 too long", decodeErr(codec.Int64()), "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"},
		{"int64 trailing", decodeErr(codec.Int64()), "\x02\x00"},
		{"int8 too big", decodeErr(codec.Int8()), "\x80\x02"},   // 128
		{"int8 too small", decodeErr(codec.Int8()), "\x81\x02"}, // -129
		{"int16 too big", decodeErr(codec.Int16()), "\x80\x80\x04"},
		{"int32 too big", decodeErr(codec.Int32()), "\x80\x80\x80\x80\x10"},
		{"uint64 empty", decodeErr(codec.Uint64()), ""},
		{"uint64 non-minimal", decodeErr(codec.Uint64()), "\x80\x80\x00"},
		{"uint64 trailing", decodeErr(codec.Uint64()), "\x01\x01"},
		{"uint8 256", decodeErr(codec.Uint8()), "\x80\x02"},
		{"uint16 65536", decodeErr(codec.Uint16()), "\x80\x80\x04"},
		{"uint32 too big", decodeErr(codec.Uint32()), "\x80\x80\x80\x80\x10"},
		{"float64 short", decodeErr(codec.Float64()), "\x00\x00\x00\x00\x00\x00\x00"},
		{"float64 trailing", decodeErr(codec.Float64()), "\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"float64 -0", decodeErr(codec.Float64()), "\x00\x00\x00\x00\x00\x00\x00\x80"},
		{"float32 short", decodeErr(codec.Float32()), "\x00\x00\x00"},
		{"float32 trailing", decodeErr(codec.Float32()), "\x00\x00\x00\x00\x00"},
		{"float32 -0", decodeErr(codec.Float32()), "\x00\x00\x00\x80"},
	}
	for _, tt := range tests {
		err := tt.decode([]byte(tt.src))
		if !errors.Is(err, codec.ErrCorrupt) {
			t.Errorf("%s: Decode(%x) = %v, want ErrCorrupt", tt.name, tt.src, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "codec: corrupt encoding: ") {
			t.Errorf("%s: error %q lacks the codec prefix", tt.name, err)
		}
	}
}

// prefixCase is a valid encoding and the decoder it is for.
type prefixCase struct {
	name   string
	enc    []byte
	decode func([]byte) error
	// prefixFree: no strict prefix of a valid encoding is valid, so every
	// one must fail. Raw strings and JSON are not prefix-free.
	prefixFree bool
}

func prefixCaseOf[T any](name string, c codec.Codec[T], v T, prefixFree bool) prefixCase {
	return prefixCase{name, c.Append(nil, v), decodeErr(c), prefixFree}
}

// TestTruncatedInput decodes every prefix of a valid encoding: none may
// panic, and for prefix-free encodings all must fail with ErrCorrupt.
func TestTruncatedInput(t *testing.T) {
	cases := []prefixCase{
		prefixCaseOf("String", codec.String(), "héllo", false),
		prefixCaseOf("Bytes", codec.Bytes(), []byte{1, 2, 3}, false),
		prefixCaseOf("Bool", codec.Bool(), true, true),
		prefixCaseOf("Int", codec.Int(), math.MinInt, true),
		prefixCaseOf("Int8", codec.Int8(), math.MinInt8, true),
		prefixCaseOf("Int16", codec.Int16(), math.MinInt16, true),
		prefixCaseOf("Int32", codec.Int32(), math.MinInt32, true),
		prefixCaseOf("Int64", codec.Int64(), math.MinInt64, true),
		prefixCaseOf("Uint", codec.Uint(), math.MaxUint, true),
		prefixCaseOf("Uint8", codec.Uint8(), math.MaxUint8, true),
		prefixCaseOf("Uint16", codec.Uint16(), math.MaxUint16, true),
		prefixCaseOf("Uint32", codec.Uint32(), math.MaxUint32, true),
		prefixCaseOf("Uint64", codec.Uint64(), math.MaxUint64, true),
		prefixCaseOf("Float32", codec.Float32(), 1.5, true),
		prefixCaseOf("Float64", codec.Float64(), 1.5, true),
		prefixCaseOf("Word", codec.For[Word](), "word", false),
		prefixCaseOf("record", codec.For[record](), sampleRecord(), true),
		prefixCaseOf("node", codec.For[*node](), sampleNode(), true),
		prefixCaseOf("[]string", codec.For[[]string](), []string{"a", "", "bc"}, true),
		prefixCaseOf("withMap", codec.For[withMap](), sampleWithMap(), false),
	}
	for _, tc := range cases {
		for i := range len(tc.enc) {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s: Decode(%x) panicked: %v", tc.name, tc.enc[:i], r)
					}
				}()
				err := tc.decode(tc.enc[:i])
				if err != nil && !errors.Is(err, codec.ErrCorrupt) {
					t.Errorf("%s: Decode(%x) = %v, does not wrap ErrCorrupt", tc.name, tc.enc[:i], err)
				}
				if err == nil && tc.prefixFree {
					t.Errorf("%s: Decode of %d-byte prefix of %d-byte encoding succeeded", tc.name, i, len(tc.enc))
				}
			}()
		}
		if err := tc.decode(tc.enc); err != nil {
			t.Errorf("%s: Decode of the whole encoding = %v", tc.name, err)
		}
	}
}

// Named types with basic underlying types.
type (
	Word    string
	Count   int64
	Small   uint8
	Flag    bool
	Ratio   float32
	Blob    []byte
	MyByte  byte
	MyBytes []MyByte
)

func TestForBuiltin(t *testing.T) {
	check := func(name, kind, want string) {
		t.Helper()
		if kind != want {
			t.Errorf("For[%s] is %s, want %s", name, kind, want)
		}
	}
	check("string", codec.Kind(codec.For[string]()), "builtin")
	check("[]byte", codec.Kind(codec.For[[]byte]()), "builtin")
	check("int", codec.Kind(codec.For[int]()), "builtin")
	check("uint16", codec.Kind(codec.For[uint16]()), "builtin")
	check("float64", codec.Kind(codec.For[float64]()), "builtin")
	check("Word", codec.Kind(codec.For[Word]()), "cast")
	check("Blob", codec.Kind(codec.For[Blob]()), "cast")
	check("MyBytes", codec.Kind(codec.For[MyBytes]()), "cast")
	check("record", codec.Kind(codec.For[record]()), "reflect")
	check("*int", codec.Kind(codec.For[*int]()), "reflect")
	check("[]string", codec.Kind(codec.For[[]string]()), "reflect")
	check("[16]byte", codec.Kind(codec.For[[16]byte]()), "reflect")
	check("withMap", codec.Kind(codec.For[withMap]()), "json")
	check("map[string]int", codec.Kind(codec.For[map[string]int]()), "json")
	check("any", codec.Kind(codec.For[any]()), "json")
	check("[]struct{x int}", codec.Kind(codec.For[[]struct{ x int }]()), "json")

	// For[T] of a built-in type encodes exactly as the built-in codec.
	if got, want := codec.For[int64]().Append(nil, -300), codec.Int64().Append(nil, -300); !bytes.Equal(got, want) {
		t.Errorf("For[int64] = %x, Int64 = %x", got, want)
	}
}

func TestNamedBasicTypes(t *testing.T) {
	roundTrip(t, codec.For[Word](), eq, "", "word", "日本語")
	roundTrip(t, codec.For[Count](), eq, 0, math.MinInt64, math.MaxInt64)
	roundTrip(t, codec.For[Small](), eq, 0, 255)
	roundTrip(t, codec.For[Flag](), eq, false, true)
	roundTrip(t, codec.For[Ratio](), eq, 0, 0.5)
	roundTrip(t, codec.For[Blob](), func(a, b Blob) bool { return bytes.Equal(a, b) }, nil, Blob("blob"))
	roundTrip(t, codec.For[MyBytes](), func(a, b MyBytes) bool { return string(a) == string(b) }, nil, MyBytes{1, 2, 255})

	// A named type encodes exactly as its underlying type.
	if got, want := codec.For[Word]().Append(nil, "w"), codec.String().Append(nil, "w"); !bytes.Equal(got, want) {
		t.Errorf("For[Word] = %x, String = %x", got, want)
	}
	if got, want := codec.For[Count]().Append(nil, -7), codec.Int64().Append(nil, -7); !bytes.Equal(got, want) {
		t.Errorf("For[Count] = %x, Int64 = %x", got, want)
	}
	if _, err := codec.For[Small]().Decode([]byte{0x80, 0x02}); !errors.Is(err, codec.ErrCorrupt) {
		t.Errorf("For[Small].Decode(256) = %v, want ErrCorrupt", err)
	}
}
