package filesource

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ebbflow/ebbflow"
)

// naiveLines reads the file's lines the simple way.
func naiveLines(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if s == "" {
			continue
		}
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		for _, l := range lines {
			out = append(out, strings.TrimSuffix(l, "\r"))
		}
	}
	return out
}

// contents are the test files: varied line lengths, empty lines, missing
// trailing newline, CRLF, lines longer than the read buffer.
func contents() map[string]string {
	rng := rand.New(rand.NewPCG(1, 2))
	var varied strings.Builder
	for i := range 200 {
		n := rng.IntN(120)
		if i%97 == 0 {
			n = 0
		}
		fmt.Fprintf(&varied, "%d:%s\n", i, strings.Repeat("x", n))
	}
	var crlf strings.Builder
	for i := range 100 {
		fmt.Fprintf(&crlf, "crlf %d %s\r\n", i, strings.Repeat("y", rng.IntN(30)))
	}
	return map[string]string{
		"varied":     varied.String(),
		"crlf":       crlf.String(),
		"notrailing": "first\nsecond\n\nlast without newline",
		"empties":    "\n\n\n\n",
		"one":        "x",
		"crlast":     "a\r\nb\r",
		"longish":    "short\n" + strings.Repeat("L", 3000) + "\nafter\n" + strings.Repeat("M", 2000),
		"empty":      "",
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// subtaskSplits returns the splits a subtask takes out of all.
func subtaskSplits(all [][]byte, subtask, parallelism int) [][]byte {
	var out [][]byte
	for j, s := range all {
		if j%parallelism == subtask {
			out = append(out, s)
		}
	}
	return out
}

// drain polls r until EndOfInput, with poll sizes from rng.
func drain(t *testing.T, r ebbflow.SourceReader[string], rng *rand.Rand) []string {
	t.Helper()
	var got []string
	out := ebbflow.CollectorFunc[string](func(v string) { got = append(got, v) })
	for i := 0; ; i++ {
		st, err := r.Poll(out, 1+rng.IntN(50))
		if err != nil {
			t.Fatal(err)
		}
		if st == ebbflow.EndOfInput {
			break
		}
		if st != ebbflow.MoreAvailable {
			t.Fatalf("status %v", st)
		}
		if i > 1e6 {
			t.Fatal("no end")
		}
	}
	return got
}

func TestLinesEveryLineOnce(t *testing.T) {
	dir := t.TempDir()
	for name, c := range contents() {
		writeFile(t, dir, name, c)
	}
	for name := range contents() {
		path := filepath.Join(dir, name)
		want := naiveLines(t, path)
		for _, size := range []int64{1, 2, 7, 40, 121, 4096, 1 << 40, 0} {
			opts := []Option{WithSplitSize(size)}
			if size == 0 {
				opts = nil // the default
			}
			src := Lines(path, opts...)
			splits, err := src.Splits()
			if err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(path); fi.Size() == 0 && len(splits) != 0 {
				t.Fatalf("%s: empty file has %d splits", name, len(splits))
			}
			for _, par := range []int{1, 2, 3} {
				rng := rand.New(rand.NewPCG(uint64(size), uint64(par)))
				var got []string
				for sub := range par {
					r, err := src.NewReader(ebbflow.SourceContext{Subtask: sub, Parallelism: par}, subtaskSplits(splits, sub, par))
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, drain(t, r, rng)...)
					if err := r.Close(); err != nil {
						t.Fatal(err)
					}
				}
				if par == 1 {
					if !slices.Equal(got, want) {
						t.Fatalf("%s split size %d: lines differ from file order (got %d, want %d)", name, size, len(got), len(want))
					}
				} else if !slices.Equal(sorted(got), sorted(want)) {
					t.Fatalf("%s split size %d parallelism %d: got %d lines, want %d", name, size, par, len(got), len(want))
				}
			}
		}
	}
}

// TestLongLines reads lines longer than the read buffer.
func TestLongLines(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "long", "short\n"+strings.Repeat("L", 600<<10)+"\r\nafter\n\n"+
		strings.Repeat("M", 300<<10)+"\n"+strings.Repeat("N", 257<<10))
	want := naiveLines(t, p)
	for _, size := range []int64{100 << 10, 256 << 10, 1 << 20, 0} {
		opts := []Option{WithSplitSize(size)}
		if size == 0 {
			opts = nil
		}
		src := Lines(p, opts...)
		splits, err := src.Splits()
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		for _, par := range []int{1, 2} {
			var got []string
			for sub := range par {
				r, _ := src.NewReader(ebbflow.SourceContext{Subtask: sub, Parallelism: par}, subtaskSplits(splits, sub, par))
				got = append(got, drain(t, r, rng)...)
				r.Close()
			}
			if !slices.Equal(sorted(got), sorted(want)) {
				t.Fatalf("split size %d parallelism %d: got %d lines, want %d", size, par, len(got), len(want))
			}
		}
		// Restore in the middle of the file.
		states := restoreAt(t, src, 2)
		r, _ := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, states)
		if got := drain(t, r, rng); !slices.Equal(sorted(got), sorted(want[2:])) {
			t.Fatalf("split size %d: restored reader got %d lines, want %d", size, len(got), len(want)-2)
		}
		r.Close()
	}
}

