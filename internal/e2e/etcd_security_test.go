package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// secureCluster is a job cluster of real processes around an etcd started
// with TLS and/or authentication; env carries the etcd settings for both
// roles unless a test adds its own per process.
func secureCluster(t *testing.T, e *testenv.Etcd, extraEnv ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, etcd: e, dir: t.TempDir()}
	c.env = append(os.Environ(), "EBBFLOW_ETCD_ENDPOINTS="+e.URL, "EBBFLOW_CLUSTER_ID=e2e",
		"EBBFLOW_CHECKPOINT_DIR=file://"+filepath.Join(c.dir, "checkpoints"), "EBBFLOW_LOG_FORMAT=console", "EBBFLOW_TASKMANAGER_LEASE_TTL=2s",
		"EBBFLOW_JOBMANAGER_SESSION_TTL=2s", "EBBFLOW_CHECKPOINT_INTERVAL=300ms")
	c.env = append(c.env, extraEnv...)
	return c
}

// withEnv returns the cluster's environment plus kv (later entries win).
func (c *cluster) withEnv(kv ...string) []string {
	return append(append([]string(nil), c.env...), kv...)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// etcd with TLS that demands client certificates: the JobManager reads the
// TLS settings from its config file, the TaskManagers from EBBFLOW_*
// variables; wordcount finishes with exactly-once output.
func TestEtcdTLSClientCertificates(t *testing.T) {
	e := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: true, ClientCertAuth: true})
	c := secureCluster(t, e)
	in, out, args := wcJob(t, c.dir, 12000, 6000)
	cfg := writeFile(t, filepath.Join(c.dir, "jm.yaml"), "etcd:\n  endpoints: ["+e.URL+"]\n  tls:\n    ca: "+e.TLS.CA.CertFile+
		"\n    cert: "+e.TLS.ClientCert+"\n    key: "+e.TLS.ClientKey+"\n", 0o644)
	c.jobArgs = append([]string{"--config", cfg}, args...)
	tmEnv := []string{"EBBFLOW_ETCD_TLS_CA=" + e.TLS.CA.CertFile, "EBBFLOW_ETCD_TLS_CERT=" + e.TLS.ClientCert, "EBBFLOW_ETCD_TLS_KEY=" + e.TLS.ClientKey}
	full := c.env
	c.env = c.withEnv(tmEnv...)
	c.taskmanager("tm-1", 2)
	c.taskmanager("tm-2", 1)
	c.env = full // the JobManager gets the TLS settings from its file only
	jm := c.jobmanager("jm-1")
	jm.waitStatus("parallelism 3 and a checkpoint", time.Minute, func(s jobStatus) bool { return s.Parallelism == 3 && checkpointed(0)(s) })
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
}

