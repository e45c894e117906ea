package cli

import (
	"context"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/internal/termination/fakemeta"
)

func taskmanagerSettings(t *testing.T, env map[string]string, args ...string) *settings {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	fs := pflag.NewFlagSet("taskmanager", pflag.ContinueOnError)
	addConfigFlags(fs, 't')
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	s, err := loadSettings(fs, 't')
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTerminationWatchSettings(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"unknown cloud", map[string]string{"EBBFLOW_TASKMANAGER_TERMINATION_WATCH": "azure"}, nil,
			[]string{"taskmanager.termination-watch", "EBBFLOW_TASKMANAGER_TERMINATION_WATCH", "--termination-watch", `"azure"`, "none, aws or gcp"}},
		{"zero poll interval", map[string]string{"EBBFLOW_TASKMANAGER_METADATA_POLL_INTERVAL": "0"}, []string{"--termination-watch", "aws"},
			[]string{"taskmanager.metadata-poll-interval", "positive"}},
		{"endpoint without scheme", nil, []string{"--termination-watch", "gcp", "--metadata-endpoint", "metadata.google.internal"},
			[]string{"taskmanager.metadata-endpoint", "--metadata-endpoint", "metadata.google.internal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := taskmanagerSettings(t, tc.env, tc.args...)
			_, _, err := startTerminationWatch(ctx, s, zap.NewNop())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		w, n, err := startTerminationWatch(ctx, taskmanagerSettings(t, nil), zap.NewNop())
		if w != nil || n != nil || err != nil {
			t.Fatalf("default: %v %v %v; want no watcher", w, n, err)
		}
	})
	t.Run("aws, already terminating", func(t *testing.T) {
		m := fakemeta.NewIMDS(nil) // an imitation of IMDSv2
		m.SetLifecycleState("Terminated")
		srv := httptest.NewServer(m)
		defer srv.Close()
		s := taskmanagerSettings(t, map[string]string{"EBBFLOW_TASKMANAGER_TERMINATION_WATCH": "AWS", "EBBFLOW_TASKMANAGER_METADATA_ENDPOINT": srv.URL})
		w, n, err := startTerminationWatch(ctx, s, zap.NewNop())
		if err != nil || w == nil || n == nil || n.Reason != "aws autoscaling target-lifecycle-state Terminated" {
			t.Fatalf("got %v %+v %v", w, n, err)
		}
	})
}

// After a termination notice the drain must survive the SIGTERM that the
// shutdown brings; only a second signal stops it.
func TestAfterSignals(t *testing.T) {
	earlier := make(chan struct{}, 4)
	done, stop := afterSignals(2, func() { earlier <- struct{}{} })
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-earlier:
	case <-time.After(10 * time.Second):
		t.Fatal("first signal not seen")
	}
	select {
	case <-done:
		t.Fatal("done after one signal")
	default:
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not done after the second signal")
	}
}
