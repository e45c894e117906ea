package jobcluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/cluster"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/internal/testenv"
)

// countingKV counts the Gets of keys under prefix that go through it.
type countingKV struct {
	clientv3.KV
	prefix string
	gets   atomic.Int64
}

func (k *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if strings.HasPrefix(key, k.prefix) {
		k.gets.Add(1)
	}
	return k.KV.Get(ctx, key, opts...)
}

func newClient(t *testing.T, e *testenv.Etcd) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testJM is a JobManager of a job without TaskManagers (it never deploys)
// whose REST API is served, and whose etcd Gets under the jobmanagers keys
// are counted.
type testJM struct {
	*JobManager
	kv     *countingKV
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan error
}

func newTestJM(t *testing.T, e *testenv.Etcd, storage checkpoint.Storage, clusterID, id string, edit func(*Config)) *testJM {
	t.Helper()
	cli := newClient(t, e)
	kv := &countingKV{KV: cli.KV, prefix: cluster.JobManagerKey(clusterID, "")}
	cli.KV = kv
	cfg := Config{Cluster: clusterID, ID: id, Job: "test", Graph: &graph.Graph{Job: "test", MaxParallelism: 8},
		Etcd: cli, Storage: storage, Logger: zaptest.NewLogger(t).With(zap.String("test", t.Name()))}
	if edit != nil {
		edit(&cfg)
	}
	jm, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tj := &testJM{JobManager: jm, kv: kv}
	tj.srv = httptest.NewServer(jm.Handler())
	t.Cleanup(tj.srv.Close)
	jm.SetHTTPAdvertise(tj.srv.Listener.Addr().String())
	return tj
}

func newStorage(t *testing.T) checkpoint.Storage {
	t.Helper()
	st, err := checkpoint.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// start runs the JobManager until the test ends or stop.
func (j *testJM) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel, j.done = cancel, make(chan error, 1)
	go func() { j.done <- j.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-j.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s: Run did not return 30s after its context ended", j.cfg.ID)
		}
	})
}

// stop ends Run and returns its error.
func (j *testJM) stop(t *testing.T) error {
	t.Helper()
	j.cancel()
	return j.wait(t, 30*time.Second)
}

// wait returns Run's error, failing the test if Run goes on past timeout.
func (j *testJM) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-j.done:
		j.done <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("%s: Run still running after %v", j.cfg.ID, timeout)
		return nil
	}
}

// waitLoop waits until the JobManager leads and its event loop answers.
func (j *testJM) waitLoop(t *testing.T) {
	t.Helper()
	waitFor(t, j.cfg.ID+" leads", 30*time.Second, func() bool { return j.Epoch() != 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := j.TriggerSavepoint(ctx); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("%s: savepoint of a job without TaskManagers: %v, want the loop's answer that the job is not running", j.cfg.ID, err)
	}
}

// synced reports whether the standby's view of the leader is synced.
func (j *testJM) synced() bool {
	j.leaders.mu.Lock()
	defer j.leaders.mu.Unlock()
	return j.leaders.synced
}

// getJob asks j's REST API for the job status.
func (j *testJM) getJob(t *testing.T, query string) (Status, *http.Response, error) {
	t.Helper()
	var st Status
	resp, err := http.Get(j.srv.URL + "/v1/job" + query)
	if err != nil {
		return st, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, resp, errors.New(resp.Status)
	}
	return st, resp, json.NewDecoder(resp.Body).Decode(&st)
}

// storedHistory reads the rescale history from etcd (nil if none).
func storedHistory(t *testing.T, cli *clientv3.Client, clusterID string) []RescaleRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, cluster.RescalesKey(clusterID))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var hist []RescaleRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &hist); err != nil {
		t.Fatal(err)
	}
	return hist
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func record(to int) RescaleRecord {
	return RescaleRecord{Trigger: "test", From: to - 1, To: to, StartedAt: time.Now().UTC().Truncate(time.Millisecond), Complete: true}
}

func tos(hist []RescaleRecord) []int {
	var out []int
	for _, r := range hist {
		out = append(out, r.To)
	}
	return out
}

// inFlight reports whether a history write has started and is not over.
func (h *historyWriter) inFlight() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attempts > h.finished
}
