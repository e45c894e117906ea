package filesink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/internal/testenv"
)

func formatStr(dst []byte, v string) []byte { return append(dst, v...) }

// s3Env starts MinIO, points the EBBFLOW_S3_* variables at it and returns
// the server and a client to inspect the bucket with.
func s3Env(t testing.TB) (*testenv.MinIO, *minio.Client) {
	t.Helper()
	m := testenv.StartMinIO(t)
	t.Setenv(envS3Endpoint, m.Endpoint)
	t.Setenv(envS3AccessKey, m.AccessKey)
	t.Setenv(envS3SecretKey, m.SecretKey)
	t.Setenv(envS3SecretKeyFile, "")
	t.Setenv(envS3TLS, "false")
	t.Setenv(envS3Region, "")
	t.Setenv(envS3CAFile, "")
	t.Setenv(envS3CreateBucket, "true")
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return m, c
}

func newS3Writer(t *testing.T, dir string, ctx ebbflow.SinkContext) ebbflow.SinkWriter[string] {
	t.Helper()
	w, err := Lines(dir, formatStr).NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	// Let subtask 0's tidying up of older attempts finish.
	w.(*s3Writer[string]).waitTidy()
	return w
}

func writeS(t *testing.T, w ebbflow.SinkWriter[string], vs ...string) {
	t.Helper()
	for _, v := range vs {
		if err := w.Write(v); err != nil {
			t.Fatal(err)
		}
	}
}

func preCommitS(t *testing.T, w ebbflow.SinkWriter[string], chk int64) [][]byte {
	t.Helper()
	c, err := w.PreCommit(chk)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// commitWait commits and waits for the background publishing, as the
// runtime does at the end of input.
func commitWait[T any](w ebbflow.SinkWriter[T], c [][]byte) error {
	if err := w.Commit(c); err != nil {
		return err
	}
	return w.(ebbflow.SinkCommitWaiter).WaitCommitted()
}

// keys lists every object in the bucket.
func keys(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var out []string
	for obj := range c.ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		out = append(out, obj.Key)
	}
	return out
}

// uploadsOf lists the incomplete uploads of exactly key.
func uploadsOf(t *testing.T, c *minio.Client, bucket, key string) []string {
	t.Helper()
	var out []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, key, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		if u.Key == key {
			out = append(out, u.UploadID)
		}
	}
	return out
}

// big returns n lines of 1 MiB each.
func big(n int, c byte) []string {
	line := strings.Repeat(string(c), 1<<20)
	out := make([]string, n)
	for i := range out {
		out[i] = line
	}
	return out
}

func TestS3TwoPhaseVisibility(t *testing.T) {
	_, c := s3Env(t)
	dir := "s3://out/run/a"
	w0 := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 2, Attempt: 1})
	w1 := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 1, Parallelism: 2, Attempt: 1})
	if got := preCommitS(t, w0, 1); got != nil {
		t.Fatalf("empty transaction: %q", got)
	}
	writeS(t, w0, "a", "b")
	writeS(t, w1, "c")
	chk := append(preCommitS(t, w0, 2), preCommitS(t, w1, 2)...)
	if len(chk) != 2 {
		t.Fatalf("committables: %d", len(chk))
	}
	writeS(t, w0, "d") // next transaction, in memory
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"run/a/_staging/part-000001-0000-000000", "run/a/_staging/part-000001-0001-000000"}) {
		t.Fatalf("before commit, want only the stages: %q", k)
	}
	if got := readS3(t, dir); len(got) != 0 {
		t.Fatalf("committed before commit: %q", got)
	}
	if err := commitWait(w1, chk); err != nil { // any writer may commit
		t.Fatal(err)
	}
	want := []string{"a", "b", "c"}
	if got := readS3(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after commit: %q", got)
	}
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"run/a/part-000001-0000-000000", "run/a/part-000001-0001-000000"}) {
		t.Fatalf("keys, want the final objects and no stage: %q", k)
	}
	info, err := c.StatObject(context.Background(), "out", "run/a/part-000001-0000-000000", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.ContentType != "text/plain; charset=utf-8" || info.UserMetadata[txnMetaKey] == "" {
		t.Fatalf("final object's type %q and metadata %q", info.ContentType, info.UserMetadata)
	}
	// Idempotent, also on restore.
	if err := commitWait(w0, chk); err != nil {
		t.Fatal(err)
	}
	newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 2, Attempt: 2, Restored: true, Committables: chk})
	if got := readS3(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after second commit: %q", got)
	}
	// Close aborts the transaction in progress: nothing of "d" remains.
	if err := w0.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readS3(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after close: %q", got)
	}
}

