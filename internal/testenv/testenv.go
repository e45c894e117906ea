// Package testenv starts the real servers that integration tests need — an
// etcd server and a MinIO server — as separate processes, from the binaries
// that scripts/tools.sh builds and caches (their paths come in
// EBBFLOW_ETCD_BIN and EBBFLOW_MINIO_BIN, which `make test` sets). A test
// that needs one and cannot find it fails; it is never skipped.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func binary(t testing.TB, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run the tests through `make test`, or `eval $(scripts/tools.sh)` first, which builds and caches the server binaries", env)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s: %v (run scripts/tools.sh)", env, p, err)
	}
	return p
}

// Process is a started server process.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
	Name string
}

func startProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), log: logf, Name: name}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		logf.Close()
	})
	return p
}

// Kill stops the process with SIGKILL and waits for it.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Log returns what the process printed.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

// Etcd is a running etcd server.
type Etcd struct {
	*Process
	// Endpoint is host:port; URL is Endpoint with its scheme (http:// or,
	// with TLS, https://), the form ebbflow's etcd.endpoints takes.
	Endpoint string
	URL      string
	// TLS holds the throwaway CA and the certificates when the server was
	// started with EtcdOptions.TLS; nil otherwise.
	TLS *EtcdTLS
	// RootPassword is the root user's password once auth is enabled.
	RootPassword string
	opts         EtcdOptions
	dir          string
	bin          string
	port         int
	peer         int
}

// StartEtcd starts a single-member etcd on loopback with its data in a
// temporary folder, serving plain HTTP without authentication.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return StartEtcdWith(t, EtcdOptions{})
}

// StartEtcdWith starts etcd like StartEtcd, with TLS and/or password
// authentication as the options ask (see EtcdOptions).
func StartEtcdWith(t testing.TB, o EtcdOptions) *Etcd {
	t.Helper()
	if o.ClientCertAuth && !o.TLS {
		t.Fatal("testenv: EtcdOptions.ClientCertAuth needs TLS")
	}
	e := &Etcd{bin: binary(t, "EBBFLOW_ETCD_BIN"), dir: t.TempDir(), port: FreePort(t), peer: FreePort(t), opts: o}
	e.Endpoint = "127.0.0.1:" + strconv.Itoa(e.port)
	e.URL = "http://" + e.Endpoint
	if o.TLS {
		e.TLS = newEtcdTLS(t)
		e.URL = "https://" + e.Endpoint
	}
	e.start(t)
	if o.Auth != nil {
		e.enableAuth(t, *o.Auth)
	}
	return e
}

func (e *Etcd) start(t testing.TB) {
	t.Helper()
	peer := "http://127.0.0.1:" + strconv.Itoa(e.peer)
	args := []string{"--name", "test", "--data-dir", e.dir,
		"--listen-client-urls", e.URL, "--advertise-client-urls", e.URL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer, "--log-level", "warn"}
	args = append(args, e.securityArgs()...)
	e.Process = startProcess(t, "etcd", exec.Command(e.bin, args...))
	waitHealthy(t, e.URL+"/health", e.healthClient(t), e.Process)
}

// Restart starts the server again on the same data and ports after Kill
// (with the same TLS material; users and auth state live in the data).
func (e *Etcd) Restart(t testing.TB) {
	t.Helper()
	e.Kill()
	e.start(t)
}

// MinIO is a running MinIO server.
type MinIO struct {
	*Process
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	dir       string
	bin       string
	port      int
}

// StartMinIO starts MinIO on loopback with a temporary data folder.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{bin: binary(t, "EBBFLOW_MINIO_BIN"), dir: t.TempDir(), port: FreePort(t), AccessKey: "ebbflow-test", SecretKey: "ebbflow-test-secret-key"}
	m.Endpoint = "127.0.0.1:" + strconv.Itoa(m.port)
	m.start(t)
	return m
}

func (m *MinIO) start(t testing.TB) {
	t.Helper()
	console := FreePort(t)
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.Endpoint, "--console-address", "127.0.0.1:"+strconv.Itoa(console), m.dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	m.Process = startProcess(t, "minio", cmd)
	waitHTTP(t, "http://"+m.Endpoint+"/minio/health/ready", m.Process)
}

// Stop kills MinIO (an outage); Start brings it back on the same data.
func (m *MinIO) Stop() { m.Kill() }

// Start starts a stopped MinIO again.
func (m *MinIO) Start(t testing.TB) { m.start(t) }

func waitHTTP(t testing.TB, url string, p *Process) {
	t.Helper()
	waitHealthy(t, url, http.DefaultClient, p)
}

func waitHealthy(t testing.TB, url string, client *http.Client, p *Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited while starting:\n%s", p.Name, tail(p.Log()))
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s after 60s:\n%s", p.Name, url, tail(p.Log()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Sprint(strings.Join(lines, "\n"))
}
