package codec

import (
	"encoding"
	"fmt"
	"reflect"
	"sync"
	"unsafe"
)

// A plan encodes and decodes values of one type through an unsafe.Pointer to
// them. Plans are compiled once per type by a compiler, from the type's
// structure: by the time a value is encoded, every reflect lookup (field
// offsets, element sizes, which op handles which kind) has been done, and
// what is left is pointer arithmetic and direct loads and stores. Reflection
// is used per value only to allocate slices and pointees on decode and to
// call MarshalBinary/UnmarshalBinary.
type plan struct {
	typ reflect.Type
	// enc appends the encoding of the value at p. depth counts the pointers
	// and slices followed to reach it.
	enc func(dst []byte, p unsafe.Pointer, depth int) []byte
	// dec decodes a value from the front of src into the zeroed memory at p
	// and returns the input that follows it. It never retains src.
	dec func(src []byte, p unsafe.Pointer, depth int) ([]byte, error)
	// minSize is the length of the shortest encoding. It is 0 only for types
	// that always encode to nothing (structs without encoded fields, arrays
	// of those), whose ops do nothing.
	minSize int
	// pool holds *T scratch values for planCodec[T], T being typ.
	pool sync.Pool
}

// planCodec is the Codec For returns for types that need a plan.
type planCodec[T any] struct{ p *plan }

// Append and Decode work on a *T from the plan's pool rather than on &v:
// the ops are func values, so &v would escape and cost an allocation per
// call. Pooled values are zero while in the pool.

func (c planCodec[T]) Append(dst []byte, v T) []byte {
	vp := c.get()
	*vp = v
	dst = c.p.enc(dst, unsafe.Pointer(vp), 0)
	c.put(vp)
	return dst
}

func (c planCodec[T]) Decode(src []byte) (T, error) {
	vp := c.get()
	rest, err := c.p.dec(src, unsafe.Pointer(vp), 0)
	v := *vp
	c.put(vp)
	if err == nil && len(rest) != 0 {
		err = errTrailing
	}
	if err != nil {
		var zero T
		if pe, ok := err.(*pathError); ok {
			return zero, fmt.Errorf("%w: %v%s: %v", ErrCorrupt, c.p.typ, pe.path, pe.err)
		}
		return zero, corrupt(c.p.typ.String(), err)
	}
	return v, nil
}

func (c planCodec[T]) get() *T {
	if vp, ok := c.p.pool.Get().(*T); ok {
		return vp
	}
	return new(T)
}

func (c planCodec[T]) put(vp *T) {
	var zero T
	*vp = zero
	c.p.pool.Put(vp)
}

// pathError locates a decode error inside a value: path is a Go selector
// suffix such as ".Items[3].Name".
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string { return e.path + ": " + e.err.Error() }

// atPath prefixes the location of err with elem (".Field" or "[i]").
func atPath(elem string, err error) error {
	if pe, ok := err.(*pathError); ok {
		pe.path = elem + pe.path
		return pe
	}
	return &pathError{path: elem, err: err}
}

// plans caches one planEntry per type.
var plans sync.Map // reflect.Type -> *planEntry

type planEntry struct {
	p   *plan
	err error // why the type has no plan
}

// planFor returns the cached plan for t, compiling it on first use.
func planFor(t reflect.Type) (*plan, error) {
	if e, ok := plans.Load(t); ok {
		e := e.(*planEntry)
		return e.p, e.err
	}
	c := &compiler{plans: make(map[reflect.Type]*plan)}
	p, err := c.compile(t)
	for _, check := range c.checks {
		if err != nil {
			break
		}
		err = check()
	}
	if err != nil {
		p = nil
	}
	e, _ := plans.LoadOrStore(t, &planEntry{p, err})
	return e.(*planEntry).p, e.(*planEntry).err
}

// A compiler builds the plans of one type and of the types inside it.
type compiler struct {
	// plans holds every plan begun, including those still being built, so
	// that a recursive type (type Node struct{ Next *Node }) refers to its
	// own plan. A plan still being built is reached only through a pointer
	// or a slice (a type cannot otherwise contain itself). Those set their
	// own minSize before compiling their element and read the element's
	// enc, dec and minSize only when they run, so every minSize compile
	// reads is final.
	plans map[reflect.Type]*plan
	// checks run when compilation is done, once every minSize is known.
	checks []func() error
}