func TestFolder(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.txt", "b1\nb2\n")
	writeFile(t, dir, "a.txt", "a1\na2")
	writeFile(t, dir, "c.txt", "")
	writeFile(t, dir, ".hidden", "no\n")
	writeFile(t, dir, "_SUCCESS", "no\n")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub"), "d.txt", "no\n")
	if err := os.Symlink(filepath.Join(dir, "b.txt"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	src := Lines(dir, WithSplitSize(3))
	splits, err := src.Splits()
	if err != nil {
		t.Fatal(err)
	}
	r, err := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, splits)
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, r, rand.New(rand.NewPCG(3, 3)))
	want := []string{"a1", "a2", "b1", "b2", "b1", "b2"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := Check(dir); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotRestore stops readers at random points, snapshots them and
// restores the states on a different number of readers, several times.
func TestSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for name, c := range contents() {
		paths = append(paths, writeFile(t, dir, name, c))
	}
	slices.Sort(paths)
	want := sorted(naiveLines(t, paths...))
	for trial := range 30 {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		size := []int64{1, 7, 50, 1000, 1 << 20}[trial%5]
		src := Lines(dir, WithSplitSize(size))
		states, err := src.Splits()
		if err != nil {
			t.Fatal(err)
		}
		total := len(states)
		var got []string
		par := 2
		for round := 0; ; round++ {
			// Subtask i gets states j with j mod par == i, as on restore.
			readers := make([]ebbflow.SourceReader[string], par)
			ended := make([]bool, par)
			for i := range par {
				readers[i], err = src.NewReader(ebbflow.SourceContext{Subtask: i, Parallelism: par}, subtaskSplits(states, i, par))
				if err != nil {
					t.Fatal(err)
				}
			}
			polls := rng.IntN(40)
			if round > 8 {
				polls = 1 << 30 // finish
			}
			for p := 0; p < polls; p++ {
				i := rng.IntN(par)
				st, err := readers[i].Poll(ebbflow.CollectorFunc[string](func(v string) { got = append(got, v) }), 1+rng.IntN(30))
				if err != nil {
					t.Fatal(err)
				}
				ended[i] = st == ebbflow.EndOfInput
				if !slices.Contains(ended, false) {
					break
				}
			}
			states = nil
			for _, r := range readers {
				s, err := r.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				states = append(states, s...)
			}
			// Lines emitted after the snapshot are lost with the crash.
			var after []string
			for _, r := range readers {
				r.Poll(ebbflow.CollectorFunc[string](func(v string) { after = append(after, v) }), 5)
				r.Close()
			}
			if len(states) != total {
				t.Fatalf("snapshot has %d splits, want %d", len(states), total)
			}
			if !slices.Contains(ended, false) {
				break
			}
			par = 1 + rng.IntN(4)
		}
		if g := sorted(got); !slices.Equal(g, want) {
			t.Fatalf("trial %d (split size %d): got %d lines, want %d", trial, size, len(g), len(want))
		}
	}
}

func TestEndOfInputRepeats(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "f", "a\nb\n")
	src := Lines(p, WithSplitSize(1))
	splits, _ := src.Splits()
	r, _ := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, splits)
	var got []string
	out := ebbflow.CollectorFunc[string](func(v string) { got = append(got, v) })
	if st, err := r.Poll(out, 1); err != nil || st != ebbflow.MoreAvailable || len(got) != 1 {
		t.Fatalf("first poll: %v %v %q", st, err, got)
	}
	for range 3 {
		if st, err := r.Poll(out, 10); err != nil || st != ebbflow.EndOfInput {
			t.Fatalf("poll: %v %v", st, err)
		}
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("got %q", got)
	}
	states, _ := r.Snapshot()
	if len(states) != len(splits) {
		t.Fatalf("snapshot has %d splits, want %d (finished ones included)", len(states), len(splits))
	}
	for _, b := range states {
		s, err := decodeSplit(b)
		if err != nil || !s.done() {
			t.Fatalf("split %+v not finished (%v)", s, err)
		}
	}
	// A reader of finished splits ends at once, even if the file is gone.
	os.Remove(p)
	r2, err := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, states)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := r2.Poll(out, 10); err != nil || st != ebbflow.EndOfInput {
		t.Fatalf("restored poll: %v %v", st, err)
	}
	r3, _ := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, nil)
	if st, err := r3.Poll(out, 10); err != nil || st != ebbflow.EndOfInput {
		t.Fatalf("reader without splits: %v %v", st, err)
	}
}

