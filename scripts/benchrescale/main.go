// Command benchrescale measures reactive rescales with real processes: a
// real etcd, a real MinIO (checkpoints in S3), a JobManager running the
// statebench job with a chosen state size, and TaskManagers. It repeats a
// planned scale-up (a TaskManager joins) and a graceful drain (SIGTERM) and
// reports the pause percentiles and the phase breakdown from the
// JobManager's rescale history. Run by `make bench-rescale`.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type rescale struct {
	Trigger    string  `json:"trigger"`
	From       int     `json:"from"`
	To         int     `json:"to"`
	Savepoint  bool    `json:"savepoint"`
	SnapshotMs float64 `json:"snapshotMs"`
	DeployMs   float64 `json:"deployMs"`
	FirstOutMs float64 `json:"firstOutMs"`
	PauseMs    float64 `json:"pauseMs"`
	StateBytes int64   `json:"stateBytes"`
}

func main() {
	bin := flag.String("bin", "bin/ebbflow", "ebbflow binary")
	rounds := flag.Int("rounds", 10, "scale-up + drain rounds per state size")
	sizes := flag.String("sizes", "10MB,100MB", "state sizes (keys × 1000 bytes)")
	rate := flag.Int("rate", 20000, "records per second while filling and running")
	flag.DurationVar(&stepTimeout, "step-timeout", 3*time.Minute, "longest wait for one rescale")
	flag.BoolVar(&keepLogs, "keep", false, "keep the processes' logs folder")
	flag.Parse()
	etcdBin, minioBin := os.Getenv("EBBFLOW_ETCD_BIN"), os.Getenv("EBBFLOW_MINIO_BIN")
	if etcdBin == "" || minioBin == "" {
		fail("EBBFLOW_ETCD_BIN and EBBFLOW_MINIO_BIN must be set (eval \"$(scripts/tools.sh)\")")
	}
	host, _ := os.Hostname()
	fmt.Printf("## Rescale pauses (`make bench-rescale`)\n\nMachine: %s, %d CPUs as seen by Go; %s. Real etcd, real MinIO (checkpoints in S3), separate JobManager and TaskManager processes on loopback.\n\n", host, numCPU(), time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| state | trigger | rescales | pause p50 | pause p95 | savepoint p50 | deploy+restore p50 | first record p50 | state in snapshot |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, sz := range strings.Split(*sizes, ",") {
		mb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(sz), "MB"))
		if err != nil {
			fail("bad size %q", sz)
		}
		recs := run(*bin, etcdBin, minioBin, mb*1000, *rounds, *rate)
		for _, trig := range []string{"scale-up", "drain"} {
			var rs []rescale
			for _, r := range recs {
				if r.Trigger == trig {
					rs = append(rs, r)
				}
			}
			if len(rs) == 0 {
				continue
			}
			get := func(f func(rescale) float64) []float64 {
				var v []float64
				for _, r := range rs {
					v = append(v, f(r))
				}
				sort.Float64s(v)
				return v
			}
			pause := get(func(r rescale) float64 { return r.PauseMs })
			fmt.Printf("| %d MB | %s | %d | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.0f ms | %.1f MB |\n", mb, trig, len(rs), pct(pause, 50), pct(pause, 95),
				pct(get(func(r rescale) float64 { return r.SnapshotMs }), 50), pct(get(func(r rescale) float64 { return r.DeployMs }), 50),
				pct(get(func(r rescale) float64 { return r.FirstOutMs }), 50), float64(rs[len(rs)-1].StateBytes)/1e6)
		}
	}
}

func pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	i := (len(v)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return v[i-1]
}

func numCPU() int { n, _ := strconv.Atoi(strings.TrimSpace(out("nproc"))); return n }

func out(name string, args ...string) string {
	b, _ := exec.Command(name, args...).Output()
	return string(b)
}

