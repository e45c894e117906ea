package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

var checkpointLine = regexp.MustCompile(`checkpoint [1-9][0-9]* \(`)

// An uninterrupted run at parallelism 4 commits exactly the reference output.
func TestWordcountExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	writeCorpus(t, in, 30000, 1)
	out := filepath.Join(dir, "out")
	code, stdout, stderr := run(t, 2*time.Minute, "local", "--data-dir", filepath.Join(dir, "data"), "--taskmanagers", "2", "--slots", "2",
		"wordcount", "--input", in, "--output", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "wordcount finished") || !strings.Contains(stdout, "parallelism 4") {
		t.Fatalf("summary missing or wrong parallelism:\n%s", stdout)
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
	// Nothing in progress is left behind.
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("leftover in-progress file %s", e.Name())
		}
	}
	// Running the same command again does nothing and says so.
	code, stdout, _ = run(t, time.Minute, "local", "--data-dir", filepath.Join(dir, "data"), "--taskmanagers", "2", "--slots", "2",
		"wordcount", "--input", in, "--output", out)
	if code != 0 || !strings.Contains(stdout, "already finished") {
		t.Fatalf("rerun of a finished job: exit %d, stdout:\n%s", code, stdout)
	}
}

// A folder input with several files, one of them empty, and hidden files
// that must be skipped.
func TestWordcountFolderInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.MkdirAll(in, 0o755)
	writeCorpus(t, filepath.Join(in, "a.txt"), 3000, 2)
	writeCorpus(t, filepath.Join(in, "b.txt"), 5000, 3)
	os.WriteFile(filepath.Join(in, "empty.txt"), nil, 0o644)
	os.WriteFile(filepath.Join(in, ".hidden"), []byte("never counted\n"), 0o644)
	out := filepath.Join(dir, "out")
	code, stdout, stderr := run(t, 2*time.Minute, "local", "--data-dir", filepath.Join(dir, "data"), "--taskmanagers", "1", "--slots", "3",
		"wordcount", "--input", in, "--output", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, filepath.Join(in, "a.txt"), filepath.Join(in, "b.txt"), filepath.Join(in, "empty.txt")))
}

// Restore equivalence: run at parallelism 2, stop abruptly after a
// checkpoint, then resume the same crashed state at parallelism 1, 3 and 4;
// every resumed run commits exactly the output of an uninterrupted run.
func TestRestoreAtOtherParallelism(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	writeCorpus(t, in, 20000, 4)
	want := testenv.WordcountReference(t, in)
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"wordcount", "--input", in, "--output", out, "--rate", "6000"}
	p := start(t, append([]string{"local", "--data-dir", data, "--taskmanagers", "1", "--slots", "2", "--checkpoint-interval", "300ms"}, args...)...)
	p.waitLine(checkpointLine, time.Minute)
	p.waitLine(regexp.MustCompile(`checkpoint [2-9]`), time.Minute)
	p.kill9()
	if strings.Contains(p.output(), "finished") {
		t.Fatal("job finished before it was killed; the input is too small for the rate")
	}
	savedData, savedOut := filepath.Join(dir, "saved-data"), filepath.Join(dir, "saved-out")
	copyDir(t, data, savedData)
	copyDir(t, out, savedOut)
	for _, shape := range []struct{ tms, slots, p int }{{1, 1, 1}, {1, 3, 3}, {2, 2, 4}} {
		t.Run("p="+strconv.Itoa(shape.p), func(t *testing.T) {
			os.RemoveAll(data)
			os.RemoveAll(out)
			copyDir(t, savedData, data)
			copyDir(t, savedOut, out)
			// The resumed run is unthrottled only in its data: same arguments
			// as the crashed run are required to resume it.
			code, stdout, stderr := run(t, 2*time.Minute, append([]string{"local", "--data-dir", data, "--taskmanagers", strconv.Itoa(shape.tms),
				"--slots", strconv.Itoa(shape.slots), "--checkpoint-interval", "300ms"}, args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "resuming the unfinished job from checkpoint") {
				t.Fatalf("resume not announced:\n%s", stdout)
			}
			if !strings.Contains(stdout, "parallelism "+strconv.Itoa(shape.p)) {
				t.Fatalf("want parallelism %d:\n%s", shape.p, stdout)
			}
			testenv.AssertExactlyOnce(t, committed(t, out), want)
		})
	}
}

