package codec_test

import (
	"testing"

	"github.com/ebbflow/ebbflow/codec"
)

type wordCount struct {
	Word  string
	Count int64
}

func benchAppend[T any](b *testing.B, c codec.Codec[T], v T) {
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst = c.Append(dst[:0], v)
	}
	b.SetBytes(int64(len(dst)))
}

func benchDecode[T any](b *testing.B, c codec.Codec[T], v T) {
	src := c.Append(nil, v)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := c.Decode(src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStringAppend(b *testing.B) { benchAppend(b, codec.String(), "hello, world") }
func BenchmarkStringDecode(b *testing.B) { benchDecode(b, codec.String(), "hello, world") }
func BenchmarkInt64Append(b *testing.B)  { benchAppend(b, codec.Int64(), -1234567) }
func BenchmarkInt64Decode(b *testing.B)  { benchDecode(b, codec.Int64(), -1234567) }

var wc = wordCount{Word: "hello", Count: 42}

func BenchmarkStructAppend(b *testing.B) {
	b.Run("For", func(b *testing.B) { benchAppend(b, codec.For[wordCount](), wc) })
	b.Run("JSON", func(b *testing.B) { benchAppend(b, codec.JSON[wordCount](), wc) })
}

func BenchmarkStructDecode(b *testing.B) {
	b.Run("For", func(b *testing.B) { benchDecode(b, codec.For[wordCount](), wc) })
	b.Run("JSON", func(b *testing.B) { benchDecode(b, codec.JSON[wordCount](), wc) })
}

func BenchmarkRecordAppend(b *testing.B) { benchAppend(b, codec.For[record](), sampleRecord()) }
func BenchmarkRecordDecode(b *testing.B) { benchDecode(b, codec.For[record](), sampleRecord()) }
