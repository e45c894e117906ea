package codec

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"reflect"
	"strconv"
	"unsafe"
)

// Ops of the reflection codec. Leaf ops are plain functions; ops for
// composite types are closures over their element plans. Decode ops write
// into zeroed memory, so they skip stores of zero values.

func encBool(dst []byte, p unsafe.Pointer, _ int) []byte {
	if *(*bool)(p) {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func decBool(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	if len(src) == 0 {
		return nil, errShort
	}
	if src[0] > 1 {
		return nil, errBool
	}
	*(*bool)(p) = src[0] == 1
	return src[1:], nil
}

func signedOps(size uintptr) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	switch size {
	case 1:
		return encSigned[int8], decSigned[int8]
	case 2:
		return encSigned[int16], decSigned[int16]
	case 4:
		return encSigned[int32], decSigned[int32]
	}
	return encSigned[int64], decSigned[int64]
}

func encSigned[T int8 | int16 | int32 | int64](dst []byte, p unsafe.Pointer, _ int) []byte {
	return binary.AppendVarint(dst, int64(*(*T)(p)))
}

func decSigned[T int8 | int16 | int32 | int64](src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	x, n, err := readVarint(src)
	if err != nil {
		return nil, err
	}
	if int64(T(x)) != x {
		return nil, errRange
	}
	*(*T)(p) = T(x)
	return src[n:], nil
}

func unsignedOps(size uintptr) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	switch size {
	case 1:
		return encUnsigned[uint8], decUnsigned[uint8]
	case 2:
		return encUnsigned[uint16], decUnsigned[uint16]
	case 4:
		return encUnsigned[uint32], decUnsigned[uint32]
	}
	return encUnsigned[uint64], decUnsigned[uint64]
}

func encUnsigned[T uint8 | uint16 | uint32 | uint64](dst []byte, p unsafe.Pointer, _ int) []byte {
	return binary.AppendUvarint(dst, uint64(*(*T)(p)))
}

func decUnsigned[T uint8 | uint16 | uint32 | uint64](src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	x, n, err := readUvarint(src)
	if err != nil {
		return nil, err
	}
	if uint64(T(x)) != x {
		return nil, errRange
	}
	*(*T)(p) = T(x)
	return src[n:], nil
}

func encFloat32(dst []byte, p unsafe.Pointer, _ int) []byte {
	return appendFloat32Bits(dst, *(*uint32)(p))
}

func decFloat32(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	bits, err := readFloat32Bits(src)
	if err != nil {
		return nil, err
	}
	*(*uint32)(p) = bits
	return src[4:], nil
}

func encFloat64(dst []byte, p unsafe.Pointer, _ int) []byte {
	return appendFloat64Bits(dst, *(*uint64)(p))
}

func decFloat64(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	bits, err := readFloat64Bits(src)
	if err != nil {
		return nil, err
	}
	*(*uint64)(p) = bits
	return src[8:], nil
}

// A complex number is its real part, then its imaginary part.

func encComplex64(dst []byte, p unsafe.Pointer, d int) []byte {
	return encFloat32(encFloat32(dst, p, d), unsafe.Add(p, 4), d)
}

func decComplex64(src []byte, p unsafe.Pointer, d int) ([]byte, error) {
	src, err := decFloat32(src, p, d)
	if err != nil {
		return nil, err
	}
	return decFloat32(src, unsafe.Add(p, 4), d)
}

func encComplex128(dst []byte, p unsafe.Pointer, d int) []byte {
	return encFloat64(encFloat64(dst, p, d), unsafe.Add(p, 8), d)
}

func decComplex128(src []byte, p unsafe.Pointer, d int) ([]byte, error) {
	src, err := decFloat64(src, p, d)
	if err != nil {
		return nil, err
	}
	return decFloat64(src, unsafe.Add(p, 8), d)
}