func readS3(t *testing.T, dir string) []string {
	t.Helper()
	lines, err := ReadCommitted(dir)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestS3LargeTransaction(t *testing.T) {
	_, c := s3Env(t)
	dir := "s3://big"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	lines := append(big(20, 'x'), "tail")
	writeS(t, w, lines...)
	// Two parts of 8 MiB went up already, but nothing is visible.
	if k := keys(t, c, "big"); len(k) != 0 {
		t.Fatalf("visible before commit: %q", k)
	}
	if u := uploadsOf(t, c, "big", "_staging/part-000001-0000-000000"); len(u) != 1 {
		t.Fatalf("uploads in progress: %q", u)
	}
	chk := preCommitS(t, w, 1)
	cm, err := decodeS3Committable(chk[0])
	if err != nil {
		t.Fatal(err)
	}
	want := int64(20*(1<<20+1) + 5)
	if cm.size != want || cm.txn == "" || cm.etag == "" {
		t.Fatalf("committable: %+v", cm)
	}
	if k := keys(t, c, "big"); !slices.Equal(k, []string{"_staging/part-000001-0000-000000"}) {
		t.Fatalf("after pre-commit, want only the stage: %q", k)
	}
	if err := commitWait(w, chk); err != nil {
		t.Fatal(err)
	}
	if k := keys(t, c, "big"); !slices.Equal(k, []string{"part-000001-0000-000000"}) {
		t.Fatalf("after commit, want only the final object: %q", k)
	}
	if got := readS3(t, dir); !slices.Equal(got, lines) {
		t.Fatalf("read %d lines, want %d", len(got), len(lines))
	}
	info, err := c.StatObject(context.Background(), "big", "part-000001-0000-000000", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != want {
		t.Fatalf("size %d, want %d", info.Size, want)
	}
}

// TestS3CrashRecovery abandons writers of attempt 1 without closing them and
// restores from checkpoint 2, whose committables were pre-committed but not
// all committed.
func TestS3CrashRecovery(t *testing.T) {
	_, c := s3Env(t)
	dir := "s3://out/job"
	var logs []string
	logf := func(f string, args ...any) { logs = append(logs, fmt.Sprintf(f, args...)) }
	a0, err := Lines(dir, formatStr).NewWriter(ebbflow.SinkContext{Subtask: 0, Parallelism: 2, Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	a1, err := Lines(dir, formatStr).NewWriter(ebbflow.SinkContext{Subtask: 1, Parallelism: 2, Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	writeS(t, a0, "1", "2")
	writeS(t, a1, "10", "20")
	chk1 := append(preCommitS(t, a0, 1), preCommitS(t, a1, 1)...)
	if err := commitWait(a0, chk1[:1]); err != nil { // a1 crashes before its commit
		t.Fatal(err)
	}
	writeS(t, a0, "3")
	writeS(t, a1, "30")
	chk2 := append(preCommitS(t, a0, 2), preCommitS(t, a1, 2)...)
	// Checkpoint 2 completes, nobody commits, and garbage follows: a
	// pre-commit of checkpoint 3 that never completes and uploads in
	// progress.
	writeS(t, a1, "40")
	chk3 := preCommitS(t, a1, 3)
	writeS(t, a1, big(9, 'y')...)
	writeS(t, a0, big(9, 'z')...)
	leftovers := []string{"job/_staging/part-000001-0001-000003", "job/_staging/part-000001-0000-000002"}
	for _, k := range leftovers {
		if u := uploadsOf(t, c, "out", k); len(u) != 1 {
			t.Fatalf("setup: uploads of %s: %q", k, u)
		}
	}
	staged := keys(t, c, "out")
	if !slices.Contains(staged, "job/_staging/part-000001-0001-000002") || !slices.Contains(staged, "job/_staging/part-000001-0001-000001") {
		t.Fatalf("setup: stages %q", staged)
	}

	// Attempt 2: subtask 1 starts first and already has an upload going.
	b1 := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 1, Parallelism: 2, Attempt: 2, Restored: true})
	writeS(t, b1, big(9, 'w')...)
	all := slices.Concat(chk1, chk2) // a snapshot may repeat committed ones
	b0 := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 2, Attempt: 2, Restored: true, Committables: all, Logf: logf})
	if got := readS3(t, dir); !slices.Equal(got, []string{"1", "2", "3", "10", "20", "30"}) {
		t.Fatalf("committed after restore: %q", got)
	}
	for _, k := range leftovers {
		if u := uploadsOf(t, c, "out", k); len(u) != 0 {
			t.Errorf("leftover upload of %s not aborted", k)
		}
	}
	// The committed stages and the stage of the pre-commit of checkpoint 3
	// are gone; the final objects are all that is left of attempt 1.
	for _, k := range keys(t, c, "out") {
		if strings.Contains(k, "_staging/") {
			t.Errorf("stage %s left", k)
		}
	}
	if len(logs) != len(leftovers)+1 || !strings.Contains(strings.Join(logs, "\n"), "deleted leftover staged object s3://out/job/_staging/part-000001-0001-000002") {
		t.Errorf("logs: %q", logs)
	}
	if u := uploadsOf(t, c, "out", "job/_staging/part-000002-0001-000000"); len(u) != 1 {
		t.Errorf("upload of the current attempt aborted: %q", u)
	}
	// The pre-commit of checkpoint 3 was aborted: committing it now is an
	// error naming the object, never a silent loss.
	bx := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 1, Parallelism: 2, Attempt: 2, Restored: true})
	err = commitWait(bx, chk3)
	if err == nil || !strings.Contains(err.Error(), "s3://out/job/part-000001-0001-000002") || !strings.Contains(err.Error(), "output lost") {
		t.Fatalf("commit of an aborted upload: %v", err)
	}
	// The new attempt carries on.
	writeS(t, b0, "5")
	cs := append(preCommitS(t, b0, 3), preCommitS(t, b1, 3)...)
	if err := commitWait(b0, cs); err != nil {
		t.Fatal(err)
	}
	got := readS3(t, dir)
	if len(got) != 16 || !slices.Equal(got[:7], []string{"1", "2", "3", "10", "20", "30", "5"}) || got[7][0] != 'w' {
		t.Fatalf("committed: %d lines, first %q", len(got), got[:min(7, len(got))])
	}
	// Restoring checkpoint 2 again commits nothing twice.
	newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 3, Parallelism: 2, Restored: true, Committables: all})
	if n := len(readS3(t, dir)); n != 16 {
		t.Fatalf("after second restore: %d lines", n)
	}
}

