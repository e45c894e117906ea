package termination

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/internal/termination/fakemeta"
)

// The deployment files in deploy/aws and deploy/gcp and their pages
// docs/deploy-aws.md and docs/deploy-gcp.md are checked against the real
// command line: every EBBFLOW_* variable, configuration key and flag they
// use must exist (docs/configuration.md's table, which the cli package's
// TestConfigurationDoc keeps equal to the code), the scripts must parse,
// and the grace periods they set must nest.

const root = "../.."

var deployFiles = []string{
	"deploy/aws/taskmanager-user-data.sh", "deploy/aws/asg-lifecycle.sh", "deploy/aws/create-asg.sh", "deploy/aws/iam-policy.json", "deploy/aws/README.md",
	"deploy/gcp/startup-script.sh", "deploy/gcp/shutdown-script.sh", "deploy/gcp/create-mig.sh", "deploy/gcp/README.md",
	"docs/deploy-aws.md", "docs/deploy-gcp.md",
}

func readRepo(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type configKey struct {
	key, env, flag, def string
	roles               string
}

// configTable parses the key table of docs/configuration.md.
func configTable(t *testing.T) []configKey {
	t.Helper()
	row := regexp.MustCompile("^\\| `([^`]+)` \\| `([^`]+)` \\| (?:`--([^`]+)`)? *\\| (?:`([^`]*)`)? *\\| ([a-z, ]*) \\|")
	var out []configKey
	sc := bufio.NewScanner(strings.NewReader(readRepo(t, "docs/configuration.md")))
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, configKey{key: m[1], env: m[2], flag: m[3], def: m[4], roles: m[5]})
		}
	}
	if len(out) < 40 {
		t.Fatalf("parsed only %d keys from docs/configuration.md: the table format changed", len(out))
	}
	return out
}

func TestDeployFilesUseRealSettings(t *testing.T) {
	keys := configTable(t)
	envs, names := map[string]bool{}, map[string]bool{}
	flags := map[string]map[string]configKey{"taskmanager": {}, "jobmanager": {}}
	for _, k := range keys {
		envs[k.env], names[k.key] = true, true
		for role := range flags {
			if k.flag != "" && strings.Contains(k.roles, role) {
				flags[role][k.flag] = k
			}
		}
	}
	envRe := regexp.MustCompile(`EBBFLOW_[A-Z0-9_]*[A-Z0-9]`)
	keyRe := regexp.MustCompile(`(taskmanager|jobmanager|checkpoint|cluster|etcd|log|s3)(\.[a-z][a-z0-9-]*)+`)
	cmdRe := regexp.MustCompile(`ebbflow (taskmanager|jobmanager)\b`)
	checked := map[string]int{}
	for _, f := range deployFiles {
		text := readRepo(t, f)
		for _, e := range envRe.FindAllString(text, -1) {
			checked["env"]++
			if !envs[e] {
				t.Errorf("%s: %s is not a configuration variable (docs/configuration.md)", f, e)
			}
		}
		for _, loc := range keyRe.FindAllStringIndex(text, -1) {
			k := text[loc[0]:loc[1]]
			if loc[0] > 0 && strings.ContainsAny(text[loc[0]-1:loc[0]], "/-_.@$abcdefghijklmnopqrstuvwxyz0123456789") {
				continue // part of a path, a unit or host name
			}
			if strings.HasPrefix(k, "s3.") && (strings.Contains(k, "amazonaws") || strings.HasSuffix(k, ".com")) {
				continue // an S3 host name
			}
			checked["key"]++
			if !names[k] {
				t.Errorf("%s: %s is not a configuration key (docs/configuration.md)", f, k)
			}
		}
		joined := strings.ReplaceAll(text, "\\\n", " ")
		for _, m := range cmdRe.FindAllStringSubmatchIndex(joined, -1) {
			rest, _, _ := strings.Cut(joined[m[1]:], "\n")
			role, toks := joined[m[2]:m[3]], strings.Fields(rest)
			for i := 0; i < len(toks) && strings.HasPrefix(toks[i], "--"); i++ {
				name, _, hasValue := strings.Cut(strings.TrimPrefix(toks[i], "--"), "=")
				name = strings.Trim(name, "`")
				checked["flag"]++
				if name == "config" || name == "help" {
					if name == "config" && !hasValue {
						i++
					}
					continue
				}
				k, ok := flags[role][name]
				if !ok {
					t.Errorf("%s: ebbflow %s has no flag --%s (docs/configuration.md)", f, role, name)
					continue
				}
				if !hasValue && k.def != "true" && k.def != "false" {
					i++ // the flag's value
				}
			}
		}
	}
	t.Logf("checked %d EBBFLOW_* variables, %d keys, %d flags", checked["env"], checked["key"], checked["flag"])
	if checked["env"] < 20 || checked["key"] < 10 || checked["flag"] < 2 {
		t.Fatalf("too little checked (%v): the patterns no longer match the files", checked)
	}
	var policy map[string]any
	if err := json.Unmarshal([]byte(readRepo(t, "deploy/aws/iam-policy.json")), &policy); err != nil {
		t.Errorf("deploy/aws/iam-policy.json: %v", err)
	}
	if !strings.Contains(readRepo(t, "deploy/aws/iam-policy.json"), `"autoscaling:CompleteLifecycleAction"`) {
		t.Error("deploy/aws/iam-policy.json lacks autoscaling:CompleteLifecycleAction")
	}
}

