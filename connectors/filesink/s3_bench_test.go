package filesink

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ebbflow/ebbflow"
)

// The S3 output sink's throughput per transaction, against minio-go
// uploading the same bytes as one object in the same run (what a sink that
// is not exactly-once would cost at least):
//
//	EBBFLOW_MINIO_BIN=... go test -run '^$' -bench S3Sink -benchtime 5x ./connectors/filesink/
//
// ebbflow: per op, one transaction's records written, PreCommit (the
// stage written whole) and Commit, which hands the server-side copy to the
// writer's background publisher, so the next transaction's writes overlap
// it; the time includes waiting for the last copy. precommit-ms/op and
// commit-ms/op are the task's own waits in those two calls.
func BenchmarkS3Sink(b *testing.B) {
	_, raw := s3Env(b)
	if err := raw.MakeBucket(context.Background(), "bench", minio.MakeBucketOptions{}); err != nil {
		b.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 99)
	format := func(dst []byte, v []byte) []byte { return append(dst, v...) }

	for _, size := range []int{1 << 20, 10 << 20, 100 << 20} {
		lines := size / (len(line) + 1)
		name := fmt.Sprintf("%dMiB", size>>20)
		runs := 0
		b.Run(name+"/ebbflow", func(b *testing.B) {
			runs++ // the function runs again for each b.N tried
			dir := fmt.Sprintf("s3://bench/sink-%s-%d", name, runs)
			w, err := Lines(dir, format).NewWriter(ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.SetBytes(int64(size))
			var stage, commit time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for range lines {
					if err := w.Write(line); err != nil {
						b.Fatal(err)
					}
				}
				t0 := time.Now()
				c, err := w.PreCommit(int64(i))
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := w.Commit(c); err != nil {
					b.Fatal(err)
				}
				stage += t1.Sub(t0)
				commit += time.Since(t1)
			}
			if err := w.(ebbflow.SinkCommitWaiter).WaitCommitted(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(stage.Milliseconds())/float64(b.N), "precommit-ms/op")
			b.ReportMetric(float64(commit.Milliseconds())/float64(b.N), "commit-ms/op")
		})
		b.Run(name+"/minio-go", func(b *testing.B) {
			data := bytes.Repeat(append(bytes.Clone(line), '\n'), lines)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := raw.PutObject(context.Background(), "bench", fmt.Sprintf("raw-%s/%d", name, i), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