func TestS3FreshStart(t *testing.T) {
	_, c := s3Env(t)
	dir := "s3://out/fresh"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	writeS(t, w, "old")
	if err := commitWait(w, preCommitS(t, w, 1)); err != nil {
		t.Fatal(err)
	}
	_, err := Lines(dir, formatStr).NewWriter(ebbflow.SinkContext{Attempt: 2, Parallelism: 1})
	if err == nil || !graph.IsUnrecoverable(err) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "already holds committed output") {
		t.Fatalf("fresh start on old output: %v", err)
	}
	// Another prefix of the bucket is fine, even one sharing the name's
	// beginning, and so is a restored job in the same prefix.
	newS3Writer(t, "s3://out/fresh2", ebbflow.SinkContext{Attempt: 2, Parallelism: 1})
	newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true})
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"fresh/part-000001-0000-000000"}) {
		t.Fatalf("keys: %q", k)
	}
}

// TestS3Conflict: two writers with the same attempt and subtask never
// overwrite each other's committed object.
func TestS3Conflict(t *testing.T) {
	s3Env(t)
	dir := "s3://out/conflict"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	v := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Subtask: 0, Parallelism: 1, Restored: true})
	writeS(t, w, "mine")
	writeS(t, v, big(9, 't')...) // a multipart upload
	cw := preCommitS(t, w, 1)
	_, err := v.PreCommit(1)
	if err == nil || !graph.IsUnrecoverable(err) || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "s3://out/conflict/_staging/part-000001-0000-000000") {
		t.Fatalf("conflicting pre-commit: %v", err)
	}
	if err := commitWait(w, cw); err != nil {
		t.Fatal(err)
	}
	if got := readS3(t, dir); !slices.Equal(got, []string{"mine"}) {
		t.Fatalf("committed: %q", got)
	}
	// A final object of another transaction is never overwritten either.
	u := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Subtask: 1, Parallelism: 2, Restored: true})
	writeS(t, u, "other")
	cu := preCommitS(t, u, 1)
	cm, err := decodeS3Committable(cu[0])
	if err != nil {
		t.Fatal(err)
	}
	cm.name = "part-000001-0000-000000"
	if err := commitWait(u, [][]byte{cm.encode()}); err == nil || !graph.IsUnrecoverable(err) || !strings.Contains(err.Error(), "another transaction") {
		t.Fatalf("commit over another transaction's object: %v", err)
	}
	if got := readS3(t, dir); !slices.Equal(got, []string{"mine"}) {
		t.Fatalf("committed: %q", got)
	}
}

