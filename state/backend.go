package state

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"github.com/ebbflow/ebbflow/codec"
)

// Backend holds one keyed operator subtask's state: every declared state,
// split by the key groups in the subtask's range. The runtime sets the
// current key before each call of the user's function; state handles read
// and write the current key's entry.
//
// A Backend is used by one task goroutine only.
type Backend[K comparable] struct {
	kgs      Range
	maxP     int
	keyCodec codec.Codec[K]
	curKey   K
	curIdx   int
	states   map[string]keyedState
	// scratch holds each state's encoding of one key group while a
	// snapshot is taken; kept between snapshots so its memory stays warm.
	scratch [][]byte
}

type keyedState interface {
	// appendKG appends the encoding of key group idx's entries; ok=false if empty.
	appendKG(idx int, dst []byte) ([]byte, bool)
	restoreKG(idx int, data []byte) error
}

// NewBackend creates the backend of a subtask owning key groups kgs.
func NewBackend[K comparable](kgs Range, maxP int, keyCodec codec.Codec[K]) *Backend[K] {
	return &Backend[K]{kgs: kgs, maxP: maxP, keyCodec: keyCodec, states: map[string]keyedState{}}
}

// SetCurrentKey makes k (in key group kg) the key that state handles use.
func (b *Backend[K]) SetCurrentKey(k K, kg int) error {
	if !b.kgs.Contains(kg) {
		return fmt.Errorf("state: key group %d is not in this subtask's range %v (records routed to the wrong subtask)", kg, b.kgs)
	}
	b.curKey = k
	b.curIdx = kg - b.kgs.Start
	return nil
}

// CurrentKey is the key being processed.
func (b *Backend[K]) CurrentKey() K { return b.curKey }

func (b *Backend[K]) register(name string, s keyedState) {
	if _, dup := b.states[name]; dup {
		panic(fmt.Sprintf("ebbflow: keyed state %q declared twice in one operator", name))
	}
	b.states[name] = s
}