var (
	stepTimeout time.Duration
	keepLogs    bool
	running     procs  // killed on failure too
	logsDir     string // kept on failure
)

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchrescale: "+f+"\n", a...)
	running.killAll()
	if logsDir != "" {
		fmt.Fprintf(os.Stderr, "benchrescale: the processes' logs are in %s\n", logsDir)
	}
	os.Exit(1)
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("%v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

type procs struct{ list []*exec.Cmd }

func (p *procs) start(env []string, logf string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	f, err := os.Create(logf)
	if err != nil {
		fail("%v", err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		fail("start %s: %v", name, err)
	}
	p.list = append(p.list, cmd)
	return cmd
}

func (p *procs) killAll() {
	for _, c := range p.list {
		_ = c.Process.Kill()
		_, _ = c.Process.Wait()
	}
}

func waitHTTP(url string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail("%s not ready after %v", url, timeout)
}

type status struct {
	Phase       string    `json:"phase"`
	Parallelism int       `json:"parallelism"`
	Rescales    []rescale `json:"rescales"`
}

func getStatus(addr string) (status, bool) {
	var st status
	resp, err := http.Get("http://" + addr + "/v1/job")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil
}

func waitFor(addr, what string, cond func(status) bool) status {
	deadline := time.Now().Add(stepTimeout)
	for time.Now().Before(deadline) {
		if st, ok := getStatus(addr); ok && cond(st) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _ := getStatus(addr)
	fail("timed out after %v waiting for %s (phase %q, parallelism %d, %d rescales)", stepTimeout, what, st.Phase, st.Parallelism, len(st.Rescales))
	return status{}
}

func run(bin, etcdBin, minioBin string, keys, rounds, rate int) []rescale {
	dir, err := os.MkdirTemp("", "ebbflow-benchrescale")
	if err != nil {
		fail("%v", err)
	}
	logsDir = dir
	p := &running
	defer func() {
		p.killAll()
		p.list = nil
		if keepLogs {
			fmt.Fprintf(os.Stderr, "benchrescale: logs kept in %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
		logsDir = ""
	}()
	etcdAddr, peer := freePort(), freePort()
	p.start(nil, filepath.Join(dir, "etcd.log"), etcdBin, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", "http://"+etcdAddr,
		"--advertise-client-urls", "http://"+etcdAddr, "--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "default=http://"+peer, "--log-level", "error")
	waitHTTP("http://"+etcdAddr+"/health", time.Minute)
	minioAddr := freePort()
	p.start([]string{"MINIO_ROOT_USER=bench", "MINIO_ROOT_PASSWORD=bench-secret-key", "MINIO_BROWSER=off"}, filepath.Join(dir, "minio.log"),
		minioBin, "server", "--quiet", "--address", minioAddr, "--console-address", freePort(), filepath.Join(dir, "minio"))
	waitHTTP("http://"+minioAddr+"/minio/health/ready", time.Minute)
	env := []string{"EBBFLOW_ETCD_ENDPOINTS=" + etcdAddr, "EBBFLOW_CLUSTER_ID=bench", "EBBFLOW_CHECKPOINT_DIR=s3://bench/chk",
		"EBBFLOW_S3_ENDPOINT=" + minioAddr, "EBBFLOW_S3_ACCESS_KEY=bench", "EBBFLOW_S3_SECRET_KEY=bench-secret-key", "EBBFLOW_S3_TLS=false",
		"EBBFLOW_S3_CREATE_BUCKET=true", "EBBFLOW_LOG_LEVEL=warn", "EBBFLOW_CHECKPOINT_INTERVAL=30s",
		"EBBFLOW_JOBMANAGER_STABILIZATION=200ms", "EBBFLOW_JOBMANAGER_COOLDOWN=0s", "EBBFLOW_TASKMANAGER_LEASE_TTL=3s"}
	tm := func(id string) *exec.Cmd {
		return p.start(env, filepath.Join(dir, id+".log"), bin, "taskmanager", "--id", id, "--slots", "2", "--bind", "127.0.0.1:0", "--data-bind", "127.0.0.1:0", "--http", "127.0.0.1:0")
	}
	tm("tm-base")
	jmAddr := freePort()
	p.start(env, filepath.Join(dir, "jm.log"), bin, "jobmanager", "--http", jmAddr, "statebench", "--keys", strconv.Itoa(keys), "--value-bytes", "1000", "--rate", strconv.Itoa(rate))
	waitFor(jmAddr, "the job running", func(s status) bool { return s.Phase == "running" && s.Parallelism == 2 })
	// Let every key get its state.
	time.Sleep(time.Duration(keys/rate+1) * time.Second)
	n := 0
	for i := 0; i < rounds; i++ {
		t := tm("tm-" + strconv.Itoa(i))
		n++
		waitFor(jmAddr, "scale-up", func(s status) bool { return len(s.Rescales) >= n && s.Parallelism == 4 && s.Phase == "running" })
		_ = t.Process.Signal(syscall.SIGTERM)
		n++
		waitFor(jmAddr, "drain", func(s status) bool { return len(s.Rescales) >= n && s.Parallelism == 2 && s.Phase == "running" })
		_, _ = t.Process.Wait()
	}
	st, _ := getStatus(jmAddr)
	return st.Rescales
}