func TestS3MissingStage(t *testing.T) {
	s3Env(t)
	dir := "s3://out/missing"
	for _, lost := range []s3Committable{
		{version: 3, name: "part-000001-0000-000007", txn: "t", etag: "e", size: 1},
		{version: 2, name: "part-000001-0000-000007", uploadID: "no-such-upload", parts: []minio.CompletePart{{PartNumber: 1, ETag: "x"}}},
	} {
		w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
		err := commitWait(w, [][]byte{lost.encode()})
		if err == nil || !strings.Contains(err.Error(), "s3://out/missing/part-000001-0000-000007") || !strings.Contains(err.Error(), "output lost") {
			t.Fatalf("commit of a lost v%d transaction: %v", lost.version, err)
		}
		if !graph.IsUnrecoverable(err) {
			t.Fatalf("lost output is not unrecoverable: %v", err)
		}
		// A failed batch is not dropped: it stays in the snapshots.
		if p := w.(ebbflow.SinkCommitWaiter).Publishing(); len(p) != 1 || string(p[0]) != string(lost.encode()) {
			t.Fatalf("publishing after the failure: %q", p)
		}
		if _, err := w.PreCommit(9); err == nil {
			t.Fatal("pre-commit after a failed commit succeeded")
		}
		if _, err := Lines(dir, formatStr).NewWriter(ebbflow.SinkContext{Attempt: 2, Restored: true, Committables: [][]byte{lost.encode()}}); err == nil {
			t.Fatalf("restore with a lost v%d transaction succeeded", lost.version)
		}
	}
}

// TestS3InterruptedCommit: a writer that dies after copying a stage but
// before deleting it, or whose stage was replaced, leaves nothing that
// commits twice or wrongly.
func TestS3InterruptedCommit(t *testing.T) {
	_, c := s3Env(t)
	ctx := context.Background()
	dir := "s3://out/interrupted"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	writeS(t, w, "a", "b")
	chk := preCommitS(t, w, 1)
	// The copy happened, the deletion of the stage did not.
	if _, err := c.CopyObject(ctx, minio.CopyDestOptions{Bucket: "out", Object: "interrupted/part-000001-0000-000000"},
		minio.CopySrcOptions{Bucket: "out", Object: "interrupted/_staging/part-000001-0000-000000"}); err != nil {
		t.Fatal(err)
	}
	newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true, Committables: chk})
	if got := readS3(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("committed: %q", got)
	}
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"interrupted/part-000001-0000-000000"}) {
		t.Fatalf("keys: %q", k)
	}

	// A stage replaced after its pre-commit (ETag changed) is not copied.
	w2 := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true})
	writeS(t, w2, "c")
	assertReplacedStageNotCommitted(t, c, w2, "interrupted/_staging/part-000002-0000-000000")
	if got := readS3(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("committed: %q", got)
	}
}