func (b *Backend[K]) names() []string {
	n := make([]string, 0, len(b.states))
	for k := range b.states {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Snapshot serializes every non-empty key group. Layout of one key group:
// repeated { uvarint len(name) | name | uvarint len(data) | data } with data
// the state's entries (see docs/format/checkpoint.md).
func (b *Backend[K]) Snapshot() map[int][]byte {
	out := map[int][]byte{}
	names := b.names()
	// One scratch buffer per state, reused across key groups, and one
	// exactly sized allocation per key group: state can be gigabytes.
	if len(b.scratch) != len(names) {
		b.scratch = make([][]byte, len(names))
	}
	scratch := b.scratch
	ok := make([]bool, len(names))
	for idx := 0; idx < b.kgs.Len(); idx++ {
		size := 0
		for i, n := range names {
			scratch[i], ok[i] = b.states[n].appendKG(idx, scratch[i][:0])
			if ok[i] {
				size += uvarintLen(len(n)) + len(n) + uvarintLen(len(scratch[i])) + len(scratch[i])
			}
		}
		if size == 0 {
			continue
		}
		blob := make([]byte, 0, size)
		for i, n := range names {
			if !ok[i] {
				continue
			}
			blob = binary.AppendUvarint(blob, uint64(len(n)))
			blob = append(blob, n...)
			blob = binary.AppendUvarint(blob, uint64(len(scratch[i])))
			blob = append(blob, scratch[i]...)
		}
		out[b.kgs.Start+idx] = blob
	}
	return out
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// Restore loads key groups from a snapshot. It must run after every state
// of the operator has been declared. A state that the snapshot holds but the
// operator no longer declares is an error: dropping it silently would lose data.
func (b *Backend[K]) Restore(kgs map[int][]byte) error {
	for kg, blob := range kgs {
		if !b.kgs.Contains(kg) {
			return fmt.Errorf("state: restore key group %d outside range %v", kg, b.kgs)
		}
		idx := kg - b.kgs.Start
		for len(blob) > 0 {
			name, rest, err := readChunk(blob)
			if err != nil {
				return fmt.Errorf("state: restore key group %d: %w", kg, err)
			}
			data, rest, err := readChunk(rest)
			if err != nil {
				return fmt.Errorf("state: restore key group %d state %q: %w", kg, name, err)
			}
			blob = rest
			s, ok := b.states[string(name)]
			if !ok {
				return fmt.Errorf("state: the snapshot holds keyed state %q that this operator no longer declares", name)
			}
			if err := s.restoreKG(idx, data); err != nil {
				return fmt.Errorf("state: restore key group %d state %q: %w", kg, name, err)
			}
		}
	}
	return nil
}

// ErrCorrupt marks state bytes that cannot be decoded.
var ErrCorrupt = fmt.Errorf("state: corrupt state data")

func readChunk(b []byte) (chunk, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, ErrCorrupt
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// appendEncoded appends v's encoding as a chunk (uvarint length, bytes)
// without an intermediate buffer: it encodes after a one-byte length and,
// for an encoding of 128 bytes or more, moves it up to make room for the
// longer length (a move within bytes just written, still in cache).
func appendEncoded[T any](dst []byte, c codec.Codec[T], v T) []byte {
	start := len(dst)
	dst = c.Append(append(dst, 0), v)
	n := len(dst) - start - 1
	if n < 0x80 {
		dst[start] = byte(n)
		return dst
	}
	l := uvarintLen(n)
	dst = slices.Grow(dst, l-1)[:len(dst)+l-1]
	copy(dst[start+l:], dst[start+1:start+1+n])
	binary.PutUvarint(dst[start:], uint64(n))
	return dst
}

func appendChunk(dst, chunk []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(chunk)))
	return append(dst, chunk...)
}

// Value is a single value per key.
type Value[K comparable, V any] struct {
	b      *Backend[K]
	vc     codec.Codec[V]
	groups []map[K]V
}

// NewValue declares a value state called name.
func NewValue[V any, K comparable](b *Backend[K], name string, vc codec.Codec[V]) *Value[K, V] {
	s := &Value[K, V]{b: b, vc: vc, groups: make([]map[K]V, b.kgs.Len())}
	for i := range s.groups {
		s.groups[i] = map[K]V{}
	}
	b.register(name, s)
	return s
}

// Get returns the current key's value and whether it is set.
func (s *Value[K, V]) Get() (V, bool) {
	v, ok := s.groups[s.b.curIdx][s.b.curKey]
	return v, ok
}

// Set stores the current key's value.
func (s *Value[K, V]) Set(v V) { s.groups[s.b.curIdx][s.b.curKey] = v }

// Clear removes the current key's value.
func (s *Value[K, V]) Clear() { delete(s.groups[s.b.curIdx], s.b.curKey) }

func (s *Value[K, V]) appendKG(idx int, dst []byte) ([]byte, bool) {
	m := s.groups[idx]
	if len(m) == 0 {
		return dst, false
	}
	dst = binary.AppendUvarint(dst, uint64(len(m)))
	for k, v := range m {
		dst = appendEncoded(dst, s.b.keyCodec, k)
		dst = appendEncoded(dst, s.vc, v)
	}
	return dst, true
}

func (s *Value[K, V]) restoreKG(idx int, data []byte) error {
	n, k := binary.Uvarint(data)
	if k <= 0 {
		return ErrCorrupt
	}
	data = data[k:]
	m := s.groups[idx]
	if len(m) == 0 && n <= uint64(len(data)) {
		// Sized once: a restore can insert millions of entries. (Each entry
		// takes at least a byte, so n is bounded by the data.)
		m = make(map[K]V, n)
		s.groups[idx] = m
	}
	for i := uint64(0); i < n; i++ {
		kb, rest, err := readChunk(data)
		if err != nil {
			return err
		}
		vb, rest, err := readChunk(rest)
		if err != nil {
			return err
		}
		data = rest
		key, err := s.b.keyCodec.Decode(kb)
		if err != nil {
			return fmt.Errorf("decode key: %w", err)
		}
		v, err := s.vc.Decode(vb)
		if err != nil {
			return fmt.Errorf("decode value: %w", err)
		}
		m[key] = v
	}
	if len(data) != 0 {
		return ErrCorrupt
	}
	return nil
}

// Map is a map of user keys to values per key.
type Map[K comparable, UK comparable, UV any] struct {
	b      *Backend[K]
	ukc    codec.Codec[UK]
	uvc    codec.Codec[UV]
	groups []map[K]map[UK]UV
}

// NewMap declares a map state called name.
func NewMap[UK comparable, UV any, K comparable](b *Backend[K], name string, ukc codec.Codec[UK], uvc codec.Codec[UV]) *Map[K, UK, UV] {
	s := &Map[K, UK, UV]{b: b, ukc: ukc, uvc: uvc, groups: make([]map[K]map[UK]UV, b.kgs.Len())}
	for i := range s.groups {
		s.groups[i] = map[K]map[UK]UV{}
	}
	b.register(name, s)
	return s
}

// Get returns the value under uk for the current key.
func (s *Map[K, UK, UV]) Get(uk UK) (UV, bool) {
	v, ok := s.groups[s.b.curIdx][s.b.curKey][uk]
	return v, ok
}

// Put stores uv under uk for the current key.
func (s *Map[K, UK, UV]) Put(uk UK, uv UV) {
	g := s.groups[s.b.curIdx]
	m := g[s.b.curKey]
	if m == nil {
		m = map[UK]UV{}
		g[s.b.curKey] = m
	}
	m[uk] = uv
}

// Remove deletes uk for the current key.
func (s *Map[K, UK, UV]) Remove(uk UK) {
	g := s.groups[s.b.curIdx]
	if m := g[s.b.curKey]; m != nil {
		delete(m, uk)
		if len(m) == 0 {
			delete(g, s.b.curKey)
		}
	}
}

// Len is the number of entries for the current key.
func (s *Map[K, UK, UV]) Len() int { return len(s.groups[s.b.curIdx][s.b.curKey]) }

// All calls fn for every entry of the current key until fn returns false.
func (s *Map[K, UK, UV]) All(fn func(UK, UV) bool) {
	for k, v := range s.groups[s.b.curIdx][s.b.curKey] {
		if !fn(k, v) {
			return
		}
	}
}

// Clear removes every entry of the current key.
func (s *Map[K, UK, UV]) Clear() { delete(s.groups[s.b.curIdx], s.b.curKey) }

func (s *Map[K, UK, UV]) appendKG(idx int, dst []byte) ([]byte, bool) {
	g := s.groups[idx]
	if len(g) == 0 {
		return dst, false
	}
	dst = binary.AppendUvarint(dst, uint64(len(g)))
	for k, m := range g {
		dst = appendEncoded(dst, s.b.keyCodec, k)
		dst = binary.AppendUvarint(dst, uint64(len(m)))
		for uk, uv := range m {
			dst = appendEncoded(dst, s.ukc, uk)
			dst = appendEncoded(dst, s.uvc, uv)
		}
	}
	return dst, true
}

func (s *Map[K, UK, UV]) restoreKG(idx int, data []byte) error {
	n, k := binary.Uvarint(data)
	if k <= 0 {
		return ErrCorrupt
	}
	data = data[k:]
	g := s.groups[idx]
	if len(g) == 0 && n <= uint64(len(data)) {
		g = make(map[K]map[UK]UV, n)
		s.groups[idx] = g
	}
	for i := uint64(0); i < n; i++ {
		kb, rest, err := readChunk(data)
		if err != nil {
			return err
		}
		key, err := s.b.keyCodec.Decode(kb)
		if err != nil {
			return fmt.Errorf("decode key: %w", err)
		}
		cnt, k := binary.Uvarint(rest)
		if k <= 0 {
			return ErrCorrupt
		}
		rest = rest[k:]
		m := make(map[UK]UV, min(cnt, uint64(len(rest))/2)) // an entry takes at least 2 bytes; never trust a corrupt count
		for j := uint64(0); j < cnt; j++ {
			ukb, r2, err := readChunk(rest)
			if err != nil {
				return err
			}
			uvb, r3, err := readChunk(r2)
			if err != nil {
				return err
			}
			rest = r3
			uk, err := s.ukc.Decode(ukb)
			if err != nil {
				return fmt.Errorf("decode map key: %w", err)
			}
			uv, err := s.uvc.Decode(uvb)
			if err != nil {
				return fmt.Errorf("decode map value: %w", err)
			}
			m[uk] = uv
		}
		g[key] = m
		data = rest
	}
	if len(data) != 0 {
		return ErrCorrupt
	}
	return nil
}