func encString(dst []byte, p unsafe.Pointer, _ int) []byte {
	s := *(*string)(p)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func decString(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	n, src, err := readLen(src)
	if err != nil {
		return nil, err
	}
	if n > len(src) {
		return nil, errLength
	}
	if n > 0 {
		*(*string)(p) = string(src[:n])
	}
	return src[n:], nil
}

// encBytes and decBytes handle every slice type whose elements are bytes;
// they share []byte's memory layout.
func encBytes(dst []byte, p unsafe.Pointer, _ int) []byte {
	b := *(*[]byte)(p)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func decBytes(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	n, src, err := readLen(src)
	if err != nil {
		return nil, err
	}
	if n > len(src) {
		return nil, errLength
	}
	if n > 0 {
		*(*[]byte)(p) = append([]byte(nil), src[:n]...)
	}
	return src[n:], nil
}

func byteArrayOps(n int) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	enc := func(dst []byte, p unsafe.Pointer, _ int) []byte {
		return append(dst, unsafe.Slice((*byte)(p), n)...)
	}
	dec := func(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
		if len(src) < n {
			return nil, errShort
		}
		copy(unsafe.Slice((*byte)(p), n), src)
		return src[n:], nil
	}
	return enc, dec
}

func pointerOps(elem *plan) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	enc := func(dst []byte, p unsafe.Pointer, depth int) []byte {
		q := *(*unsafe.Pointer)(p)
		if q == nil {
			return append(dst, 0)
		}
		if depth >= maxDepth {
			panic(fmt.Sprintf("codec: encode %v: nested more than %d pointers or slices deep (cyclic value?)", elem.typ, maxDepth))
		}
		return elem.enc(append(dst, 1), q, depth+1)
	}
	dec := func(src []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		if len(src) == 0 {
			return nil, errShort
		}
		switch src[0] {
		case 0:
			return src[1:], nil
		case 1:
		default:
			return nil, errPresence
		}
		if depth >= maxDepth {
			return nil, errDepth
		}
		q := reflect.New(elem.typ).UnsafePointer()
		rest, err := elem.dec(src[1:], q, depth+1)
		if err != nil {
			return nil, err
		}
		*(*unsafe.Pointer)(p) = q
		return rest, nil
	}
	return enc, dec
}

// sliceHeader is the memory layout of every slice.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

func sliceOps(t reflect.Type, elem *plan) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	size := int(t.Elem().Size())
	enc := func(dst []byte, p unsafe.Pointer, depth int) []byte {
		s := (*sliceHeader)(p)
		dst = binary.AppendUvarint(dst, uint64(s.len))
		if s.len == 0 || elem.minSize == 0 {
			return dst
		}
		if depth >= maxDepth {
			panic(fmt.Sprintf("codec: encode %v: nested more than %d pointers or slices deep (cyclic value?)", t, maxDepth))
		}
		for i := range s.len {
			dst = elem.enc(dst, unsafe.Add(s.data, i*size), depth+1)
		}
		return dst
	}
	dec := func(src []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		n, src, err := readLen(src)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return src, nil
		}
		least := elem.minSize
		if least > 0 && n > len(src)/least {
			return nil, errLength
		}
		if depth >= maxDepth {
			return nil, errDepth
		}
		data := reflect.MakeSlice(t, n, n).UnsafePointer()
		if least > 0 {
			for i := range n {
				if src, err = elem.dec(src, unsafe.Add(data, i*size), depth+1); err != nil {
					return nil, atPath("["+strconv.Itoa(i)+"]", err)
				}
			}
		}
		*(*sliceHeader)(p) = sliceHeader{data, n, n}
		return src, nil
	}
	return enc, dec
}

func arrayOps(t reflect.Type, elem *plan) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	n, size := t.Len(), int(t.Elem().Size())
	enc := func(dst []byte, p unsafe.Pointer, depth int) []byte {
		for i := range n {
			dst = elem.enc(dst, unsafe.Add(p, i*size), depth)
		}
		return dst
	}
	dec := func(src []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		var err error
		for i := range n {
			if src, err = elem.dec(src, unsafe.Add(p, i*size), depth); err != nil {
				return nil, atPath("["+strconv.Itoa(i)+"]", err)
			}
		}
		return src, nil
	}
	return enc, dec
}

func structOps(fields []field) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	enc := func(dst []byte, p unsafe.Pointer, depth int) []byte {
		for i := range fields {
			f := &fields[i]
			dst = f.p.enc(dst, unsafe.Add(p, f.off), depth)
		}
		return dst
	}
	dec := func(src []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		var err error
		for i := range fields {
			f := &fields[i]
			if src, err = f.p.dec(src, unsafe.Add(p, f.off), depth); err != nil {
				return nil, atPath(f.name, err)
			}
		}
		return src, nil
	}
	return enc, dec
}

// marshalerOps encode a struct type through its BinaryMarshaler and
// BinaryUnmarshaler methods, as a length-prefixed byte string.
func marshalerOps(t reflect.Type) (func([]byte, unsafe.Pointer, int) []byte, func([]byte, unsafe.Pointer, int) ([]byte, error)) {
	enc := func(dst []byte, p unsafe.Pointer, _ int) []byte {
		b, err := reflect.NewAt(t, p).Interface().(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			panic(fmt.Sprintf("codec: encode %v: %v", t, err))
		}
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		return append(dst, b...)
	}
	dec := func(src []byte, p unsafe.Pointer, _ int) ([]byte, error) {
		n, src, err := readLen(src)
		if err != nil {
			return nil, err
		}
		if n > len(src) {
			return nil, errLength
		}
		// Copy: UnmarshalBinary may keep its argument, and src is reused.
		b := append([]byte(nil), src[:n]...)
		if err := reflect.NewAt(t, p).Interface().(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("UnmarshalBinary: %v", err)
		}
		return src[n:], nil
	}
	return enc, dec
}