// TestS3FreshRunOverSameAttemptLeftovers: a run started afresh whose attempt
// numbers repeat those of the stages an abandoned run left writes past them.
func TestS3FreshRunOverSameAttemptLeftovers(t *testing.T) {
	_, c := s3Env(t)
	dir := "s3://out/again"
	old := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	writeS(t, old, "old")
	preCommitS(t, old, 1) // never committed
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	writeS(t, w, "new")
	chk := preCommitS(t, w, 1)
	if err := commitWait(w, chk); err != nil {
		t.Fatal(err)
	}
	if got := readS3(t, dir); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("committed: %q", got)
	}
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"again/_staging/part-000001-0000-000000", "again/part-000001-0000-000001"}) {
		t.Fatalf("keys: %q", k)
	}
	// The next attempt deletes the abandoned stage.
	newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true, Committables: chk})
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"again/part-000001-0000-000001"}) {
		t.Fatalf("keys: %q", k)
	}
}

func TestS3CommittableEncoding(t *testing.T) {
	v3 := s3Committable{version: 3, name: "part-000001-0002-000003", txn: "0123abcd-3", etag: "e1e1", size: 1 << 33}
	v2 := s3Committable{version: 2, name: "part-000001-0002-000003", uploadID: "abc-123", parts: []minio.CompletePart{{PartNumber: 1, ETag: `"e1"`}, {PartNumber: 2, ETag: `"e2"`}}}
	for _, c := range []s3Committable{v3, v2} {
		got, err := decodeS3Committable(c.encode())
		if err != nil || got.version != c.version || got.name != c.name || got.txn != c.txn || got.etag != c.etag || got.size != c.size ||
			got.uploadID != c.uploadID || !slices.Equal(got.parts, c.parts) {
			t.Fatalf("round trip: %+v %v", got, err)
		}
	}
	b3, b2 := v3.encode(), v2.encode()
	with := func(c s3Committable, f func(*s3Committable)) []byte { f(&c); return c.encode() }
	bad := [][]byte{nil, {1}, {2}, {3}, {4}, append(slices.Clone(b3), 0), b3[:len(b3)-1], append(slices.Clone(b2), 0), b2[:len(b2)-1],
		with(v3, func(c *s3Committable) { c.name = "../part-1" }),
		with(v3, func(c *s3Committable) { c.name = "_staging/part-1" }),
		with(v3, func(c *s3Committable) { c.txn = "" }),
		with(v3, func(c *s3Committable) { c.etag = "" }),
		with(v3, func(c *s3Committable) { c.size = 0 }),
		with(v2, func(c *s3Committable) { c.name = "../part-1" }),
		with(v2, func(c *s3Committable) { c.uploadID = "" }),
		with(v2, func(c *s3Committable) { c.parts = nil }),
		with(v2, func(c *s3Committable) { c.parts = []minio.CompletePart{{PartNumber: 2, ETag: "x"}} }),
		committable{inProgress: ".part-1-0-0.inprogress", final: "part-000001-0000-000000"}.encode(),
	}
	for _, x := range bad {
		if _, err := decodeS3Committable(x); err == nil {
			t.Errorf("committable %q accepted", x)
		}
	}
}

func TestS3Settings(t *testing.T) {
	m, _ := s3Env(t)
	// Check creates the bucket when allowed.
	if err := Check("s3://made/x"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envS3CreateBucket, "false")
	if err := Check("s3://made/y"); err != nil {
		t.Fatal(err)
	}
	err := Check("s3://absent/x")
	if err == nil || !strings.Contains(err.Error(), envS3CreateBucket) || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("missing bucket: %v", err)
	}

	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(m.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envS3SecretKey, "")
	t.Setenv(envS3SecretKeyFile, secretFile)
	if err := Check("s3://made"); err != nil {
		t.Fatalf("secret from a file: %v", err)
	}

	wrong := "wrong-secret-" + m.SecretKey
	for _, tc := range []struct {
		name, dir string
		env       map[string]string
		want      string
	}{
		{"no endpoint", "s3://made", map[string]string{envS3Endpoint: ""}, envS3Endpoint},
		{"scheme in endpoint", "s3://made", map[string]string{envS3Endpoint: "http://" + m.Endpoint}, envS3TLS},
		{"no access key", "s3://made", map[string]string{envS3AccessKey: ""}, envS3AccessKey},
		{"both secrets", "s3://made", map[string]string{envS3SecretKey: wrong}, envS3SecretKeyFile},
		{"bad tls", "s3://made", map[string]string{envS3TLS: "maybe"}, envS3TLS},
		{"bad bucket", "s3://A_b", nil, "bucket"},
		{"credentials in URL", "s3://user:" + wrong + "@made", nil, "credentials do not belong"},
		{"wrong secret", "s3://made", map[string]string{envS3SecretKeyFile: "", envS3SecretKey: wrong}, "credentials refused by " + m.Endpoint},
		{"tls to plain", "s3://made", map[string]string{envS3TLS: "true"}, "does not speak TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := Check(tc.dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want an error naming %q", err, tc.want)
			}
			_, werr := Lines(tc.dir, formatStr).NewWriter(ebbflow.SinkContext{Attempt: 1, Restored: true})
			_, rerr := ReadCommitted(tc.dir)
			for _, e := range []error{err, werr, rerr} {
				if e == nil {
					t.Fatal("no error")
				}
				if s := fmt.Sprintf("%v %+v %#v", e, e, e); strings.Contains(s, m.SecretKey) {
					t.Fatalf("error holds the secret: %s", s)
				}
			}
		})
	}
}