// Crash recovery: kill -9 the local cluster several times mid-run, each time
// after a different number of checkpoints, and resume; the committed output
// is exactly-once.
func TestCrashRecoveryRepeatedKills(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	writeCorpus(t, in, 24000, 5)
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"local", "--data-dir", data, "--taskmanagers", "2", "--slots", "1", "--checkpoint-interval", "250ms",
		"wordcount", "--input", in, "--output", out, "--rate", "8000"}
	for kill := 0; kill < 3; kill++ {
		p := start(t, args...)
		// Let it run past a fresh checkpoint of this run, then a bit more
		// so some output is uncommitted when it dies.
		p.waitLine(regexp.MustCompile(`running .*checkpoint [0-9]+ \(`), time.Minute)
		p.waitLine(regexp.MustCompile(`sink [1-9]`), time.Minute)
		p.kill9()
		if strings.Contains(p.output(), "wordcount finished") {
			t.Fatalf("job finished before kill %d", kill)
		}
	}
	code, stdout, stderr := run(t, 2*time.Minute, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// --fresh starts over (and refuses to mix with committed output).
func TestFreshStartsOver(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	writeCorpus(t, in, 2000, 6)
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"wordcount", "--input", in, "--output", out}
	if code, o, e := run(t, time.Minute, append([]string{"local", "--data-dir", data}, args...)...); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, o, e)
	}
	code, _, stderr := run(t, time.Minute, append([]string{"local", "--data-dir", data, "--fresh"}, args...)...)
	if code == 0 || !strings.Contains(stderr, "already holds committed output") || !strings.Contains(stderr, out) {
		t.Fatalf("fresh run over committed output: exit %d, stderr:\n%s", code, stderr)
	}
	os.RemoveAll(out)
	if code, o, e := run(t, time.Minute, append([]string{"local", "--data-dir", data, "--fresh"}, args...)...); code != 0 || strings.Contains(o, "already finished") {
		t.Fatalf("fresh rerun: exit %d\n%s\n%s", code, o, e)
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// crashAfterCheckpoint runs wordcount throttled until checkpoint 2 has
// completed and kills it; it returns the data folder, output folder and args.
func crashAfterCheckpoint(t *testing.T, dir string) (string, string, []string) {
	t.Helper()
	in := filepath.Join(dir, "in.txt")
	writeCorpus(t, in, 20000, 7)
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"local", "--data-dir", data, "--taskmanagers", "1", "--slots", "2", "--checkpoint-interval", "300ms",
		"wordcount", "--input", in, "--output", out, "--rate", "5000"}
	p := start(t, args...)
	p.waitLine(regexp.MustCompile(`checkpoint [2-9][0-9]* \(`), time.Minute)
	p.kill9()
	return data, out, args
}

// latestCheckpoint returns the newest checkpoint folder with a _metadata.
func latestCheckpoint(t *testing.T, data string) string {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(data, "checkpoints", "wordcount", "chk-*", "_metadata"))
	best, bestN := "", -1
	for _, m := range ms {
		d := filepath.Dir(m)
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "chk-"))
		if err == nil && n > bestN {
			best, bestN = d, n
		}
	}
	if best == "" {
		t.Fatal("no completed checkpoint on disk")
	}
	return best
}

