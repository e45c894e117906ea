// Package docker runs ebbflow as a user of deploy/docker and deploy/compose
// would: it builds the images on the real Docker engine, brings up the
// compose stack (etcd, MinIO, a JobManager running wordcount, TaskManagers),
// rescales it with `docker compose up --scale`, stops, kills and partitions
// TaskManagers, and checks the REST API and the committed output.
//
// No registry can be reached here, so the images build on local parts only:
// the Go stage on an image made from this machine's Go installation
// (deploy/docker/go-local.Dockerfile), the final stage on scratch, and etcd
// and MinIO from the static binaries of scripts/tools.sh
// (deploy/compose/local, docker-compose.local.yml).
//
// Without a reachable Docker engine the tests skip and say so, unless
// EBBFLOW_REQUIRE_DOCKER=1 (CI) makes that a failure.
package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Image names. They stay tagged after the tests (a later run reuses their
// layers); the images and build caches they replace are removed.
const (
	ebbflowImage = "ebbflow-e2e/ebbflow:latest"
	buildImage   = "ebbflow-e2e/build:latest" // the Dockerfile's build stage, kept as the cache of the next build
	etcdImage    = "ebbflow-e2e/etcd:latest"
	minioImage   = "ebbflow-e2e/minio:latest"
)

// engine is what the tests drive: the docker CLI and a compose command.
type engine struct {
	compose []string // "docker compose" or "docker-compose"
}

var (
	engineOnce sync.Once
	engineVal  *engine
	engineErr  error
)

// requireEngine returns the engine, or skips the test when no Docker engine
// or compose tool is usable — a failure instead with EBBFLOW_REQUIRE_DOCKER=1.
func requireEngine(t *testing.T) *engine {
	t.Helper()
	engineOnce.Do(func() { engineVal, engineErr = findEngine() })
	if engineErr != nil {
		if os.Getenv("EBBFLOW_REQUIRE_DOCKER") == "1" {
			t.Fatalf("EBBFLOW_REQUIRE_DOCKER=1 but %v", engineErr)
		}
		t.Skipf("skipped: %v (set EBBFLOW_REQUIRE_DOCKER=1 to make this a failure)", engineErr)
	}
	return engineVal
}

func findEngine() (*engine, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, errors.New("no docker command in PATH")
	}
	if out, err := run(30*time.Second, nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		return nil, fmt.Errorf("no Docker engine reachable (docker info: %v: %s)", err, strings.TrimSpace(out))
	}
	if _, err := run(30*time.Second, nil, "docker", "compose", "version"); err == nil {
		return &engine{compose: []string{"docker", "compose"}}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		if _, err := run(30*time.Second, nil, "docker-compose", "version"); err == nil {
			return &engine{compose: []string{"docker-compose"}}, nil
		}
	}
	return nil, errors.New("a Docker engine is reachable but neither `docker compose` nor `docker-compose` works")
}

// run runs a command with a timeout and returns its combined output.
func run(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no result after %v", name, strings.Join(args, " "), timeout)
	}
	return out.String(), err
}

// docker runs the docker CLI and fails the test on an error.
func docker(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := run(timeout, nil, "docker", args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, tail(out, 60))
	}
	return strings.TrimSpace(out)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// repoRoot is the checkout this test belongs to.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "docker", "Dockerfile")); err != nil {
		t.Fatalf("not in the ebbflow checkout: %v", err)
	}
	return root
}

var (
	imagesOnce sync.Once
	imagesErr  error
)

// requireImages builds the ebbflow, etcd and MinIO images once per test
// binary.
func requireImages(t *testing.T, e *engine) {
	t.Helper()
	imagesOnce.Do(func() { imagesErr = buildImages(t, repoRoot(t)) })
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
}