func TestS3ReadCommitted(t *testing.T) {
	_, c := s3Env(t)
	dir := "s3://out/read"
	var chk [][]byte
	for st := 2; st >= 0; st-- {
		w := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: st, Parallelism: 3, Attempt: 1})
		for tx := 0; tx < 2; tx++ {
			writeS(t, w, fmt.Sprintf("%d.%d.a", st, tx), fmt.Sprintf("%d.%d.b", st, tx))
			chk = append(chk, preCommitS(t, w, int64(tx))...)
		}
	}
	w := newS3Writer(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 3, Attempt: 1, Restored: true})
	if err := commitWait(w, chk); err != nil {
		t.Fatal(err)
	}
	// Objects that are not direct part objects of the prefix are ignored.
	for _, k := range []string{"read/other.txt", "read/sub/part-000001-0000-000000", "readx/part-000001-0000-000000"} {
		if _, err := c.PutObject(context.Background(), "out", k, strings.NewReader("junk\n"), 5, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for st := 0; st < 3; st++ {
		for tx := 0; tx < 2; tx++ {
			want = append(want, fmt.Sprintf("%d.%d.a", st, tx), fmt.Sprintf("%d.%d.b", st, tx))
		}
	}
	if got := readS3(t, dir); !slices.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// syncLog collects a writer's log lines from any goroutine.
type syncLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *syncLog) logf(f string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, args...))
}

func (l *syncLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(line string) bool { return strings.Contains(line, s) })
}

// TestS3Outage: while the store is down, a commit is retried in the
// background, a pre-commit declines its checkpoint and keeps the
// transaction, and full parts stay in memory; once it is back, everything
// goes through without the writer failing.
func TestS3Outage(t *testing.T) {
	m, _ := s3Env(t)
	dir := "s3://out/outage"
	log := &syncLog{}
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1, Subtask: 1, Logf: log.logf})
	writeS(t, w, "x")
	c1 := preCommitS(t, w, 1)
	m.Stop()
	if err := w.Commit(c1); err != nil {
		t.Fatalf("commit during an outage: %v", err)
	}
	// Until it is published, the committable is reported for the snapshots.
	if p := w.(ebbflow.SinkCommitWaiter).Publishing(); len(p) != 1 || string(p[0]) != string(c1[0]) {
		t.Fatalf("publishing during the outage: %q", p)
	}
	// The background publisher fails and says it tries again.
	for deadline := time.Now().Add(time.Minute); !log.has("trying again"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged: %q", log.lines)
		}
	}
	if !log.has("s3://out/outage/part-000001-0001-000000") || !log.has("unreachable") {
		t.Fatalf("retry log: %q", log.lines)
	}
	// A pre-commit declines; the transaction stays open.
	writeS(t, w, "y")
	_, err := w.PreCommit(2)
	if err == nil || !graph.IsDecline(err) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("pre-commit during an outage: %v", err)
	}
	// Parts that cannot go up stay buffered.
	writeS(t, w, big(9, 'z')...)
	if !log.has("keeping 8 MiB of the transaction in memory") {
		t.Fatalf("part failure not logged: %q", log.lines)
	}
	m.Start(t)
	// MinIO's ready endpoint may answer before it serves requests: the
	// pre-commit declines until it does.
	var c3 [][]byte
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		c3, err = w.PreCommit(3)
		if err == nil || !graph.IsDecline(err) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := commitWait(w, c3); err != nil {
		t.Fatal(err)
	}
	if p := w.(ebbflow.SinkCommitWaiter).Publishing(); len(p) != 0 {
		t.Fatalf("publishing after it all went through: %q", p)
	}
	got := readS3(t, dir)
	if len(got) != 11 || got[0] != "x" || got[1] != "y" || got[2][0] != 'z' {
		t.Fatalf("committed %d lines: %.10q", len(got), got)
	}
}

