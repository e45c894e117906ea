package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow"
	"github.com/ebbflow/ebbflow/examples/statebench"
	"github.com/ebbflow/ebbflow/internal/cli"
)

func TestKeysTable(t *testing.T) {
	var drain *cli.KeyInfo
	for _, k := range cli.Keys() {
		if k.Key == "taskmanager.drain-timeout" {
			drain = &k
		}
		if k.Env != "EBBFLOW_"+strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(k.Key)) {
			t.Errorf("%s: env %s", k.Key, k.Env)
		}
		if len(k.Roles) == 0 {
			t.Errorf("%s: no roles", k.Key)
		}
	}
	if drain == nil || drain.Default != "25s" || drain.Flag != "" || len(drain.Roles) != 1 || drain.Roles[0] != "taskmanager" {
		t.Fatalf("taskmanager.drain-timeout: %+v", drain)
	}
}

// Resolve gives what the command would run with: defaults, file,
// environment and flags in that order, and the command's own errors.
func TestResolve(t *testing.T) {
	app := ebbflow.NewApp("ebbflow")
	statebench.Register(app)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("taskmanager:\n  drain-timeout: 40s\n  slots: 3\ns3:\n  secret-key: hunter2\n"), 0o644)
	t.Setenv("EBBFLOW_TASKMANAGER_SLOTS", "4")
	t.Setenv("EBBFLOW_TASKMANAGER_ADVERTISE", "10.0.0.1:6121")

	r, err := cli.Resolve("ebbflow", app, []string{"taskmanager", "--config", cfg, "--http=:9999"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Command != "taskmanager" || r.Job != "" {
		t.Errorf("command %q job %q", r.Command, r.Job)
	}
	if got := r.Duration("taskmanager.drain-timeout"); got != 40*time.Second {
		t.Errorf("drain-timeout %v, want the file's 40s", got)
	}
	if got := r.Int("taskmanager.slots"); got != 4 {
		t.Errorf("slots %d, want the environment's 4", got)
	}
	if got := r.String("taskmanager.http"); got != ":9999" {
		t.Errorf("http %q, want the flag's", got)
	}
	if got := r.String("taskmanager.bind"); got != ":6121" {
		t.Errorf("bind %q, want the default", got)
	}
	if got := r.String("s3.secret-key"); got != "(secret)" {
		t.Errorf("secret shown as %q", got)
	}
	if got := r.String("jobmanager.drain-timeout"); got != "" {
		t.Errorf("a jobmanager key on a taskmanager: %q", got)
	}
	// A snapshot: later changes of the environment do not show.
	os.Setenv("EBBFLOW_TASKMANAGER_ADVERTISE", "10.0.0.2:6121")
	if got := r.String("taskmanager.advertise"); got != "10.0.0.1:6121" {
		t.Errorf("advertise %q after the environment changed", got)
	}

	r, err = cli.Resolve("ebbflow", app, []string{"jobmanager", "--cluster-id=c1", "statebench", "--rate=5", "--keys", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Job != "statebench" || strings.Join(r.JobArgs, " ") != "--rate=5 --keys 7" || r.String("cluster.id") != "c1" {
		t.Errorf("jobmanager: %+v", r)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"taskmanager", "--slot=2"}, "unknown flag: --slot"},
		{[]string{"taskmanager", "extra"}, "unknown command"},
		{[]string{"jobmanager", "nosuchjob"}, `unknown job "nosuchjob"`},
		{[]string{"jobmanager", "statebench", "--rat=1"}, "job statebench: unknown flag: --rat"},
		{[]string{"jobmanager", "statebench", "--rate=1", "stray"}, `unexpected argument "stray"`},
		{[]string{"jobmanager"}, "missing job name"},
		{[]string{"savepoint", "--jobmanager=x"}, "not a server command"},
		{[]string{"taskmanagr"}, "unknown command"},
		{[]string{"taskmanager", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
	} {
		_, err := cli.Resolve("ebbflow", app, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	os.WriteFile(cfg, []byte("taskmanager:\n  drain-timeout: soon\n"), 0o644)
	if _, err := cli.Resolve("ebbflow", app, []string{"taskmanager", "--config", cfg}); err == nil || !strings.Contains(err.Error(), "taskmanager.drain-timeout") {
		t.Errorf("bad duration: %v", err)
	}
}
