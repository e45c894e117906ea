package docker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/jobcluster"
)

// stack is one compose project of deploy/compose with the local override.
type stack struct {
	t       *testing.T
	e       *engine
	project string
	files   []string
	env     []string
	jmURL   string // http://127.0.0.1:PORT of the JobManager's REST API
	s3      string // 127.0.0.1:PORT of MinIO
}

const (
	s3AccessKey = "ebbflow-e2e"
	s3SecretKey = "ebbflow-e2e-secret-key"
)

// newStack prepares a compose project with a unique name; t.Cleanup takes
// it down with its volumes (after printing its logs if the test failed).
func newStack(t *testing.T, e *engine, input string, settings map[string]string) *stack {
	t.Helper()
	root := repoRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s := &stack{t: t, e: e, project: "ebbflowe2e" + hex.EncodeToString(b),
		files: []string{filepath.Join(root, "deploy/compose/docker-compose.yml"), filepath.Join(root, "deploy/compose/docker-compose.local.yml")}}
	vars := map[string]string{
		"EBBFLOW_IMAGE":     ebbflowImage,
		"ETCD_IMAGE":        etcdImage,
		"MINIO_IMAGE":       minioImage,
		"EBBFLOW_INPUT_DIR": input,
		// Published on loopback at ports the engine picks.
		"EBBFLOW_JOBMANAGER_PUBLISH": "127.0.0.1:",
		"MINIO_PUBLISH":              "127.0.0.1:",
		"MINIO_CONSOLE_PUBLISH":      "127.0.0.1:",
		"MINIO_ROOT_USER":            s3AccessKey,
		"MINIO_ROOT_PASSWORD":        s3SecretKey,
		"EBBFLOW_LOG_FORMAT":         "console",
	}
	for k, v := range settings {
		vars[k] = v
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); vars[k] == "" && !strings.HasPrefix(k, "COMPOSE_") {
			s.env = append(s.env, kv)
		}
	}
	for k, v := range vars {
		s.env = append(s.env, k+"="+v)
	}
	t.Cleanup(s.down)
	return s
}

// compose runs a compose command of this project.
func (s *stack) compose(timeout time.Duration, args ...string) (string, error) {
	full := append([]string{}, s.e.compose[1:]...)
	full = append(full, "-p", s.project)
	for _, f := range s.files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	return run(timeout, s.env, s.e.compose[0], full...)
}

func (s *stack) mustCompose(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.compose(timeout, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", strings.Join(s.e.compose, " "), strings.Join(args, " "), err, tail(out, 60))
	}
	return out
}

func (s *stack) down() {
	if s.t.Failed() {
		if out, err := s.compose(time.Minute, "logs", "--no-color", "--tail", "150"); err == nil {
			s.t.Logf("logs of %s:\n%s", s.project, out)
		}
	}
	// -t 5: TaskManagers would drain for up to their grace period; nothing
	// is left to drain for.
	if out, err := s.compose(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		s.t.Errorf("compose down of %s: %v\n%s", s.project, err, out)
	}
}

// up brings the stack up with n TaskManagers (or rescales it to n).
func (s *stack) up(n int) {
	s.t.Helper()
	s.mustCompose(5*time.Minute, "up", "-d", "--scale", "taskmanager="+strconv.Itoa(n))
	if s.jmURL == "" {
		s.jmURL = "http://" + s.port("jobmanager", "8081")
		s.s3 = s.port("minio", "9000")
	}
}

// port is the host address that a service's container port is published at.
func (s *stack) port(service, port string) string {
	s.t.Helper()
	out := strings.TrimSpace(s.mustCompose(time.Minute, "port", service, port))
	if !strings.HasPrefix(out, "127.0.0.1:") {
		s.t.Fatalf("%s port %s is published at %q, want 127.0.0.1:PORT", service, port, out)
	}
	return out
}

// container is the state of one container, from docker inspect.
type container struct {
	ID       string
	Hostname string
	Running  bool
	Status   string
	ExitCode int
	Restarts int
	Health   string
	Networks []string
}

