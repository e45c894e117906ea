package codec

// Kind reports which implementation For chose: "builtin", "cast", "reflect"
// or "json".
func Kind[T any](c Codec[T]) string {
	switch c.(type) {
	case planCodec[T]:
		return "reflect"
	case jsonCodec[T]:
		return "json"
	case castCodec[T, string], castCodec[T, []byte], castCodec[T, bool],
		castCodec[T, int], castCodec[T, int8], castCodec[T, int16], castCodec[T, int32], castCodec[T, int64],
		castCodec[T, uint], castCodec[T, uint8], castCodec[T, uint16], castCodec[T, uint32], castCodec[T, uint64],
		castCodec[T, float32], castCodec[T, float64]:
		return "cast"
	}
	return "builtin"
}

const MaxDepth = maxDepth