// A committed checkpoint whose data is corrupt is an error naming the
// object, never a silent start from empty state.
func TestCorruptCheckpointIsAnError(t *testing.T) {
	dir := t.TempDir()
	data, _, args := crashAfterCheckpoint(t, dir)
	chk := latestCheckpoint(t, data)
	objs, _ := filepath.Glob(filepath.Join(chk, "*.state"))
	var corrupted []string
	for _, o := range objs {
		b, err := os.ReadFile(o)
		if err != nil || len(b) == 0 {
			continue
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(o, b, 0o644); err != nil {
			t.Fatal(err)
		}
		corrupted = append(corrupted, filepath.Base(o))
	}
	if len(corrupted) == 0 {
		t.Fatal("no state object to corrupt")
	}
	code, stdout, stderr := run(t, 2*time.Minute, args...)
	if code == 0 {
		t.Fatalf("resume from a corrupt checkpoint succeeded:\n%s", stdout)
	}
	named := false
	t.Logf("corrupt checkpoint error:\n%s", stderr)
	for _, c := range corrupted {
		if strings.Contains(stderr, c) {
			named = true
		}
	}
	if !named || !strings.Contains(stderr, "corrupt") {
		t.Fatalf("error does not name the corrupt object (one of %v):\n%s", corrupted, stderr)
	}
	// Corrupt metadata is named too.
	if err := os.WriteFile(filepath.Join(chk, "_metadata"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, time.Minute, args...)
	if code == 0 || !strings.Contains(stderr, filepath.Join(filepath.Base(chk), "_metadata")) {
		t.Fatalf("corrupt _metadata: exit %d, stderr:\n%s", code, stderr)
	}
}

// A partial checkpoint (data without _metadata, as a crash in the middle of
// a checkpoint leaves it) is uncommitted: it is ignored and removed.
func TestPartialCheckpointIsIgnored(t *testing.T) {
	dir := t.TempDir()
	data, out, args := crashAfterCheckpoint(t, dir)
	partial := filepath.Join(data, "checkpoints", "wordcount", "chk-9999")
	os.MkdirAll(partial, 0o755)
	os.WriteFile(filepath.Join(partial, "a9-c0-s0.state"), []byte("half a checkpoint"), 0o644)
	code, stdout, stderr := run(t, 2*time.Minute, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("partial checkpoint %s not cleaned up", partial)
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, filepath.Join(dir, "in.txt")))
}

// Bad input exits non-zero before the job starts, naming the path or flag.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	os.WriteFile(in, []byte("hello world\n"), 0o644)
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	data := filepath.Join(dir, "data")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"missing input", []string{"local", "--data-dir", data, "wordcount", "--input", filepath.Join(dir, "nope"), "--output", filepath.Join(dir, "o")}, []string{filepath.Join(dir, "nope")}},
		{"unwritable output", []string{"local", "--data-dir", data, "wordcount", "--input", in, "--output", filepath.Join(notDir, "o")}, []string{filepath.Join(notDir, "o")}},
		{"unknown job", []string{"local", "--data-dir", data, "nosuchjob"}, []string{"nosuchjob", "wordcount", "passthrough"}},
		{"slots 0", []string{"local", "--data-dir", data, "--slots", "0", "wordcount", "--input", in, "--output", filepath.Join(dir, "o")}, []string{"--slots"}},
		{"taskmanagers 0", []string{"local", "--data-dir", data, "--taskmanagers", "0", "wordcount", "--input", in, "--output", filepath.Join(dir, "o")}, []string{"--taskmanagers"}},
		{"negative rate", []string{"local", "--data-dir", data, "wordcount", "--input", in, "--output", filepath.Join(dir, "o"), "--rate", "-1"}, []string{"--rate"}},
		{"rate not a number", []string{"local", "--data-dir", data, "wordcount", "--input", in, "--output", filepath.Join(dir, "o"), "--rate", "fast"}, []string{"--rate", "fast"}},
		{"missing output", []string{"local", "--data-dir", data, "wordcount", "--input", in}, []string{"--output"}},
		{"cluster flag after job", []string{"local", "wordcount", "--input", in, "--output", filepath.Join(dir, "o"), "--slots", "2"}, []string{"--slots", "before the job name"}},
		{"unknown command", []string{"bogus"}, []string{"bogus", "--help"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := run(t, 30*time.Second, c.args...)
			if code == 0 {
				t.Fatalf("exit 0; stdout:\n%s", stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Fatalf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stdout, "finished") {
				t.Fatalf("the job ran:\n%s", stdout)
			}
		})
	}
	if _, err := os.Stat(data); err == nil {
		// Bad input must be rejected before the cluster starts.
		t.Fatalf("data folder %s was created although every run was rejected", data)
	}
}