func (s *stack) inspect(id string) container {
	s.t.Helper()
	out := docker(s.t, time.Minute, "inspect", "--format",
		`{{.Id}}|{{.Config.Hostname}}|{{.State.Running}}|{{.State.Status}}|{{.State.ExitCode}}|{{.RestartCount}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{range $k, $v := .NetworkSettings.Networks}}{{$k}},{{end}}`, id)
	f := strings.Split(out, "|")
	if len(f) != 8 {
		s.t.Fatalf("docker inspect %s: unexpected %q", id, out)
	}
	c := container{ID: f[0], Hostname: f[1], Running: f[2] == "true", Status: f[3], Health: f[6], Networks: strings.FieldsFunc(f[7], func(r rune) bool { return r == ',' })}
	c.ExitCode, _ = strconv.Atoi(f[4])
	c.Restarts, _ = strconv.Atoi(f[5])
	return c
}

// containers lists the containers of a service, running or not, in id order.
func (s *stack) containers(service string) []container {
	s.t.Helper()
	// -a: compose v2 lists only running containers by default (v1 all).
	out, err := s.compose(time.Minute, "ps", "-a", "-q", service)
	if err != nil {
		out = s.mustCompose(time.Minute, "ps", "-q", service)
	}
	var cs []container
	for _, id := range strings.Fields(out) {
		cs = append(cs, s.inspect(id))
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	return cs
}

func (s *stack) running(service string) []container {
	var out []container
	for _, c := range s.containers(service) {
		if c.Running {
			out = append(out, c)
		}
	}
	return out
}

// tmOf maps a container to its TaskManager id: hostname-pid, and the
// binary is PID 1.
func tmOf(c container) string { return c.Hostname + "-1" }

func (s *stack) getJSON(path string, v any) error {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(s.jmURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (s *stack) status() (jobcluster.Status, error) {
	var st jobcluster.Status
	err := s.getJSON("/v1/job", &st)
	return st, err
}

type tmStatus struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Connected bool   `json:"connected"`
}

func (s *stack) taskManagers() ([]tmStatus, error) {
	var tms []tmStatus
	err := s.getJSON("/v1/taskmanagers", &tms)
	return tms, err
}

func describe(st jobcluster.Status) string {
	var rs []string
	for _, r := range st.Rescales {
		rs = append(rs, fmt.Sprintf("%s %d->%d complete=%v", r.Trigger, r.From, r.To, r.Complete))
	}
	return fmt.Sprintf("phase %s, parallelism %d, %d taskmanagers, attempt %d, %d restarts, lastError %q, rescales [%s]",
		st.Phase, st.Parallelism, st.TaskManagers, st.Attempt, st.Restarts, st.LastError, strings.Join(rs, "; "))
}

// waitParallelism waits until the job runs at parallelism p with the last
// rescale (if want is not empty) of that trigger complete at p.
func (s *stack) waitParallelism(what string, p int, trigger string, timeout time.Duration) jobcluster.Status {
	s.t.Helper()
	var last jobcluster.Status
	poll(s.t, what, timeout, func() (bool, string) {
		st, err := s.status()
		if err != nil {
			return false, err.Error()
		}
		last = st
		if st.Phase == "finishing" || st.Phase == "finished" {
			s.t.Fatalf("%s: the job %s before this step (raise the input size or lower the rate): %s", what, st.Phase, describe(st))
		}
		if st.Phase != "running" || st.Parallelism != p {
			return false, describe(st)
		}
		if trigger != "" {
			if len(st.Rescales) == 0 {
				return false, describe(st)
			}
			r := st.Rescales[len(st.Rescales)-1]
			if r.Trigger != trigger || r.To != p || !r.Complete {
				return false, describe(st)
			}
		}
		return true, ""
	})
	s.t.Logf("%s: %s", what, describe(last))
	return last
}

// logs is what a container printed.
func (s *stack) logs(id string) string {
	s.t.Helper()
	out, err := run(time.Minute, nil, "docker", "logs", id)
	if err != nil {
		s.t.Fatalf("docker logs %s: %v", id, err)
	}
	return out
}