func TestDeployScriptsParse(t *testing.T) {
	var scripts []string
	for _, f := range deployFiles {
		if strings.HasSuffix(f, ".sh") {
			scripts = append(scripts, filepath.Join(root, f))
		}
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, scripts...).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	} else {
		t.Log("shellcheck is not installed: only bash -n was run")
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func find(t *testing.T, file, text, re string) []string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: no match for %s", file, re)
	}
	return m
}

// The grace periods nest: jobmanager.drain-timeout < taskmanager.drain-timeout
// < systemd's TimeoutStopSec < what the cloud allows.
func TestDeployGracePeriodsNest(t *testing.T) {
	t.Run("aws", func(t *testing.T) {
		const ud, asg, doc = "deploy/aws/taskmanager-user-data.sh", "deploy/aws/create-asg.sh", "docs/deploy-aws.md"
		u := readRepo(t, ud)
		drain := atoi(t, find(t, ud, u, `\nEBBFLOW_TASKMANAGER_DRAIN_TIMEOUT=(\d+)s\n`)[1])
		poll := atoi(t, find(t, ud, u, `\nEBBFLOW_TASKMANAGER_METADATA_POLL_INTERVAL=(\d+)s\n`)[1])
		stop := atoi(t, find(t, ud, u, `\nTimeoutStopSec=(\d+)\n`)[1])
		hb := atoi(t, find(t, asg, readRepo(t, asg), `HEARTBEAT_TIMEOUT=\$\{HEARTBEAT_TIMEOUT:-(\d+)\}`)[1])
		jm := atoi(t, find(t, doc, readRepo(t, doc), `EBBFLOW_JOBMANAGER_DRAIN_TIMEOUT=(\d+)s`)[1])
		if !(jm+10 <= drain && drain+5 <= stop && poll+stop+30 <= hb) {
			t.Errorf("want jobmanager.drain-timeout %d + 10 <= taskmanager.drain-timeout %d, + 5 <= TimeoutStopSec %d, poll %d + TimeoutStopSec + 30 <= heartbeat %d", jm, drain, stop, poll, hb)
		}
		if poll+drain+10 > 120 {
			t.Errorf("a spot interruption gives 120s: poll %d + drain %d leaves less than 10s", poll, drain)
		}
		h := find(t, ud, u, `jobmanager\.drain-timeout (\d+)s\s+<\s+taskmanager\.drain-timeout (\d+)s\s+#?\s*<\s+TimeoutStopSec (\d+)s\s+<\s+lifecycle hook heartbeat timeout (\d+)s`)
		if atoi(t, h[1]) != jm || atoi(t, h[2]) != drain || atoi(t, h[3]) != stop || atoi(t, h[4]) != hb {
			t.Errorf("%s: the comment's arithmetic %v does not match the settings (%d, %d, %d, %d)", ud, h[1:], jm, drain, stop, hb)
		}
	})
	t.Run("gcp", func(t *testing.T) {
		const ss, doc = "deploy/gcp/startup-script.sh", "docs/deploy-gcp.md"
		s := readRepo(t, ss)
		set := regexp.MustCompile(`DRAIN_TIMEOUT=(\d+) STOP_TIMEOUT=(\d+) # [^\n]*?(\d+) s budget`).FindAllStringSubmatch(s, -1)
		table := regexp.MustCompile(`(\d+) < (\d+) < (\d+) < (\d+)\n`).FindAllStringSubmatch(s, -1)
		if len(set) != 2 || len(table) != 2 {
			t.Fatalf("%s: want the standard and the Spot budgets in the settings and in the comment; found %d and %d", ss, len(set), len(table))
		}
		d := readRepo(t, doc)
		for _, st := range set {
			drain, stop, budget := atoi(t, st[1]), atoi(t, st[2]), atoi(t, st[3])
			var row []string
			for _, r := range table {
				if r[2] == st[1] && r[3] == st[2] && r[4] == st[3] {
					row = r
				}
			}
			if row == nil {
				t.Errorf("%s: the comment's arithmetic %v does not show the settings %v", ss, table, st[1:])
				continue
			}
			jm := atoi(t, row[1])
			if !(jm < drain && drain+3 <= stop && stop+3 <= budget) {
				t.Errorf("want jobmanager.drain-timeout %d < taskmanager.drain-timeout %d, + 3 <= TimeoutStopSec %d, + 3 <= budget %d", jm, drain, stop, budget)
			}
			if !strings.Contains(d, "EBBFLOW_JOBMANAGER_DRAIN_TIMEOUT="+row[1]+"s") {
				t.Errorf("%s does not tell the JobManager EBBFLOW_JOBMANAGER_DRAIN_TIMEOUT=%ss", doc, row[1])
			}
		}
	})
}

