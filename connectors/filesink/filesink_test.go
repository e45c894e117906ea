package filesink

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ebbflow/ebbflow"
)

func formatInt(dst []byte, v int) []byte { return strconv.AppendInt(dst, int64(v), 10) }

func newWriter(t *testing.T, dir string, ctx ebbflow.SinkContext) ebbflow.SinkWriter[int] {
	t.Helper()
	w, err := Lines(dir, formatInt).NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func write(t *testing.T, w ebbflow.SinkWriter[int], vs ...int) {
	t.Helper()
	for _, v := range vs {
		if err := w.Write(v); err != nil {
			t.Fatal(err)
		}
	}
}

func preCommit(t *testing.T, w ebbflow.SinkWriter[int], chk int64) [][]byte {
	t.Helper()
	c, err := w.PreCommit(chk)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func committed(t *testing.T, dir string) []string {
	t.Helper()
	lines, err := ReadCommitted(dir)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestTwoPhaseVisibility(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "nested") // created by NewWriter
	w := newWriter(t, dir, ebbflow.SinkContext{Subtask: 3, Parallelism: 4, Attempt: 7})
	if got := preCommit(t, w, 1); got != nil {
		t.Fatalf("empty transaction has committables %q", got)
	}
	if n := names(t, dir); len(n) != 0 {
		t.Fatalf("files before the first record: %q", n)
	}
	write(t, w, 1, 2, 3)
	if n := names(t, dir); !slices.Equal(n, []string{".part-7-3-0.inprogress"}) {
		t.Fatalf("files: %q", n)
	}
	c1 := preCommit(t, w, 2)
	if len(c1) != 1 {
		t.Fatalf("%d committables, want 1", len(c1))
	}
	write(t, w, 4)
	if got := committed(t, dir); len(got) != 0 {
		t.Fatalf("visible before commit: %q", got)
	}
	c2 := preCommit(t, w, 3)
	if err := w.Commit(c1); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, dir); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("after commit 2: %q", got)
	}
	// Idempotent, also in one call with new committables.
	if err := w.Commit(append(c1, c2...)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(c1); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, dir); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("after commit 3: %q", got)
	}
	if n := names(t, dir); !slices.Equal(n, []string{"part-000007-0003-000000", "part-000007-0003-000001"}) {
		t.Fatalf("files: %q", n)
	}
	// Close aborts the open transaction and keeps pre-committed files.
	write(t, w, 5)
	c3 := preCommit(t, w, 4)
	write(t, w, 6)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := names(t, dir); !slices.Equal(n, []string{".part-7-3-2.inprogress", "part-000007-0003-000000", "part-000007-0003-000001"}) {
		t.Fatalf("files after close: %q", n)
	}
	if err := w.Commit(c3); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, dir); !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
		t.Fatalf("after commit 4: %q", got)
	}
}

// TestCrashRecovery abandons writers of attempt 1 without closing them and
// restores from checkpoint 2, whose committables were pre-committed but not
// all committed.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	a0 := newWriter(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 2, Attempt: 1})
	a1 := newWriter(t, dir, ebbflow.SinkContext{Subtask: 1, Parallelism: 2, Attempt: 1})
	write(t, a0, 1, 2)
	write(t, a1, 10, 20)
	chk1 := append(preCommit(t, a0, 1), preCommit(t, a1, 1)...)
	if err := a0.Commit(chk1[:1]); err != nil { // a1 crashes before its commit
		t.Fatal(err)
	}
	write(t, a0, 3)
	write(t, a1, 30)
	chk2 := append(preCommit(t, a0, 2), preCommit(t, a1, 2)...)
	// Checkpoint 2 completes, nobody commits, and garbage follows: a
	// pre-commit of checkpoint 3 that never completes and open files.
	write(t, a0, 4)
	write(t, a1, 40)
	preCommit(t, a1, 3)
	write(t, a1, 50)

	// Attempt 2: subtask 1 starts first and already writes.
	b1 := newWriter(t, dir, ebbflow.SinkContext{Subtask: 1, Parallelism: 2, Attempt: 2, Restored: true})
	write(t, b1, 31)
	all := slices.Concat(chk1, chk2) // a snapshot may repeat committed ones
	b0 := newWriter(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 2, Attempt: 2, Restored: true, Committables: all})
	if got := committed(t, dir); !slices.Equal(got, []string{"1", "2", "3", "10", "20", "30"}) {
		t.Fatalf("committed after restore: %q", got)
	}
	for _, n := range names(t, dir) {
		if strings.HasPrefix(n, ".part-1-") {
			t.Errorf("leftover %s not removed", n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".part-2-1-0.inprogress")); err != nil {
		t.Errorf("file of the current attempt removed: %v", err)
	}
	// The new attempt carries on.
	write(t, b0, 5)
	c := append(preCommit(t, b0, 3), preCommit(t, b1, 3)...)
	if err := b0.Commit(c); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, dir); !slices.Equal(got, []string{"1", "2", "3", "10", "20", "30", "5", "31"}) {
		t.Fatalf("committed: %q", got)
	}
	// Restoring checkpoint 2 again (say attempt 2 crashed before checkpoint
	// 3 completed) commits nothing twice.
	if _, err := Lines(dir, formatInt).NewWriter(ebbflow.SinkContext{Attempt: 3, Restored: true, Committables: all}); err != nil {
		t.Fatal(err)
	}
}

