package state

import (
	"fmt"
	"testing"

	"github.com/ebbflow/ebbflow/codec"
)

// The cost of taking and restoring a snapshot of large keyed state, on the
// task goroutine: keys × 1000-byte values, as examples/statebench holds.
//
//	go test -run '^$' -bench Snapshot -benchtime 3x ./state/
func BenchmarkSnapshot(b *testing.B) {
	for _, keys := range []int{25_000, 250_000} {
		const maxP = 128
		r := RangeFor(0, 4, maxP) // one of four subtasks
		src := NewBackend[int64](r, maxP, codec.Int64())
		v := NewValue[[]byte](src, "value", codec.Bytes())
		n := 0
		var kb []byte
		for k := int64(0); n < keys; k++ {
			kb = codec.Int64().Append(kb[:0], k)
			kg := KeyGroupOf(Hash(kb), maxP)
			if !r.Contains(kg) {
				continue
			}
			if err := src.SetCurrentKey(k, kg); err != nil {
				b.Fatal(err)
			}
			v.Set(make([]byte, 1000))
			n++
		}
		size := int64(keys) * 1000
		b.Run(fmt.Sprintf("%dMB/take", size/1e6), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				src.Snapshot()
			}
		})
		snap := src.Snapshot()
		b.Run(fmt.Sprintf("%dMB/restore", size/1e6), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				dst := NewBackend[int64](r, maxP, codec.Int64())
				NewValue[[]byte](dst, "value", codec.Bytes())
				if err := dst.Restore(snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
