// Package codec turns records, keys and state values into bytes and back.
//
// A Codec appends the encoding of one value to a buffer and decodes one value
// from a slice that holds exactly that encoding (the runtime frames records
// itself). Encodings of keys must be canonical: equal keys encode to equal
// bytes, because key groups are computed from the encoded key.
package codec

// Codec encodes and decodes values of type T.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended slice.
	Append(dst []byte, v T) []byte
	// Decode decodes a value from src, which holds exactly one encoding.
	// It must not retain src: the runtime reuses network buffers.
	Decode(src []byte) (T, error)
}