// etcd with password authentication (over TLS checked with the CA only,
// no client certificate) and a user whose role may only read and write
// /ebbflow/<cluster.id>/: the JobManager reads the password from
// etcd.password-file, the TaskManagers from EBBFLOW_ETCD_PASSWORD. Mid-run
// etcd restarts, which voids every auth token (etcd keeps simple tokens in
// memory), so all processes must authenticate again; then a TaskManager
// is drained with SIGTERM (it writes its draining mark, the JobManager
// releases it). The job finishes exactly-once and the password appears in
// no process's output.
func TestEtcdPasswordAuth(t *testing.T) {
	const user = "ebbflow-e2e"
	pw := "pw-" + strings.Repeat("s3cr3t", 3) + "-" + strings.ReplaceAll(t.Name(), "/", "-")
	e := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: true, Auth: &testenv.EtcdAuth{User: user, Password: pw, Prefix: "/ebbflow/e2e/"}})
	c := secureCluster(t, e, "EBBFLOW_ETCD_TLS_CA="+e.TLS.CA.CertFile, "EBBFLOW_ETCD_USERNAME="+user,
		"EBBFLOW_JOBMANAGER_STABILIZATION=500ms", "EBBFLOW_JOBMANAGER_COOLDOWN=1s")
	in, out, args := wcJob(t, c.dir, 30000, 4000)
	pwFile := writeFile(t, filepath.Join(c.dir, "etcd-password"), pw+"\n", 0o600)
	c.jobArgs = append([]string{"--etcd-password-file", pwFile}, args...)
	full := c.env
	c.env = c.withEnv("EBBFLOW_ETCD_PASSWORD=" + pw)
	tm1 := c.taskmanager("tm-1", 2)
	tm2 := c.taskmanager("tm-2", 1)
	c.env = full // the JobManager has the password from its file only
	jm := c.jobmanager("jm-1")
	jm.waitStatus("parallelism 3 and a checkpoint", time.Minute, func(s jobStatus) bool { return s.Parallelism == 3 && checkpointed(0)(s) })
	e.Restart(t)
	// No checkpoint completes while etcd is down (the pointer lives there):
	// one completed after this needed a fresh token.
	st, _ := jm.status()
	after := int64(0)
	if st.LastCompleted != nil {
		after = st.LastCompleted.ID
	}
	jm.waitStatus("a checkpoint after etcd's restart", time.Minute, checkpointed(after))
	if err := tm2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	jm.waitStatus("drain to 2", time.Minute, func(s jobStatus) bool {
		return len(s.Rescales) > 0 && s.Rescales[len(s.Rescales)-1].Trigger == "drain" && s.Rescales[len(s.Rescales)-1].To == 2
	})
	if code := tm2.wait(30 * time.Second); code != 0 || !strings.Contains(tm2.stderr(), "released") {
		t.Fatalf("drained taskmanager exit %d, want 0 after the JobManager released it:\n%s", code, tm2.stderr())
	}
	if code := jm.wait(2 * time.Minute); code != 0 {
		t.Fatalf("jobmanager exit %d:\n%s", code, jm.stderr())
	}
	testenv.AssertExactlyOnce(t, committed(t, out), testenv.WordcountReference(t, in))
	if !strings.Contains(e.Log(), "invalid auth token") {
		t.Fatalf("the restarted etcd was never sent a voided auth token, so the run did not test authenticating again; etcd log:\n%s", e.Log())
	}
	for _, p := range []*proc{jm.proc, tm1, tm2} {
		if strings.Contains(p.output(), pw) || strings.Contains(p.stderr(), pw) {
			t.Fatalf("the etcd password appears in the output of %v", p.cmd.Args)
		}
	}
	if strings.Contains(e.Log(), pw) {
		t.Fatal("the etcd password appears in etcd's log")
	}
}

// An etcd that is down when a process starts is retried until it answers,
// with authentication on as well: the process says it is retrying, and
// connects once etcd is back.
func TestEtcdAuthUnreachableIsRetried(t *testing.T) {
	const user = "ebbflow-e2e"
	pw := "retry-" + strings.Repeat("x", 12)
	e := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: true, ClientCertAuth: true, Auth: &testenv.EtcdAuth{User: user, Password: pw, Prefix: "/ebbflow/e2e/"}})
	e.Kill()
	c := secureCluster(t, e, "EBBFLOW_ETCD_TLS_CA="+e.TLS.CA.CertFile, "EBBFLOW_ETCD_TLS_CERT="+e.TLS.ClientCert, "EBBFLOW_ETCD_TLS_KEY="+e.TLS.ClientKey,
		"EBBFLOW_ETCD_USERNAME="+user, "EBBFLOW_ETCD_PASSWORD="+pw, "EBBFLOW_ETCD_STARTUP_TIMEOUT=90s", "EBBFLOW_ETCD_DIAL_TIMEOUT=1s")
	tm := c.taskmanager("tm-1", 1)
	waitStderr(t, tm, "etcd unreachable; retrying", 30*time.Second)
	e.Restart(t)
	waitStderr(t, tm, "connected to etcd", 30*time.Second)
	if strings.Contains(tm.stderr(), pw) {
		t.Fatal("the etcd password appears in the TaskManager's log")
	}
}

