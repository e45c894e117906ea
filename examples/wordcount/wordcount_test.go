package wordcount_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"go.uber.org/goleak"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/filesink"
	"github.com/ebbflow/ebbflow/examples/wordcount"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded etcd server and its gRPC stack keep a few process-wide
		// goroutines after Close (loggers, balancers); they are not ours.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/traceutil.init"),
	)
}

func testApp() *ebbflow.App {
	app := ebbflow.NewApp("ebbflow")
	wordcount.Register(app)
	return app
}

func corpus(t *testing.T, path string, lines int) map[string]int {
	t.Helper()
	var b strings.Builder
	counts := map[string]int{}
	for i := 0; i < lines; i++ {
		for j := 0; j < 1+i%7; j++ {
			w := "w" + strconv.Itoa((i*31+j*17)%97)
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(w)
			counts[w]++
		}
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return counts
}

func checkExactlyOnce(t *testing.T, out string, counts map[string]int) {
	t.Helper()
	lines, err := filesink.ReadCommitted(out)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for w, n := range counts {
		for k := 1; k <= n; k++ {
			want = append(want, w+"\t"+strconv.Itoa(k))
		}
	}
	sort.Strings(want)
	sort.Strings(lines)
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("committed output (%d lines) differs from the expected %d lines", len(lines), len(want))
	}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The whole runtime in one process under the race detector: JobManager,
// TaskManagers, tasks, data plane and embedded etcd; then an interrupted run
// resumed.
func TestLocalInProcess(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	counts := corpus(t, in, 5000)
	out := filepath.Join(dir, "out")
	var stdout, stderr syncBuffer
	code := testApp().RunContext(context.Background(), []string{"local", "--data-dir", filepath.Join(dir, "data"), "--taskmanagers", "2", "--slots", "2",
		"--checkpoint-interval", "100ms", "wordcount", "--input", in, "--output", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	checkExactlyOnce(t, out, counts)
}

func TestLocalInterruptAndResume(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	counts := corpus(t, in, 6000)
	out := filepath.Join(dir, "out")
	args := []string{"local", "--data-dir", filepath.Join(dir, "data"), "--taskmanagers", "1", "--slots", "2",
		"--checkpoint-interval", "100ms", "wordcount", "--input", in, "--output", out, "--rate", "3000"}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- testApp().RunContext(ctx, args, &stdout, &stderr) }()
	// Interrupt once the output has a committed file.
	deadline := time.Now().Add(time.Minute)
	for {
		lines, _ := filesink.ReadCommitted(out)
		if len(lines) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no committed output after a minute:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 130 || !strings.Contains(stdout.String(), "run the same command again") {
		t.Fatalf("interrupted run: exit %d, stdout:\n%s", code, stdout.String())
	}
	var stdout2, stderr2 syncBuffer
	if code := testApp().RunContext(context.Background(), args, &stdout2, &stderr2); code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", code, stdout2.String(), stderr2.String())
	}
	if !strings.Contains(stdout2.String(), "resuming the unfinished job") {
		t.Fatalf("resume not announced:\n%s", stdout2.String())
	}
	checkExactlyOnce(t, out, counts)
}

func collect(line string) []string {
	var got []string
	wordcount.Tokenize(line, ebbflow.CollectorFunc[string](func(w string) { got = append(got, w) }))
	return got
}

func TestTokenize(t *testing.T) {
	cases := map[string][]string{
		"":                      nil,
		"Hello, World!":         {"hello", "world"},
		"  multiple   spaces  ": {"multiple", "spaces"},
		"x1 2026 a-b c_d":       {"x1", "2026", "a", "b", "c", "d"},
		"Ébène naïve STRASSE ß": {"ébène", "naïve", "strasse", "ß"},
		"Δέλτα 数据 ٣٤":           {"δέλτα", "数据", "٣٤"},
		"don't":                 {"don", "t"},
		"ÀÉÎ—ok":                {"àéî", "ok"},
		"tab\tsep":              {"tab", "sep"},
		"\u00a0nbsp\u00a0":      {"nbsp"},
		"MiXeD123CaSe":          {"mixed123case"},
		"İstanbul":              {"istanbul"}, // unicode.ToLower, not special casing
	}
	for in, want := range cases {
		got := collect(in)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("Tokenize(%q) = %q, want %q", in, got, want)
		}
	}
}

// Property: Tokenize agrees with a naive rune-by-rune reference.
func TestTokenizeMatchesReference(t *testing.T) {
	alphabet := []rune("aZ09 .,-'\tÉßδ数٣\u00a0_İ")
	for seed := 0; seed < 3000; seed++ {
		var b strings.Builder
		x := uint32(seed*2654435761 + 1)
		for i := 0; i < int(x%40); i++ {
			x = x*1664525 + 1013904223
			b.WriteRune(alphabet[x%uint32(len(alphabet))])
		}
		line := b.String()
		var want []string
		var cur []rune
		for _, r := range line {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				cur = append(cur, unicode.ToLower(r))
			} else if len(cur) > 0 {
				want = append(want, string(cur))
				cur = nil
			}
		}
		if len(cur) > 0 {
			want = append(want, string(cur))
		}
		if got := collect(line); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("Tokenize(%q) = %q, want %q", line, got, want)
		}
	}
}

func BenchmarkTokenize(b *testing.B) {
	line := "The quick brown fox jumps over the lazy dog, and the dog sleeps."
	out := ebbflow.CollectorFunc[string](func(string) {})
	b.SetBytes(int64(len(line)))
	for i := 0; i < b.N; i++ {
		wordcount.Tokenize(line, out)
	}
}