func TestFreshStart(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".part-1-0-0.inprogress", ".part-4-2-0.inprogress", ".part-5-0-0.inprogress", "notes.txt", ".part-x"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := newWriter(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 1, Attempt: 5})
	if n := names(t, dir); !slices.Equal(n, []string{".part-5-0-0.inprogress", ".part-x", "notes.txt"}) {
		t.Fatalf("files after fresh start: %q", n)
	}
	w.Close()

	if err := os.WriteFile(filepath.Join(dir, "part-000001-0000-000000"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Lines(dir, formatInt).NewWriter(ebbflow.SinkContext{Subtask: 0, Parallelism: 1, Attempt: 6})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "already holds committed output") {
		t.Fatalf("fresh start on old output: %v", err)
	}
	// A restored job continues in the same folder.
	if _, err := Lines(dir, formatInt).NewWriter(ebbflow.SinkContext{Subtask: 0, Parallelism: 1, Attempt: 6, Restored: true}); err != nil {
		t.Fatal(err)
	}
}

func TestMissingFiles(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, dir, ebbflow.SinkContext{Attempt: 1})
	write(t, w, 1)
	c := preCommit(t, w, 1)
	os.Remove(filepath.Join(dir, ".part-1-0-0.inprogress"))
	err := w.Commit(c)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ".part-1-0-0.inprogress")) {
		t.Fatalf("commit of a lost file: %v", err)
	}
	// The same on restore.
	if _, err := Lines(dir, formatInt).NewWriter(ebbflow.SinkContext{Attempt: 2, Restored: true, Committables: c}); err == nil {
		t.Fatal("restore with a lost file succeeded")
	}
	for _, bad := range [][]byte{nil, {2}, {1, 3, 'a'}, committable{inProgress: "../x", final: "y"}.encode(), append(c[0], 0)} {
		if err := w.Commit([][]byte{bad}); err == nil {
			t.Errorf("committable %q accepted", bad)
		}
	}
}

func TestCommittableEncoding(t *testing.T) {
	c := committable{inProgress: ".part-1-2-3.inprogress", final: "part-000001-0002-000003"}
	got, err := decodeCommittable(c.encode())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

func TestCheck(t *testing.T) {
	base := t.TempDir()
	if err := Check(filepath.Join(base, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if n := names(t, filepath.Join(base, "a", "b")); len(n) != 0 {
		t.Fatalf("Check left files: %q", n)
	}
	f := filepath.Join(base, "file")
	os.WriteFile(f, nil, 0o644)
	for _, d := range []string{f, filepath.Join(f, "sub")} {
		if err := Check(d); err == nil || !strings.Contains(err.Error(), d) {
			t.Errorf("Check(%s) = %v, want an error naming it", d, err)
		}
		if _, err := Lines(d, formatInt).NewWriter(ebbflow.SinkContext{}); err == nil || !strings.Contains(err.Error(), d) {
			t.Errorf("NewWriter in %s: %v", d, err)
		}
	}
	if os.Geteuid() != 0 { // root writes everywhere
		ro := filepath.Join(base, "ro")
		os.Mkdir(ro, 0o555)
		if err := Check(ro); err == nil || !strings.Contains(err.Error(), ro) {
			t.Errorf("Check of read-only folder: %v", err)
		}
	}
}

func TestReadCommitted(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"part-000002-0000-000000": "c\n\nd\n",
		"part-000001-0001-000000": "b\n",
		"part-000001-0000-000000": "a\n",
		".part-3-0-0.inprogress":  "hidden\n",
		"other":                   "no\n",
	}
	for n, c := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
	}
	if got := committed(t, dir); !slices.Equal(got, []string{"a", "b", "c", "", "d"}) {
		t.Fatalf("got %q", got)
	}
	if _, err := ReadCommitted(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing folder read")
	}
}

// A job started over from nothing (ebbflow local --fresh) reuses attempt
// numbers; in-progress leftovers of the earlier run with the same attempt
// and subtask must not fail the writer, and must not be committed.
func TestFreshRunOverSameAttemptLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".part-1-0-0.inprogress", ".part-1-0-1.inprogress"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("999\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := newWriter(t, dir, ebbflow.SinkContext{Subtask: 0, Parallelism: 1, Attempt: 1})
	write(t, w, 1, 2)
	c := preCommit(t, w, 1)
	if err := w.Commit(c); err != nil {
		t.Fatal(err)
	}
	write(t, w, 3)
	c = preCommit(t, w, 2)
	if err := w.Commit(c); err != nil {
		t.Fatal(err)
	}
	if got := committed(t, dir); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("committed %q, want 1 2 3 (leftovers must not be committed)", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
