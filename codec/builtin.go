package codec

import (
	"encoding/binary"
	"math"
)

// The built-in codecs below are stateless zero-size values. Each encodes one
// value as the whole of its slice, so none writes a length: strings and byte
// slices are their raw bytes, integers are varints, floats are fixed-width.

// String returns the codec that encodes a string as its raw bytes. Decode
// copies the bytes into a new string; every input is valid.
func String() Codec[string] { return stringCodec{} }

// Bytes returns the codec that encodes a byte slice as its raw bytes. Decode
// copies; an empty input decodes to nil, so nil and empty slices encode and
// decode alike.
func Bytes() Codec[[]byte] { return bytesCodec{} }

// Bool returns the codec that encodes false as 0x00 and true as 0x01.
func Bool() Codec[bool] { return boolCodec{} }

// Int returns the zigzag-varint codec for int. The encoding is the same as
// Int64's on every platform; Decode fails if the value does not fit in int.
func Int() Codec[int] { return signedCodec[int]{} }

// Int8 returns the zigzag-varint codec for int8.
func Int8() Codec[int8] { return signedCodec[int8]{} }

// Int16 returns the zigzag-varint codec for int16.
func Int16() Codec[int16] { return signedCodec[int16]{} }

// Int32 returns the zigzag-varint codec for int32.
func Int32() Codec[int32] { return signedCodec[int32]{} }

// Int64 returns the zigzag-varint codec for int64 (binary.AppendVarint's
// format): small magnitudes of either sign take few bytes.
func Int64() Codec[int64] { return signedCodec[int64]{} }

// Uint returns the uvarint codec for uint. The encoding is the same as
// Uint64's on every platform; Decode fails if the value does not fit in uint.
func Uint() Codec[uint] { return unsignedCodec[uint]{} }

// Uint8 returns the uvarint codec for uint8 (values of 128 and up take two
// bytes).
func Uint8() Codec[uint8] { return unsignedCodec[uint8]{} }

// Uint16 returns the uvarint codec for uint16.
func Uint16() Codec[uint16] { return unsignedCodec[uint16]{} }

// Uint32 returns the uvarint codec for uint32.
func Uint32() Codec[uint32] { return unsignedCodec[uint32]{} }

// Uint64 returns the uvarint codec for uint64 (binary.AppendUvarint's
// format).
func Uint64() Codec[uint64] { return unsignedCodec[uint64]{} }

// Float32 returns the codec that encodes a float32 as its 4 IEEE 754 bytes,
// little-endian. -0 is encoded as +0 (they compare equal); NaN payloads are
// kept.
func Float32() Codec[float32] { return float32Codec{} }

// Float64 returns the codec that encodes a float64 as its 8 IEEE 754 bytes,
// little-endian. -0 is encoded as +0 (they compare equal); NaN payloads are
// kept.
func Float64() Codec[float64] { return float64Codec{} }

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(src []byte) (string, error)  { return string(src), nil }

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(src []byte) ([]byte, error)  { return append([]byte(nil), src...), nil }

type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func (boolCodec) Decode(src []byte) (bool, error) {
	switch {
	case len(src) == 0:
		return false, corrupt("bool", errShort)
	case len(src) > 1:
		return false, corrupt("bool", errTrailing)
	case src[0] > 1:
		return false, corrupt("bool", errBool)
	}
	return src[0] == 1, nil
}

type signedCodec[T int | int8 | int16 | int32 | int64] struct{}

func (signedCodec[T]) Append(dst []byte, v T) []byte {
	return binary.AppendVarint(dst, int64(v))
}

func (signedCodec[T]) Decode(src []byte) (T, error) {
	x, n, err := readVarint(src)
	if err == nil && n != len(src) {
		err = errTrailing
	}
	if err == nil && int64(T(x)) != x {
		err = errRange
	}
	if err != nil {
		return 0, corrupt(typeName[T](), err)
	}
	return T(x), nil
}

type unsignedCodec[T uint | uint8 | uint16 | uint32 | uint64] struct{}

func (unsignedCodec[T]) Append(dst []byte, v T) []byte {
	return binary.AppendUvarint(dst, uint64(v))
}

func (unsignedCodec[T]) Decode(src []byte) (T, error) {
	x, n, err := readUvarint(src)
	if err == nil && n != len(src) {
		err = errTrailing
	}
	if err == nil && uint64(T(x)) != x {
		err = errRange
	}
	if err != nil {
		return 0, corrupt(typeName[T](), err)
	}
	return T(x), nil
}

type float32Codec struct{}

func (float32Codec) Append(dst []byte, v float32) []byte {
	return appendFloat32Bits(dst, math.Float32bits(v))
}

func (float32Codec) Decode(src []byte) (float32, error) {
	bits, err := readFloat32Bits(src)
	if err == nil && len(src) != 4 {
		err = errTrailing
	}
	if err != nil {
		return 0, corrupt("float32", err)
	}
	return math.Float32frombits(bits), nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return appendFloat64Bits(dst, math.Float64bits(v))
}

func (float64Codec) Decode(src []byte) (float64, error) {
	bits, err := readFloat64Bits(src)
	if err == nil && len(src) != 8 {
		err = errTrailing
	}
	if err != nil {
		return 0, corrupt("float64", err)
	}
	return math.Float64frombits(bits), nil
}
