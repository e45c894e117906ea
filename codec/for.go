package codec

import (
	"reflect"
	"unsafe"
)

// For returns a codec for T, choosing in this order:
//
//   - the built-in codec when T is string, []byte, bool, a sized or unsized
//     int or uint, float32 or float64;
//   - the same built-in encoding when T is a named type whose underlying type
//     is one of those (type Word string);
//   - a reflection codec, compiled once per type, when T is built from those
//     kinds and structs, arrays, slices and pointers (see below);
//   - JSON[T]() otherwise, for example when T has a map or interface field.
//
// The reflection codec writes the exported fields of a struct in declaration
// order (fields of embedded unexported structs included, other unexported
// fields ignored) with no names or tags, so reordering, adding or removing
// fields changes the encoding. Inside it, strings and byte slices are
// length-prefixed, integers are varints, floats are fixed-width as in
// Float64, a bool is one byte, a slice is an element count followed by its
// elements, an array is its elements ([N]byte is its raw bytes), and a
// pointer is a presence byte followed by the value if non-nil. Nil and empty
// slices encode alike and decode as nil. A struct type whose pointer
// implements encoding.BinaryMarshaler and encoding.BinaryUnmarshaler, such
// as time.Time, is encoded as the length-prefixed bytes of MarshalBinary
// (methods promoted from an embedded field count, as in encoding/json), and
// is canonical only if that method is.
//
// Append panics on values nested more than 10000 pointers or slices deep,
// which includes cyclic values, and when MarshalBinary fails.
//
// For is safe for concurrent use; call it once and keep the codec.
func For[T any]() Codec[T] {
	var c any
	switch any(*new(T)).(type) {
	case string:
		c = String()
	case []byte:
		c = Bytes()
	case bool:
		c = Bool()
	case int:
		c = Int()
	case int8:
		c = Int8()
	case int16:
		c = Int16()
	case int32:
		c = Int32()
	case int64:
		c = Int64()
	case uint:
		c = Uint()
	case uint8:
		c = Uint8()
	case uint16:
		c = Uint16()
	case uint32:
		c = Uint32()
	case uint64:
		c = Uint64()
	case float32:
		c = Float32()
	case float64:
		c = Float64()
	}
	if c != nil {
		return c.(Codec[T])
	}
	t := reflect.TypeFor[T]()
	if c := forBasicKind[T](t); c != nil {
		return c
	}
	if p, err := planFor(t); err == nil {
		return planCodec[T]{p}
	}
	return JSON[T]()
}

// forBasicKind returns a built-in codec for a named type whose underlying
// type is one the built-ins handle, or nil.
func forBasicKind[T any](t reflect.Type) Codec[T] {
	switch t.Kind() {
	case reflect.String:
		return cast[T](String())
	case reflect.Bool:
		return cast[T](Bool())
	case reflect.Int:
		return cast[T](Int())
	case reflect.Int8:
		return cast[T](Int8())
	case reflect.Int16:
		return cast[T](Int16())
	case reflect.Int32:
		return cast[T](Int32())
	case reflect.Int64:
		return cast[T](Int64())
	case reflect.Uint:
		return cast[T](Uint())
	case reflect.Uint8:
		return cast[T](Uint8())
	case reflect.Uint16:
		return cast[T](Uint16())
	case reflect.Uint32:
		return cast[T](Uint32())
	case reflect.Uint64:
		return cast[T](Uint64())
	case reflect.Float32:
		return cast[T](Float32())
	case reflect.Float64:
		return cast[T](Float64())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return cast[T](Bytes())
		}
	}
	return nil
}

// cast adapts a codec for U to T. T's underlying type must be U (or, for
// byte slices, have U's memory layout), which forBasicKind checks.
func cast[T, U any](c Codec[U]) Codec[T] { return castCodec[T, U]{c} }

type castCodec[T, U any] struct{ c Codec[U] }

func (c castCodec[T, U]) Append(dst []byte, v T) []byte {
	return c.c.Append(dst, *(*U)(unsafe.Pointer(&v)))
}

func (c castCodec[T, U]) Decode(src []byte) (T, error) {
	u, err := c.c.Decode(src)
	return *(*T)(unsafe.Pointer(&u)), err
}