// TestS3StageAnswerLost: a stage write that succeeded although its answer
// was lost is this transaction's and is taken as written; an earlier,
// shorter one of the same transaction (a declined pre-commit) is replaced.
func TestS3StageAnswerLost(t *testing.T) {
	_, c := s3Env(t)
	ctx := context.Background()
	dir := "s3://out/lost"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	sw := w.(*s3Writer[string])
	stageKey := "lost/_staging/part-000001-0000-000000"
	put := func(body string) {
		t.Helper()
		if _, err := c.PutObject(ctx, "out", stageKey, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{UserMetadata: map[string]string{txnMetaKey: sw.txn()}}); err != nil {
			t.Fatal(err)
		}
	}
	writeS(t, w, "a")
	put("a\n") // as if the PUT had gone through
	if err := commitWait(w, preCommitS(t, w, 1)); err != nil {
		t.Fatal(err)
	}
	writeS(t, w, "b", "c")
	put("b\n") // a shorter write of this transaction
	if err := commitWait(w, preCommitS(t, w, 2)); err != nil {
		t.Fatal(err)
	}
	if got := readS3(t, dir); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("committed: %q", got)
	}
}

// TestS3InterruptedAnywhere interrupts the completion of a stage and the
// commit after every few milliseconds: whatever point the writer died at,
// the next attempt restoring the checkpoint commits the transaction whole,
// exactly once, and one restoring an earlier checkpoint leaves nothing
// visible. (Completing the final object's multipart upload in the commit,
// as earlier versions did, lost the transaction on MinIO when interrupted
// about 2 ms in.)
func TestS3InterruptedAnywhere(t *testing.T) {
	_, c := s3Env(t)
	lines := append(big(11, 'q'), "end")
	for d := time.Duration(0); d <= 40*time.Millisecond; d += 2 * time.Millisecond {
		dir := fmt.Sprintf("s3://out/cut-%02d", d.Milliseconds())
		w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
		sw := w.(*s3Writer[string])
		writeS(t, w, lines...)
		// The stage's completion, cut short.
		sw.opCtx = func(p context.Context) (context.Context, context.CancelFunc) { return context.WithTimeout(p, d) }
		chk, err := w.PreCommit(1)
		if err != nil {
			// The checkpoint failed: the job restores an earlier one,
			// which holds nothing of this transaction.
			newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true})
			if got := readS3(t, dir); len(got) != 0 {
				t.Fatalf("%v: pre-commit failed (%v), yet %d lines are visible", d, err, len(got))
			}
			for _, k := range keys(t, c, "out") {
				if strings.HasPrefix(k, fmt.Sprintf("cut-%02d/", d.Milliseconds())) {
					t.Errorf("%v: left %s", d, k)
				}
			}
			t.Logf("%v: pre-commit: %v", d, err)
			continue
		}
		// The commit, cut short; the writer dies as soon as its first try
		// failed (the publisher would try again).
		log := &syncLog{}
		sw.logf = log.logf
		if err := w.Commit(chk); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- w.(ebbflow.SinkCommitWaiter).WaitCommitted() }()
		var cerr error
	wait:
		for {
			select {
			case cerr = <-waited:
				break wait
			case <-time.After(time.Millisecond):
				if log.has("trying again") {
					sw.bg.cancel()
					log.mu.Lock()
					cerr = errors.New("cut: " + log.lines[0])
					log.mu.Unlock()
					<-waited
					break wait
				}
			}
		}
		sw.opCtx = opContextOf
		newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true, Committables: chk})
		got := readS3(t, dir)
		if !slices.Equal(got, lines) {
			t.Fatalf("%v: commit (%v), then restore: %d lines, want %d", d, cerr, len(got), len(lines))
		}
		t.Logf("%v: commit: %v", d, cerr)
	}
}