var (
	binaryMarshaler   = reflect.TypeFor[encoding.BinaryMarshaler]()
	binaryUnmarshaler = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

func (c *compiler) compile(t reflect.Type) (*plan, error) {
	if p, ok := c.plans[t]; ok {
		return p, nil
	}
	p := &plan{typ: t}
	c.plans[t] = p
	switch k := t.Kind(); k {
	case reflect.Bool:
		p.enc, p.dec, p.minSize = encBool, decBool, 1
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		p.enc, p.dec = signedOps(t.Size())
		p.minSize = 1
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		p.enc, p.dec = unsignedOps(t.Size())
		p.minSize = 1
	case reflect.Float32:
		p.enc, p.dec, p.minSize = encFloat32, decFloat32, 4
	case reflect.Float64:
		p.enc, p.dec, p.minSize = encFloat64, decFloat64, 8
	case reflect.Complex64:
		p.enc, p.dec, p.minSize = encComplex64, decComplex64, 8
	case reflect.Complex128:
		p.enc, p.dec, p.minSize = encComplex128, decComplex128, 16
	case reflect.String:
		p.enc, p.dec, p.minSize = encString, decString, 1
	case reflect.Pointer:
		p.minSize = 1 // before compiling the element, which may refer back
		elem, err := c.compile(t.Elem())
		if err != nil {
			return nil, err
		}
		p.enc, p.dec = pointerOps(elem)
	case reflect.Slice:
		p.minSize = 1
		if t.Elem().Kind() == reflect.Uint8 {
			p.enc, p.dec = encBytes, decBytes
			break
		}
		elem, err := c.compile(t.Elem())
		if err != nil {
			return nil, err
		}
		c.checks = append(c.checks, func() error {
			// Decoding allocates the elements before reading them; if they
			// take memory but no input, a tiny input could demand any amount.
			if elem.minSize == 0 && t.Elem().Size() != 0 {
				return fmt.Errorf("codec: %v: elements encode to nothing", t)
			}
			return nil
		})
		p.enc, p.dec = sliceOps(t, elem)
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			p.enc, p.dec = byteArrayOps(t.Len())
			p.minSize = t.Len()
			break
		}
		elem, err := c.compile(t.Elem())
		if err != nil {
			return nil, err
		}
		p.minSize = t.Len() * elem.minSize
		if p.minSize == 0 { // elements encode to nothing: don't loop over them
			p.enc, p.dec = structOps(nil)
			break
		}
		p.enc, p.dec = arrayOps(t, elem)
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(binaryMarshaler) && reflect.PointerTo(t).Implements(binaryUnmarshaler) {
			p.enc, p.dec = marshalerOps(t)
			p.minSize = 1
			break
		}
		fields, err := c.fields(t)
		if err != nil {
			return nil, err
		}
		p.enc, p.dec = structOps(fields)
		for _, f := range fields {
			p.minSize += f.p.minSize
		}
	default: // Map, Interface, Chan, Func, UnsafePointer
		return nil, fmt.Errorf("codec: %v: kind %v not supported", t, k)
	}
	return p, nil
}

// field is one encoded struct field.
type field struct {
	off  uintptr
	name string // ".Name", for error paths
	p    *plan
}

// fields compiles the encoded fields of struct type t, in declaration order.
func (c *compiler) fields(t reflect.Type) ([]field, error) {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		embeddedStruct := sf.Anonymous && sf.Type.Kind() == reflect.Struct
		if !sf.IsExported() && !embeddedStruct {
			continue
		}
		p, err := c.compile(sf.Type)
		if err != nil {
			return nil, fmt.Errorf("%w (field %v.%s)", err, t, sf.Name)
		}
		if p.minSize == 0 {
			continue // encodes to nothing, such as struct{}
		}
		fs = append(fs, field{off: sf.Offset, name: "." + sf.Name, p: p})
	}
	return fs, nil
}
