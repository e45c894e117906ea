// Package codec turns records, keys and state values into bytes and back.
//
// A Codec appends the encoding of one value to a buffer and decodes one value
// from a slice that holds exactly that encoding (the runtime frames records
// itself). Encodings of keys must be canonical: equal keys encode to equal
// bytes, because key groups are computed from the encoded key.
//
// The package owns the Codec interface and the codecs the runtime picks for
// user types:
//
//   - built-in codecs for strings, byte slices, bools, integers and floats
//     (String, Bytes, Int64, Float64, ...), allocation-free on Append;
//   - For, which returns the built-in codec for T, or a reflection codec
//     compiled once per struct (or slice, array, pointer) type, or JSON for
//     types the reflection codec does not cover, such as maps;
//   - JSON, a codec over encoding/json.
//
// Encodings do not depend on the platform: int and uint encode as int64 and
// uint64 do. The built-in and reflection encodings are canonical: equal
// values encode to equal bytes (-0.0 is written as +0.0), and Decode accepts
// only what Append writes, so re-encoding a decoded value gives back its
// input (for types without MarshalBinary methods). Decode never panics on
// bad input; its errors wrap ErrCorrupt.
package codec

// Codec encodes and decodes values of type T.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended slice.
	Append(dst []byte, v T) []byte
	// Decode decodes a value from src, which holds exactly one encoding.
	// It must not retain src: the runtime reuses network buffers.
	Decode(src []byte) (T, error)
}