// TestS3ComposedCommit commits stages too large for one CopyObject the way
// a stage above 5 GiB is: copied part by part (here with the limit
// lowered), pinned to the pre-committed stage.
func TestS3ComposedCommit(t *testing.T) {
	_, c := s3Env(t)
	defer func(n int64) { maxCopySize = n }(maxCopySize)
	maxCopySize = 1 << 20
	dir := "s3://out/composed"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	lines := append(big(12, 'c'), "end")
	writeS(t, w, lines...)
	chk := preCommitS(t, w, 1)
	if err := commitWait(w, chk); err != nil {
		t.Fatal(err)
	}
	if got := readS3(t, dir); !slices.Equal(got, lines) {
		t.Fatalf("committed %d lines, want %d", len(got), len(lines))
	}
	info, err := c.StatObject(context.Background(), "out", "composed/part-000001-0000-000000", minio.StatObjectOptions{})
	if err != nil || info.UserMetadata[txnMetaKey] == "" {
		t.Fatalf("final object: %v, metadata %q", err, info.UserMetadata)
	}
	// Committed again (a restore): nothing changes.
	newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true, Committables: chk})
	if k := keys(t, c, "out"); !slices.Equal(k, []string{"composed/part-000001-0000-000000"}) {
		t.Fatalf("keys: %q", k)
	}
	// A replaced stage is not composed.
	w2 := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 2, Parallelism: 1, Restored: true})
	writeS(t, w2, big(6, 'd')...)
	assertReplacedStageNotCommitted(t, c, w2, "composed/_staging/part-000002-0000-000000")
}

// TestS3CompletionUnanswered: a multipart completion that got no answer
// (here: cut before it was sent) declines its checkpoint; parts written
// meanwhile stay in memory, and the next pre-commit settles the completion
// first and stages the newer records as a transaction of their own.
func TestS3CompletionUnanswered(t *testing.T) {
	s3Env(t)
	dir := "s3://out/unanswered"
	w := newS3Writer(t, dir, ebbflow.SinkContext{Attempt: 1, Parallelism: 1})
	sw := w.(*s3Writer[string])
	first := append(big(9, 'f'), "first end")
	writeS(t, w, first...)
	sw.opCtx = func(p context.Context) (context.Context, context.CancelFunc) { return context.WithTimeout(p, 0) }
	_, err := w.PreCommit(1)
	if err == nil || !graph.IsDecline(err) || !sw.completing {
		t.Fatalf("pre-commit with its completion cut: %v (completing %v)", err, sw.completing)
	}
	sw.opCtx = opContextOf
	second := append(big(9, 's'), "second end")
	writeS(t, w, second...) // more than a part: held back, not uploaded
	if len(sw.parts) != 2 || len(sw.buf) < 9<<20 {
		t.Fatalf("parts %d, buffered %d", len(sw.parts), len(sw.buf))
	}
	chk := preCommitS(t, w, 2)
	if len(chk) != 2 {
		t.Fatalf("committables: %d, want the settled one and the newer one", len(chk))
	}
	if err := commitWait(w, chk); err != nil {
		t.Fatal(err)
	}
	if got := readS3(t, dir); !slices.Equal(got, slices.Concat(first, second)) {
		t.Fatalf("committed %d lines, want %d", len(got), len(first)+len(second))
	}
}

// assertReplacedStageNotCommitted pre-commits w's transaction, replaces its
// stage (key, in bucket "out") by another object, and checks that the
// commit refuses it as lost output.
func assertReplacedStageNotCommitted(t *testing.T, c *minio.Client, w ebbflow.SinkWriter[string], key string) {
	t.Helper()
	chk := preCommitS(t, w, 2)
	if _, err := c.PutObject(context.Background(), "out", key, strings.NewReader("forged\n"), 7, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := commitWait(w, chk); err == nil || !strings.Contains(err.Error(), "output lost") {
		t.Fatalf("commit of a replaced stage: %v", err)
	}
}