// asg-lifecycle.sh, run by the unit, against the IMDS imitation and an
// imitation of the aws CLI (a script that records its arguments): AWS
// cannot be reached from here.
func TestASGLifecycleScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed; asg-lifecycle.sh needs it")
	}
	script, err := filepath.Abs(filepath.Join(root, "deploy/aws/asg-lifecycle.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	calls := filepath.Join(dir, "aws-calls")
	if err := os.WriteFile(filepath.Join(dir, "aws"), []byte("#!/bin/sh\necho \"$@\" >>"+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lenv := filepath.Join(dir, "lifecycle.env")
	os.WriteFile(lenv, []byte("ASG_NAME=ebbflow-taskmanagers\nLIFECYCLE_HOOK_NAME=ebbflow-drain\n"), 0o644)
	m := fakemeta.NewIMDS(nil)
	srv := httptest.NewServer(m)
	defer srv.Close()
	env := append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "IMDS_ENDPOINT="+srv.URL, "LIFECYCLE_ENV="+lenv, "WAIT_POLL_SECONDS=0.05")
	runScript := func(arg string) string {
		t.Helper()
		cmd := exec.Command("bash", script, arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("asg-lifecycle.sh %s: %v\n%s", arg, err, out)
		}
		return string(out)
	}
	awsCalls := func() string { b, _ := os.ReadFile(calls); return string(b) }

	for _, st := range []string{"", "InService"} {
		m.SetLifecycleState(st)
		if out := runScript("complete"); !strings.Contains(out, "nothing to complete") || awsCalls() != "" {
			t.Fatalf("state %q: completed a lifecycle action of an instance in service:\n%s\naws: %s", st, out, awsCalls())
		}
	}
	m.SetLifecycleState("Terminated")
	out := runScript("complete")
	want := "autoscaling complete-lifecycle-action --region us-east-1 --auto-scaling-group-name ebbflow-taskmanagers --lifecycle-hook-name ebbflow-drain --instance-id i-0imitation0000000 --lifecycle-action-result CONTINUE\n"
	if awsCalls() != want {
		t.Fatalf("aws called with\n%s\nwant\n%s\n(script said %s)", awsCalls(), want, out)
	}
	if c := m.Counts(); c.Unauthorized != 0 || c.BadRequests != 0 {
		t.Fatalf("the script did not use IMDSv2 properly: %+v", c)
	}

	// wait-in-service holds the start while the instance is in a warm pool.
	m.SetLifecycleState("Warmed:Running")
	cmd := exec.Command("bash", script, "wait-in-service")
	cmd.Env = env
	var outb strings.Builder
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, "the script polling the warm pool state", func() bool { return m.StateReads("Warmed:Running") >= 3 })
	select {
	case err := <-done:
		t.Fatalf("wait-in-service returned in the warm pool: %v\n%s", err, outb.String())
	default:
	}
	m.SetLifecycleState("InService")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait-in-service: %v\n%s", err, outb.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("wait-in-service did not return once InService:\n%s", outb.String())
	}
}
