package checkpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// The S3 storage's throughput against plain minio-go on the same server in
// the same run: the target is at least 70% of minio-go's MB/s. Both use
// their defaults (16 MiB parts, 4 parts at a time), so a 10 MB object is
// one PUT and a 100 MB object a multipart upload.
//
//	EBBFLOW_MINIO_BIN=... go test -run '^$' -bench S3 -benchtime 3x ./checkpoint/
//
// EBBFLOW_S3_BENCH_LARGE=1 adds a 1 GB object (about 5 GB of memory and a
// few minutes). EBBFLOW_S3_BENCH_RANGE_MIB=N reads downloads in N MiB ranges.

type s3BenchSize struct {
	name string
	size int
}

func s3BenchSizes() []s3BenchSize {
	sizes := []s3BenchSize{{"10MB", 10_000_000}, {"100MB", 100_000_000}}
	if os.Getenv("EBBFLOW_S3_BENCH_LARGE") == "1" {
		sizes = append(sizes, s3BenchSize{"1GB", 1_000_000_000})
	}
	return sizes
}

func s3Bench(b *testing.B) (*S3, *minio.Client) {
	b.Helper()
	m := testenv.StartMinIO(b)
	return openS3(b, s3Config(m, "ebbflow-bench", "ckpts")), rawS3(b, m)
}

func benchData(b *testing.B, size int) []byte {
	b.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkS3Upload(b *testing.B) {
	ctx := context.Background()
	s, raw := s3Bench(b)
	for _, sz := range s3BenchSizes() {
		data := benchData(b, sz.size)
		b.Run(sz.name+"/ebbflow", func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				if err := s.Put(ctx, "bench/upload", data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sz.name+"/minio-go", func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				if _, err := raw.PutObject(ctx, "ebbflow-bench", "raw/upload", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkS3Download(b *testing.B) {
	ctx := context.Background()
	s, raw := s3Bench(b)
	for _, sz := range s3BenchSizes() {
		data := benchData(b, sz.size)
		name := "bench/download-" + sz.name
		if err := s.Put(ctx, name, data); err != nil {
			b.Fatal(err)
		}
		b.Run(sz.name+"/ebbflow", func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			if v := os.Getenv("EBBFLOW_S3_BENCH_RANGE_MIB"); v != "" { // tuning: size of one ranged read
				n, _ := strconv.Atoi(v)
				s.rangeSize = int64(n) << 20
			}
			for b.Loop() {
				got, err := s.Get(ctx, name)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != sz.size {
					b.Fatalf("got %d bytes", len(got))
				}
			}
		})
		// minio-go at its best: into a buffer allocated once.
		buf := make([]byte, sz.size)
		b.Run(sz.name+"/minio-go", func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				obj, err := raw.GetObject(ctx, "ebbflow-bench", "ckpts/"+name, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(obj, buf); err != nil {
					b.Fatal(err)
				}
				obj.Close()
			}
		})
		b.Run(sz.name+"/minio-go-alloc", func(b *testing.B) {
			b.SetBytes(int64(sz.size))
			for b.Loop() {
				obj, err := raw.GetObject(ctx, "ebbflow-bench", "ckpts/"+name, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, sz.size)
				if _, err := io.ReadFull(obj, buf); err != nil {
					b.Fatal(err)
				}
				obj.Close()
			}
		})
	}
}
