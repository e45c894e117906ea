package statebench_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/examples/statebench"
)

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

// Non-string keys, several tasks in one process, under -race: every record
// must reach the subtask that owns its key group (a shared hashing buffer
// once routed records to the wrong subtask), so the job runs without a
// single restart.
func TestInt64KeysRouteToTheirKeyGroup(t *testing.T) {
	app := ebbflow.NewApp("ebbflow")
	statebench.Register(app)
	var stdout, stderr syncBuffer
	code := app.RunContext(context.Background(), []string{"local", "--data-dir", filepath.Join(t.TempDir(), "data"), "--taskmanagers", "2", "--slots", "2",
		"--checkpoint-interval", "100ms", "--quiet", "statebench", "--keys", "5000", "--value-bytes", "16", "--count", "200000", "--rate", "0"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), " 0 restarts") || !strings.Contains(stdout.String(), "200000 sink records") {
		t.Fatalf("want 200000 records and no restart:\n%s\n%s", stdout.String(), stderr.String())
	}
}