func TestStateEncoding(t *testing.T) {
	s := split{path: "/some/path", start: 5, end: 1 << 40, pos: 77}
	got, err := decodeSplit(s.encode())
	if err != nil || got != s {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	enc := s.encode()
	for _, bad := range [][]byte{nil, {2}, enc[:len(enc)-1], append(slices.Clone(enc), 0),
		split{path: "p", start: 5, end: 3, pos: 5}.encode(), split{path: "p", start: 5, end: 9, pos: 4}.encode()} {
		if _, err := decodeSplit(bad); err == nil {
			t.Errorf("decodeSplit(%v) succeeded", bad)
		}
	}
	if _, err := Lines("x").NewReader(ebbflow.SourceContext{}, [][]byte{{9}}); err == nil {
		t.Error("NewReader accepted a bad state")
	}
}

// restoreAt reads f with one split until n lines are read, then returns
// the snapshot.
func restoreAt(t *testing.T, src ebbflow.SourceConnector[string], n int) [][]byte {
	t.Helper()
	splits, err := src.Splits()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, splits)
	defer r.Close()
	if _, err := r.Poll(ebbflow.CollectorFunc[string](func(string) {}), n); err != nil {
		t.Fatal(err)
	}
	states, _ := r.Snapshot()
	return states
}

func TestChangedFile(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "f.txt", "aaaa\nbbbb\ncccc\ndddd\n")
	src := Lines(p)
	poll := func(states [][]byte) error {
		r, err := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, states)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = r.Poll(ebbflow.CollectorFunc[string](func(string) {}), 10)
		return err
	}
	states := restoreAt(t, src, 2) // pos 10
	// Shrunk below the split's end.
	writeFile(t, dir, "f.txt", "aaaa\nbbbb\ncc")
	if err := poll(states); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "10") {
		t.Fatalf("shrunk file: %v", err)
	}
	// Same size, but no line boundary at the position.
	writeFile(t, dir, "f.txt", "aaaaaaaaaaaaaaaaaaa\n")
	if err := poll(states); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "offset 10") {
		t.Fatalf("changed file: %v", err)
	}
	// Gone.
	os.Remove(p)
	if err := poll(states); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("removed file: %v", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "missing"), dir} {
		if err := Check(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Check(%s) = %v, want an error naming it", p, err)
		}
		if _, err := Lines(p).Splits(); p != dir && (err == nil || !strings.Contains(err.Error(), p)) {
			t.Errorf("Splits of %s: %v", p, err)
		}
	}
	writeFile(t, dir, ".hidden", "x\n")
	if err := Check(dir); err == nil {
		t.Error("Check accepted a folder with only hidden files")
	}
	f := writeFile(t, dir, "f", "x\n")
	if err := Check(f); err != nil {
		t.Error(err)
	}
	if err := Check(dir); err != nil {
		t.Error(err)
	}
	if _, err := Lines(f, WithSplitSize(0)).Splits(); err == nil {
		t.Error("split size 0 accepted")
	}
	if os.Geteuid() != 0 { // root reads everything
		os.Chmod(f, 0)
		if err := Check(f); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Check of unreadable file: %v", err)
		}
		if err := Check(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("Check of folder without readable files: %v", err)
		}
	}
}

func BenchmarkPoll(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "f")
	line := strings.Repeat("z", 60) + "\n"
	if err := os.WriteFile(p, []byte(strings.Repeat(line, 100000)), 0o644); err != nil {
		b.Fatal(err)
	}
	src := Lines(p)
	splits, _ := src.Splits()
	b.SetBytes(int64(len(line)) * 100000)
	n := 0
	out := ebbflow.CollectorFunc[string](func(string) { n++ })
	for b.Loop() {
		r, _ := src.NewReader(ebbflow.SourceContext{Parallelism: 1}, splits)
		for {
			st, err := r.Poll(out, 1000)
			if err != nil {
				b.Fatal(err)
			}
			if st == ebbflow.EndOfInput {
				break
			}
		}
		r.Close()
	}
}
