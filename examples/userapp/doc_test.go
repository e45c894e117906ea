package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/connectors/filesink"
)

func newTestApp() *ebbflow.App {
	app := ebbflow.NewApp("userapp")
	ebbflow.Register(app, "visits", "per-user page visit counts", buildVisits)
	return app
}

// The example in docs/job-api.md must be this file, verbatim.
func TestDocMatchesSource(t *testing.T) {
	doc, err := os.ReadFile("../../docs/job-api.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```go\n"+string(src)+"```") {
		t.Fatal("docs/job-api.md does not contain examples/userapp/main.go verbatim; update the doc")
	}
}

// The application runs as a user would run it and commits the expected output.
func TestVisitsLocal(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "visits.txt")
	os.WriteFile(in, []byte("alice home\nbob home\nalice cart\n\nalice home\n"), 0o644)
	out := filepath.Join(dir, "out")
	app := newTestApp()
	if code := app.Run([]string{"local", "--data-dir", filepath.Join(dir, "data"), "--quiet", "visits", "--input", in, "--output", out, "--min", "1"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines, err := filesink.ReadCommitted(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range lines {
		got[l] = true
	}
	for _, want := range []string{"alice\thome\t1\t1", "alice\tcart\t1\t2", "alice\thome\t2\t2", "bob\thome\t1\t1"} {
		if !got[want] {
			t.Errorf("missing %q in %q", want, lines)
		}
	}
	if len(lines) != 4 {
		t.Errorf("got %d lines, want 4: %q", len(lines), lines)
	}
}
