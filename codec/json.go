package codec

import (
	"encoding/json"
	"fmt"
)

// JSON returns a codec that encodes values with encoding/json. It is what For
// falls back to for types the reflection codec does not handle (maps,
// interfaces, ...), and it follows encoding/json's rules: json struct tags and
// Marshaler methods apply, map keys are sorted (so equal maps encode alike),
// invalid UTF-8 in strings is replaced, and interface-typed values decode as
// the generic JSON types.
//
// Append panics if encoding/json cannot encode v (a channel, a function, a
// NaN or infinite float, a cycle), since Codec.Append has no error result.
// Decode errors wrap ErrCorrupt and the encoding/json error.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Append(dst []byte, v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("codec: JSON encode %s: %v", typeName[T](), err))
	}
	return append(dst, b...)
}

func (jsonCodec[T]) Decode(src []byte) (T, error) {
	var v T
	if err := json.Unmarshal(src, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: JSON %s: %w", ErrCorrupt, typeName[T](), err)
	}
	return v, nil
}
