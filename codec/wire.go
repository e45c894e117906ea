package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
)

// ErrCorrupt is wrapped by every error a built-in or reflection codec returns
// from Decode, and by JSON decode errors: the input is truncated, malformed,
// non-canonical or has trailing bytes. Test for it with errors.Is.
var ErrCorrupt = errors.New("codec: corrupt encoding")

// maxDepth bounds how many pointers and slices a reflection codec follows
// into a value (the same limit encoding/json puts on nesting). Deeper or
// cyclic values make Append panic; deeper input makes Decode fail.
const maxDepth = 10000

// Details of a corrupt encoding. They are wrapped by corrupt, never returned
// bare from an exported function.
var (
	errShort      = errors.New("unexpected end of input")
	errTrailing   = errors.New("trailing bytes after value")
	errOverflow   = errors.New("varint overflows 64 bits")
	errNonMinimal = errors.New("non-minimal varint")
	errRange      = errors.New("value out of range for type")
	errBool       = errors.New("bool byte is not 0 or 1")
	errPresence   = errors.New("pointer presence byte is not 0 or 1")
	errNegZero    = errors.New("negative zero (encoded as +0)")
	errLength     = errors.New("length exceeds remaining input")
	errDepth      = errors.New("nesting too deep")
)

// corrupt wraps a detail error with ErrCorrupt and the name of what was
// being decoded.
func corrupt(what string, detail error) error {
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, detail)
}

func typeName[T any]() string { return reflect.TypeFor[T]().String() }

// readUvarint decodes a minimal unsigned LEB128 varint from the front of b
// and returns it with the number of bytes it used.
func readUvarint(b []byte) (uint64, int, error) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1, nil
	}
	x, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, errShort
	case n < 0:
		return 0, 0, errOverflow
	case b[n-1] == 0: // n > 1 here: a final zero group adds nothing
		return 0, 0, errNonMinimal
	}
	return x, n, nil
}

// readVarint decodes a zigzag varint as written by binary.AppendVarint.
func readVarint(b []byte) (int64, int, error) {
	ux, n, err := readUvarint(b)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n, err
}

// readLen decodes a length or element count prefix and returns it with the
// input that follows it.
func readLen(b []byte) (int, []byte, error) {
	ux, n, err := readUvarint(b)
	if err != nil {
		return 0, nil, err
	}
	if ux > math.MaxInt {
		return 0, nil, errLength
	}
	return int(ux), b[n:], nil
}

const (
	negZero64 = 1 << 63
	negZero32 = 1 << 31
)

// Floats are written as their IEEE 754 bits, little-endian, except that -0
// is written as +0: the two compare equal, so a canonical encoding must not
// tell them apart. NaN payloads are kept. Decoding rejects the bits of -0 so
// that every accepted input is exactly what Append would write.

func appendFloat64Bits(dst []byte, bits uint64) []byte {
	if bits == negZero64 {
		bits = 0
	}
	return binary.LittleEndian.AppendUint64(dst, bits)
}

func appendFloat32Bits(dst []byte, bits uint32) []byte {
	if bits == negZero32 {
		bits = 0
	}
	return binary.LittleEndian.AppendUint32(dst, bits)
}

func readFloat64Bits(b []byte) (uint64, error) {
	if len(b) < 8 {
		return 0, errShort
	}
	bits := binary.LittleEndian.Uint64(b)
	if bits == negZero64 {
		return 0, errNegZero
	}
	return bits, nil
}

func readFloat32Bits(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, errShort
	}
	bits := binary.LittleEndian.Uint32(b)
	if bits == negZero32 {
		return 0, errNegZero
	}
	return bits, nil
}