func waitStderr(t *testing.T, p *proc, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr(), want) {
		select {
		case <-p.done:
			t.Fatalf("process exited before logging %q:\n%s", want, p.stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %v:\n%s", want, timeout, p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wrong credentials and certificates are permanent errors: the process
// exits non-zero at once (well before etcd.startup-timeout) with a message
// naming the endpoint and the cause, and never the password.
func TestEtcdSecurityBadSettings(t *testing.T) {
	const user, startup = "ebbflow-e2e", 30 * time.Second
	pw := "right-" + strings.Repeat("p", 10)
	wrong := "wrong-" + strings.Repeat("q", 10)
	authEtcd := testenv.StartEtcdWith(t, testenv.EtcdOptions{Auth: &testenv.EtcdAuth{User: user, Password: pw, Prefix: "/ebbflow/e2e/"}})
	authEtcd.AddUser(t, "reader", pw, "/ebbflow/e2e/", clientv3.PermissionType(clientv3.PermRead))
	authEtcd.AddUser(t, "other", pw, "/ebbflow/other/", clientv3.PermissionType(clientv3.PermReadWrite))
	tlsEtcd := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: true, ClientCertAuth: true})
	foreign := testenv.NewCA(t, "some-other-ca")
	foreignCert, foreignKey := foreign.Issue(t, "ebbflow", false)

	dir := t.TempDir()
	wrongFile := writeFile(t, filepath.Join(dir, "wrong-password"), wrong+"\n", 0o600)
	notPEM := writeFile(t, filepath.Join(dir, "not-a-cert.pem"), "hello\n", 0o644)
	base := []string{"EBBFLOW_CLUSTER_ID=e2e", "EBBFLOW_CHECKPOINT_DIR=file://" + filepath.Join(dir, "chk"), "EBBFLOW_LOG_FORMAT=console",
		"EBBFLOW_ETCD_STARTUP_TIMEOUT=" + startup.String()}
	authEnv := func(kv ...string) []string {
		return append([]string{"EBBFLOW_ETCD_ENDPOINTS=" + authEtcd.URL}, kv...)
	}
	tlsEnv := func(kv ...string) []string {
		return append([]string{"EBBFLOW_ETCD_ENDPOINTS=" + tlsEtcd.URL}, kv...)
	}
	trusted := []string{"EBBFLOW_ETCD_TLS_CERT=" + tlsEtcd.TLS.ClientCert, "EBBFLOW_ETCD_TLS_KEY=" + tlsEtcd.TLS.ClientKey}
	job := []string{"wordcount", "--input", notPEM, "--output", filepath.Join(dir, "out")}
	cases := []struct {
		name string
		role string // "jobmanager" or "taskmanager"
		args []string
		env  []string
		want []string
	}{
		{"wrong password in env", "taskmanager", nil, authEnv("EBBFLOW_ETCD_USERNAME="+user, "EBBFLOW_ETCD_PASSWORD="+wrong),
			[]string{authEtcd.URL, "authentication failed", user}},
		{"wrong password in file", "jobmanager", []string{"--etcd-username", user, "--etcd-password-file", wrongFile}, authEnv(),
			[]string{authEtcd.URL, "authentication failed", user}},
		{"unknown user", "taskmanager", nil, authEnv("EBBFLOW_ETCD_USERNAME=nobody", "EBBFLOW_ETCD_PASSWORD="+wrong),
			[]string{authEtcd.URL, "authentication failed", "nobody"}},
		{"no credentials for an etcd with auth", "taskmanager", nil, authEnv(),
			[]string{authEtcd.URL, "requires authentication", "etcd.username"}},
		{"username without password", "taskmanager", nil, authEnv("EBBFLOW_ETCD_USERNAME=" + user),
			[]string{"etcd.username", "etcd.password"}},
		{"user may only read", "taskmanager", nil, authEnv("EBBFLOW_ETCD_USERNAME=reader", "EBBFLOW_ETCD_PASSWORD="+pw),
			[]string{authEtcd.URL, "permission denied", "reader", "/ebbflow/e2e/"}},
		{"user of another cluster", "jobmanager", nil, authEnv("EBBFLOW_ETCD_USERNAME=other", "EBBFLOW_ETCD_PASSWORD="+pw),
			[]string{authEtcd.URL, "permission denied", "other", "/ebbflow/e2e/"}},
		{"untrusted CA", "taskmanager", nil, tlsEnv(append(trusted, "EBBFLOW_ETCD_TLS_CA="+foreign.CertFile)...),
			[]string{tlsEtcd.URL, "certificate", "etcd.tls.ca"}},
		{"no CA (system roots)", "jobmanager", nil, tlsEnv(trusted...),
			[]string{tlsEtcd.URL, "certificate", "etcd.tls.ca"}},
		{"client certificate from another CA", "taskmanager", nil,
			tlsEnv("EBBFLOW_ETCD_TLS_CA="+tlsEtcd.TLS.CA.CertFile, "EBBFLOW_ETCD_TLS_CERT="+foreignCert, "EBBFLOW_ETCD_TLS_KEY="+foreignKey),
			[]string{tlsEtcd.URL, "client certificate", "etcd.tls.cert"}},
		{"no client certificate", "taskmanager", nil, tlsEnv("EBBFLOW_ETCD_TLS_CA=" + tlsEtcd.TLS.CA.CertFile),
			[]string{tlsEtcd.URL, "client certificate", "etcd.tls.cert"}},
		{"CA file that is not PEM", "taskmanager", nil, tlsEnv("EBBFLOW_ETCD_TLS_CA=" + notPEM),
			[]string{"etcd.tls.ca", notPEM}},
		{"https:// to a plain etcd", "taskmanager", nil, []string{"EBBFLOW_ETCD_ENDPOINTS=https://" + authEtcd.Endpoint},
			[]string{"https://" + authEtcd.Endpoint, "does not speak TLS", "http://"}},
		{"plain http:// to a TLS etcd", "taskmanager", nil,
			[]string{"EBBFLOW_ETCD_ENDPOINTS=http://" + tlsEtcd.Endpoint, "EBBFLOW_ETCD_TLS_CA=" + tlsEtcd.TLS.CA.CertFile},
			[]string{"http://" + tlsEtcd.Endpoint, "https://"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{tc.role}, tc.args...)
			if tc.role == "jobmanager" {
				args = append(args, job...)
			} else {
				args = append(args, "--bind", "127.0.0.1:0", "--data-bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
			}
			ctx, cancel := context.WithTimeout(context.Background(), startup+30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, args...)
			cmd.Env = append(append(os.Environ(), base...), tc.env...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			began := time.Now()
			err := cmd.Run()
			took := time.Since(began)
			if err == nil {
				t.Fatalf("exit 0; stderr:\n%s", stderr.String())
			}
			if ctx.Err() != nil {
				t.Fatalf("still running after %v:\n%s", startup+30*time.Second, stderr.String())
			}
			// A permanent error must not wait out the startup timeout.
			if took > 10*time.Second {
				t.Fatalf("took %v to fail (etcd.startup-timeout %v): a permanent error was retried:\n%s", took.Round(time.Millisecond), startup, stderr.String())
			}
			msg := stderr.String()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("stderr does not mention %q:\n%s", w, msg)
				}
			}
			for _, secret := range []string{pw, wrong} {
				if strings.Contains(msg+stdout.String(), secret) {
					t.Fatalf("a password appears in the output:\n%s", msg)
				}
			}
			t.Logf("exit %d after %v: %s", cmd.ProcessState.ExitCode(), took.Round(time.Millisecond), lastErrorLine(msg))
		})
	}
}

func lastErrorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "error: ") {
			return l
		}
	}
	return strings.TrimSpace(s)
}
