package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// keyTable renders the configuration keys as the Markdown table in
// docs/configuration.md.
func keyTable() string {
	var b strings.Builder
	b.WriteString("| key | environment | flag | default | used by | meaning |\n|---|---|---|---|---|---|\n")
	for _, k := range keys {
		env := "EBBFLOW_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(k.Key))
		flag := ""
		if k.Flag != "" {
			flag = "`--" + k.Flag + "`"
		}
		def := k.Default
		if def != "" {
			def = "`" + def + "`"
		}
		var roles []string
		for _, r := range k.Roles {
			switch r {
			case 'j':
				roles = append(roles, "jobmanager")
			case 't':
				roles = append(roles, "taskmanager")
			}
		}
		b.WriteString("| `" + k.Key + "` | `" + env + "` | " + flag + " | " + def + " | " + strings.Join(roles, ", ") + " | " + k.Usage + " |\n")
	}
	return b.String()
}

// docs/configuration.md holds the generated table of every key; run
// `UPDATE_DOCS=1 go test ./internal/cli -run TestConfigurationDoc` to
// refresh it after changing a key.
func TestConfigurationDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- keys:begin -->\n", "<!-- keys:end -->"
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q … %q markers", path, begin, end)
	}
	want := s[:i+len(begin)] + keyTable() + s[j:]
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != s {
		t.Fatalf("%s is out of date with the configuration keys; run UPDATE_DOCS=1 go test ./internal/cli -run TestConfigurationDoc", path)
	}
}

func TestSettingsPriorityAndErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/c.yaml"
	os.WriteFile(cfg, []byte("cluster:\n  id: from-file\ncheckpoint:\n  interval: 7s\n  retained: 5\n"), 0o644)
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	addConfigFlags(fs, 'j')
	if err := fs.Parse([]string{"--config", cfg, "--checkpoint-interval", "9s"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EBBFLOW_CHECKPOINT_RETAINED", "8")
	s, err := loadSettings(fs, 'j')
	if err != nil {
		t.Fatal(err)
	}
	if got := s.str("cluster.id"); got != "from-file" {
		t.Errorf("cluster.id = %q, want the file's value", got)
	}
	if got := s.dur("checkpoint.interval"); got.String() != "9s" {
		t.Errorf("checkpoint.interval = %v, want the flag's 9s", got)
	}
	if got := s.num("checkpoint.retained"); got != 8 {
		t.Errorf("checkpoint.retained = %d, want the environment's 8", got)
	}
	if got := s.str("jobmanager.http"); got != ":8081" {
		t.Errorf("jobmanager.http = %q, want the default", got)
	}
	os.WriteFile(cfg, []byte("s3:\n  secret-key: hunter2\ncheckpoint:\n  retained: lots\n"), 0o644)
	fs = pflag.NewFlagSet("x", pflag.ContinueOnError)
	addConfigFlags(fs, 'j')
	fs.Parse([]string{"--config", cfg})
	t.Setenv("EBBFLOW_CHECKPOINT_RETAINED", "")
	os.Unsetenv("EBBFLOW_CHECKPOINT_RETAINED")
	_, err = loadSettings(fs, 'j')
	if err == nil || !strings.Contains(err.Error(), "checkpoint.retained") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("wrong type: %v", err)
	}
}