func buildImages(t *testing.T, root string) error {
	start := time.Now()
	goImage := "ebbflow-e2e/go:" + runtime.Version()
	if _, err := run(30*time.Second, nil, "docker", "image", "inspect", goImage); err != nil {
		goroot, err := run(30*time.Second, nil, "go", "env", "GOROOT")
		if err != nil {
			return fmt.Errorf("go env GOROOT: %v: %s", err, goroot)
		}
		t0 := time.Now()
		if out, err := run(15*time.Minute, nil, "docker", "build", "-t", goImage,
			"-f", filepath.Join(root, "deploy/docker/go-local.Dockerfile"), strings.TrimSpace(goroot)); err != nil {
			return fmt.Errorf("build %s from the local Go installation: %v\n%s", goImage, err, tail(out, 40))
		}
		t.Logf("built %s in %v", goImage, time.Since(t0).Round(time.Second))
	}

	// Images these tags pointed to before are removed once replaced (if
	// nothing else uses them), so repeated runs do not pile them up.
	previous := map[string]string{}
	for _, tag := range []string{ebbflowImage, etcdImage, minioImage} {
		if id, err := run(30*time.Second, nil, "docker", "image", "inspect", "--format", "{{.Id}}", tag); err == nil {
			previous[tag] = strings.TrimSpace(id)
		}
	}
	defer func() {
		for tag, old := range previous {
			if id, err := run(30*time.Second, nil, "docker", "image", "inspect", "--format", "{{.Id}}", tag); err == nil && strings.TrimSpace(id) != old {
				_, _ = run(time.Minute, nil, "docker", "image", "rm", old)
			}
		}
	}()

	ctxDir, err := buildContext(t, root)
	if err != nil {
		return err
	}
	buildArgs := []string{"--build-arg", "GO_IMAGE=" + goImage, "--build-arg", "BASE_IMAGE=scratch", "-f", filepath.Join(ctxDir, "deploy/docker/Dockerfile")}
	t0 := time.Now()
	// The build stage first, tagged: it is the cache of the next build, and
	// the caches it replaces become untagged and can be pruned.
	if out, err := run(30*time.Minute, nil, "docker", append(append([]string{"build", "--target", "build", "-t", buildImage}, buildArgs...), ctxDir)...); err != nil {
		return fmt.Errorf("docker build of deploy/docker/Dockerfile (build stage): %v\n%s", err, tail(out, 60))
	}
	if out, err := run(10*time.Minute, nil, "docker", append(append([]string{"build", "-t", ebbflowImage}, buildArgs...), ctxDir)...); err != nil {
		return fmt.Errorf("docker build of deploy/docker/Dockerfile: %v\n%s", err, tail(out, 60))
	}
	t.Logf("built %s in %v", ebbflowImage, time.Since(t0).Round(time.Second))
	if out, err := run(2*time.Minute, nil, "docker", "image", "prune", "-f", "--filter", "label=io.ebbflow.stage=build"); err != nil {
		t.Logf("pruning old build caches: %v: %s", err, out)
	}

	// etcd and MinIO from the binaries of scripts/tools.sh.
	for _, s := range []struct{ env, name, image, dockerfile string }{
		{"EBBFLOW_ETCD_BIN", "etcd", etcdImage, "deploy/compose/local/etcd.Dockerfile"},
		{"EBBFLOW_MINIO_BIN", "minio", minioImage, "deploy/compose/local/minio.Dockerfile"},
	} {
		bin := os.Getenv(s.env)
		if bin == "" {
			return fmt.Errorf("%s is not set: run through `make e2e-docker`, or `eval \"$(scripts/tools.sh)\"` first", s.env)
		}
		dir := t.TempDir()
		if err := linkOrCopy(bin, filepath.Join(dir, s.name)); err != nil {
			return fmt.Errorf("%s=%s: %v", s.env, bin, err)
		}
		t0 := time.Now()
		if out, err := run(10*time.Minute, nil, "docker", "build", "-t", s.image, "--build-arg", "EBBFLOW_IMAGE="+ebbflowImage,
			"-f", filepath.Join(root, s.dockerfile), dir); err != nil {
			return fmt.Errorf("docker build of %s: %v\n%s", s.dockerfile, err, tail(out, 40))
		}
		t.Logf("built %s in %v", s.image, time.Since(t0).Round(time.Second))
	}
	t.Logf("images ready after %v", time.Since(start).Round(time.Second))
	return nil
}

// buildContext is what a user's checkout holds — the files git tracks or
// would track, as they are in the work tree — plus a vendor/ folder, so the
// image builds without network.
func buildContext(t *testing.T, root string) (string, error) {
	out, err := run(time.Minute, nil, "git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return "", fmt.Errorf("list the sources with git: %v: %s", err, out)
	}
	dir := t.TempDir()
	for _, rel := range strings.Split(strings.TrimRight(out, "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree
		}
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := copyFile(src, dst, fi.Mode().Perm()); err != nil {
			return "", err
		}
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := runIn(dir, 5*time.Minute, env, "go", "mod", "vendor"); err != nil {
		return "", fmt.Errorf("go mod vendor: %v\n%s", err, tail(out, 30))
	}
	return dir, nil
}

func runIn(dir string, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	return copyFile(src, dst, fi.Mode().Perm())
}

// poll calls check every 200 ms until it reports done or timeout passes;
// then the test fails with what check last said.
func poll(t *testing.T, what string, timeout time.Duration, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v; last state: %s", what, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
