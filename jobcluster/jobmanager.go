package jobcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/cluster"
	"github.com/ebbflow/ebbflow/internal/control"
	"github.com/ebbflow/ebbflow/reactive"
	"github.com/ebbflow/ebbflow/scheduler"
)

// ErrLostLeadership ends a JobManager whose etcd session ended or whose
// guarded write failed: another JobManager may be leading now.
var ErrLostLeadership = errors.New("jobmanager: lost leadership")

// ErrAlreadyFinished is returned when the cluster's job already finished.
var ErrAlreadyFinished = errors.New("jobmanager: the job already finished")

// JobManager runs one job.
type JobManager struct {
	cfg Config
	log *zap.Logger

	// httpAdvertise is where this JobManager's REST API is reached (set
	// before Run); a standby forwards REST requests to the leader's.
	httpAdvertise string

	// leadership
	session  *concurrency.Session
	election *concurrency.Election
	epoch    int64
	leaderKy string

	events chan any
	wg     sync.WaitGroup

	// history stores the rescale history in etcd for the leader's loop;
	// leaders tells a standby who leads and at which REST address.
	history *historyWriter
	leaders *leaderCache

	// state owned by the event loop
	tms          map[string]cluster.TaskManagerInfo
	conns        map[string]*tmConn
	dialing      map[string]bool
	unreachable  map[string]bool
	released     map[string]bool // TaskManagers told to leave after draining
	attemptStats map[int64]map[string]control.Stats
	machine      *reactive.Machine
	rescale      *rescale
	deferred     *rescale // a restart waiting for its backoff
	lastWait     string
	attemptNo    int64
	takeover     bool  // a previous leader ran this job: record the first deployment as a failover
	lastP        int   // parallelism of the last deployment (the "from" of the next rescale, also after a failed one is gone)
	lastID       int64 // last checkpoint id used
	latest       *cluster.CheckpointPointer
	dep          *deployment
	failures     int
	chkFails     int // consecutive failed checkpoints
	restartAt    time.Time
	// commitsInFlight counts checkpoint commits (metadata, then the
	// pointer's CAS) not yet answered. No attempt is deployed while one
	// is: it must restore from the checkpoint that commit may make the
	// latest, not from the one before (whose restore would not publish,
	// and whose tidying up would delete, the newer checkpoint's output).
	commitsInFlight int
	// pointerUnsure: a commit may have moved the pointer without an
	// answer; the next deployment reads it back first.
	pointerUnsure bool
	finished      bool

	mu         sync.Mutex
	status     Status
	tmView     []TaskManagerStatus
	savepoints map[int64]*SavepointStatus
	metrics    *metrics
}

type tmConn struct {
	id   string
	conn *control.Conn
}

// event types
type (
	evTMs struct {
		tms map[string]cluster.TaskManagerInfo
	}
	evConn    struct{ c *tmConn }
	evConnErr struct {
		id  string
		err error
	}
	evMsg struct {
		c *tmConn
		m *control.Message
	}
	evDown      struct{ c *tmConn }
	evCommitted struct {
		dep *deployment
		p   *checkpoint.Pending
		md  *checkpoint.Metadata
		dir string
		err error
		// unsure: the pointer's CAS failed without an answer, and reading
		// the pointer back failed too: it may have moved.
		unsure bool
	}
	evFatal     struct{ err error }
	evSavepoint struct{ reply chan savepointReply }
)

type savepointReply struct {
	sp  SavepointStatus
	err error
}

// New creates a JobManager.
func New(cfg Config) (*JobManager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	jm := &JobManager{cfg: cfg, log: cfg.Logger.With(zap.String("jobmanager", cfg.ID), zap.String("job", cfg.Job)),
		events: make(chan any, 256), tms: map[string]cluster.TaskManagerInfo{}, conns: map[string]*tmConn{}, dialing: map[string]bool{},
		unreachable: map[string]bool{}, released: map[string]bool{}, attemptStats: map[int64]map[string]control.Stats{}, savepoints: map[int64]*SavepointStatus{}}
	jm.metrics = newMetrics(jm)
	jm.history = newHistoryWriter(jm.log, func(ctx context.Context, val string) error {
		return jm.guardedPut(ctx, cluster.RescalesKey(jm.cfg.Cluster), val)
	})
	jm.leaders = newLeaderCache(cfg.Cluster)
	m, err := jm.newMachine()
	if err != nil {
		return nil, fmt.Errorf("jobmanager: %w", err)
	}
	jm.machine = m
	return jm, nil
}

// SetHTTPAdvertise records where this JobManager's REST API is reached
// (host:port). Call it before Run: a standby forwards REST requests to the
// leader's address.
func (jm *JobManager) SetHTTPAdvertise(addr string) { jm.httpAdvertise = addr }

// Epoch is the leader epoch (0 before leadership).
func (jm *JobManager) Epoch() int64 {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return jm.epoch
}

// Run campaigns for leadership, then runs the job until it finishes (nil),
// fails, ctx ends, or leadership is lost.
func (jm *JobManager) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		jm.closeConns()
		jm.wg.Wait()
	}()
	jm.setPhase("standby")
	s, err := concurrency.NewSession(jm.cfg.Etcd, concurrency.WithTTL(int(jm.cfg.SessionTTL/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("jobmanager: etcd session: %w", err)
	}
	jm.session = s
	if jm.httpAdvertise != "" {
		val, _ := json.Marshal(cluster.JobManagerInfo{ID: jm.cfg.ID, HTTP: jm.httpAdvertise})
		if _, err := jm.cfg.Etcd.Put(ctx, cluster.JobManagerKey(jm.cfg.Cluster, jm.cfg.ID), string(val), clientv3.WithLease(s.Lease())); err != nil {
			s.Close()
			return fmt.Errorf("jobmanager: register %s: %w", cluster.JobManagerKey(jm.cfg.Cluster, jm.cfg.ID), err)
		}
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		if jm.election != nil && jm.epoch != 0 {
			_ = jm.election.Resign(rctx)
		}
		s.Close()
		// Close revokes the lease with the session's context, which is
		// done when Run was stopped from outside; revoke it here too so
		// that jobmanagers/<id> goes now rather than after its TTL.
		_, _ = jm.cfg.Etcd.Revoke(rctx, s.Lease())
	}()
	jm.election = concurrency.NewElection(s, cluster.LeaderPrefix(jm.cfg.Cluster))
	jm.log.Info("campaigning for leadership", zap.String("election", cluster.LeaderPrefix(jm.cfg.Cluster)))
	// While it stands by, a JobManager follows who leads, for the REST
	// requests it forwards.
	fctx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { defer close(followed); jm.followLeader(fctx) }()
	err = jm.election.Campaign(ctx, jm.cfg.ID)
	stopFollowing()
	<-followed
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("jobmanager: campaign: %w", err)
	}
	// Under mu: Status and Epoch read the epoch from other goroutines, and
	// see it together with the phase that is no longer "standby".
	jm.mu.Lock()
	jm.epoch = jm.election.Rev()
	jm.status.Phase = "starting"
	jm.mu.Unlock()
	jm.leaderKy = jm.election.Key()
	jm.log.Info("became leader", zap.Int64("epoch", jm.epoch), zap.String("key", jm.leaderKy))
	jm.metrics.leader.Set(1)
	defer jm.metrics.leader.Set(0)

	if err := jm.prepare(ctx); err != nil {
		return err
	}
	jm.wg.Add(1)
	go jm.watchTaskManagers(ctx)
	hctx, stopHistory := context.WithCancel(ctx)
	historyDone := make(chan struct{})
	go func() {
		defer close(historyDone)
		jm.history.run(hctx, func(err error) { jm.post(hctx, evFatal{err: err}) })
	}()
	err = jm.loop(ctx)
	stopHistory()
	<-historyDone
	if !errors.Is(err, ErrLostLeadership) {
		// The last records may still be pending (a bounded job records its
		// last rescale and finishes at once): store them while this
		// JobManager still leads, within a bound.
		if ferr := jm.history.flush(); errors.Is(ferr, ErrLostLeadership) {
			jm.log.Error("the rescale history was not stored: this JobManager no longer leads", zap.Error(ferr))
		} else if ferr != nil {
			jm.log.Warn("could not store the rescale history in etcd at shutdown", zap.Error(ferr))
		}
	}
	return err
}

// guard is the condition of every write by the leader.
func (jm *JobManager) guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(jm.leaderKy), "=", jm.epoch)
}

func (jm *JobManager) guardedPut(ctx context.Context, key, val string) error {
	resp, err := jm.cfg.Etcd.Txn(ctx).If(jm.guard()).Then(clientv3.OpPut(key, val)).Commit()
	if err != nil {
		return fmt.Errorf("jobmanager: write %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: guarded write of %s refused", ErrLostLeadership, key)
	}
	return nil
}

func (jm *JobManager) guardedDelete(ctx context.Context, key string) error {
	resp, err := jm.cfg.Etcd.Txn(ctx).If(jm.guard()).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("jobmanager: delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: guarded delete of %s refused", ErrLostLeadership, key)
	}
	return nil
}

// prepare reads the job's record and latest checkpoint, and checks that
// this run may continue it.
func (jm *JobManager) prepare(ctx context.Context) error {
	resp, err := jm.cfg.Etcd.Get(ctx, cluster.JobKey(jm.cfg.Cluster))
	if err != nil {
		return fmt.Errorf("jobmanager: read job record: %w", err)
	}
	if len(resp.Kvs) > 0 {
		var info cluster.JobInfo
		if err := json.Unmarshal(resp.Kvs[0].Value, &info); err != nil {
			return fmt.Errorf("jobmanager: job record %s is corrupt: %w", cluster.JobKey(jm.cfg.Cluster), err)
		}
		same := info.Job == jm.cfg.Job && strings.Join(info.Args, "\x00") == strings.Join(jm.cfg.Args, "\x00")
		if !same && info.Status == cluster.JobFinished {
			// The cluster's previous job is done: this is a new job.
			jm.log.Info("previous job finished; starting a new one", zap.String("previous", info.Job), zap.Strings("previousArgs", info.Args))
			if err := jm.guardedDelete(ctx, cluster.LatestCheckpointKey(jm.cfg.Cluster)); err != nil {
				return err
			}
			if err := jm.guardedDelete(ctx, cluster.RescalesKey(jm.cfg.Cluster)); err != nil {
				return err
			}
			info = cluster.JobInfo{}
			same = true
			jm.attemptNo = 0
		}
		if !same {
			return fmt.Errorf("jobmanager: cluster %q holds job %s %q (status %s), not %s %q; run it with the same arguments, use another cluster id, or start over (local: --fresh)", jm.cfg.Cluster, info.Job, info.Args, info.Status, jm.cfg.Job, jm.cfg.Args)
		}
		if info.Status == cluster.JobFinished {
			return ErrAlreadyFinished
		}
		jm.attemptNo = max(jm.attemptNo, info.Attempt)
	}
	// The rescale history of earlier leaders of this job: a takeover
	// continues it, and its first deployment is recorded as a failover.
	resp, err = jm.cfg.Etcd.Get(ctx, cluster.RescalesKey(jm.cfg.Cluster))
	if err != nil {
		return fmt.Errorf("jobmanager: read rescale history: %w", err)
	}
	if len(resp.Kvs) > 0 {
		var hist []RescaleRecord
		if err := json.Unmarshal(resp.Kvs[0].Value, &hist); err != nil {
			// Informational only: say so and start a new history.
			jm.log.Warn("rescale history in etcd is unreadable; starting a new one", zap.String("key", cluster.RescalesKey(jm.cfg.Cluster)), zap.Error(err))
		} else if len(hist) > 0 {
			jm.mu.Lock()
			jm.status.Rescales = hist
			jm.mu.Unlock()
			jm.takeover = true
			jm.lastP = hist[len(hist)-1].To
		}
	}
	p, err := jm.readPointer(ctx)
	if err != nil {
		return fmt.Errorf("jobmanager: %w", err)
	}
	if p != nil {
		jm.latest = p
		jm.lastID = p.ID
	} else if jm.cfg.FromSavepoint != "" {
		dir := strings.TrimSuffix(jm.cfg.FromSavepoint, "/") + "/"
		md, err := checkpoint.ReadMetadata(ctx, jm.cfg.Storage, dir)
		if err != nil {
			return fmt.Errorf("jobmanager: --from-savepoint: %w", err)
		}
		jm.latest = &cluster.CheckpointPointer{ID: md.ID, Dir: dir, Savepoint: true}
		jm.lastID = md.ID
	}
	if jm.latest != nil {
		md, err := checkpoint.ReadMetadata(ctx, jm.cfg.Storage, jm.latest.Dir)
		if err != nil {
			return fmt.Errorf("jobmanager: latest checkpoint %d: %w", jm.latest.ID, err)
		}
		if err := checkpoint.CheckCompatible(md, jm.cfg.Graph, jm.cfg.AllowDropState); err != nil {
			return fmt.Errorf("jobmanager: %w", err)
		}
		// Attempt numbers name output files in progress; they must grow past
		// the attempt that took the snapshot, also in a new cluster.
		jm.attemptNo = max(jm.attemptNo, md.Attempt)
		jm.log.Info("resuming from checkpoint", zap.Int64("checkpoint", md.ID), zap.String("dir", jm.latest.Dir), zap.Int("parallelism", md.Parallelism))
		jm.setResumed(md.ID)
	}
	jm.cleanupUncommitted(ctx)
	return jm.writeJob(ctx, cluster.JobRunning, "")
}

func (jm *JobManager) writeJob(ctx context.Context, st cluster.JobStatus, errMsg string) error {
	b, _ := json.Marshal(cluster.JobInfo{Job: jm.cfg.Job, Args: jm.cfg.Args, Status: st, Attempt: jm.attemptNo, Error: errMsg, UpdatedAt: time.Now().UTC()})
	return jm.guardedPut(ctx, cluster.JobKey(jm.cfg.Cluster), string(b))
}

// cleanupUncommitted deletes checkpoint folders that were never committed
// (newer than the pointer: a crash between data and commit) — they are
// garbage by the commit protocol.
func (jm *JobManager) cleanupUncommitted(ctx context.Context) {
	ids, err := jm.checkpointIDs(ctx)
	if err != nil {
		jm.log.Warn("list checkpoints for cleanup", zap.Error(err))
		return
	}
	var latest int64
	if jm.latest != nil && !jm.latest.Savepoint {
		latest = jm.latest.ID
	}
	for _, id := range ids {
		if id > latest {
			dir := checkpoint.Dir(jm.cfg.Job, id)
			jm.log.Info("deleting uncommitted checkpoint", zap.String("dir", dir))
			if err := jm.cfg.Storage.DeletePrefix(ctx, dir); err != nil {
				jm.log.Warn("delete uncommitted checkpoint", zap.String("dir", dir), zap.Error(err))
			}
		}
		if id > jm.lastID {
			jm.lastID = id
		}
	}
}

func (jm *JobManager) checkpointIDs(ctx context.Context) ([]int64, error) {
	names, err := jm.cfg.Storage.List(ctx, jm.cfg.Job+"/chk-")
	if err != nil {
		return nil, err
	}
	seen := map[int64]bool{}
	var ids []int64
	for _, n := range names {
		rest := strings.TrimPrefix(n, jm.cfg.Job+"/chk-")
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			continue
		}
		id, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	return ids, nil
}

// watchTaskManagers lists the TaskManager keys and then watches from the
// list's revision; on a compacted revision it lists again. Each change
// sends the whole set (level-based: the loop reconciles against it).
func (jm *JobManager) watchTaskManagers(ctx context.Context) {
	defer jm.wg.Done()
	prefix := cluster.TaskManagersPrefix(jm.cfg.Cluster)
	set := map[string]cluster.TaskManagerInfo{}
	load := func(kvs []*mvccpb.KeyValue) {
		set = map[string]cluster.TaskManagerInfo{}
		for _, kv := range kvs {
			if info, err := cluster.DecodeTaskManager(string(kv.Key), kv.Value); err == nil {
				set[info.ID] = info
			}
		}
		jm.post(ctx, evTMs{tms: copySet(set)})
	}
	apply := func(evs []*clientv3.Event) {
		for _, ev := range evs {
			id := strings.TrimPrefix(string(ev.Kv.Key), prefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(set, id)
				continue
			}
			if info, err := cluster.DecodeTaskManager(string(ev.Kv.Key), ev.Kv.Value); err == nil {
				set[info.ID] = info
			}
		}
		jm.post(ctx, evTMs{tms: copySet(set)})
	}
	jm.listWatch(ctx, "list taskmanagers", "taskmanager", prefix, []clientv3.OpOption{clientv3.WithPrefix()}, false, load, apply, func() {})
}

func copySet(m map[string]cluster.TaskManagerInfo) map[string]cluster.TaskManagerInfo {
	c := make(map[string]cluster.TaskManagerInfo, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (jm *JobManager) post(ctx context.Context, ev any) {
	select {
	case jm.events <- ev:
	case <-ctx.Done():
	}
}

// dial opens the control connection to a TaskManager and does the epoch
// handshake.
func (jm *JobManager) dial(ctx context.Context, info cluster.TaskManagerInfo) {
	defer jm.wg.Done()
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nc, err := d.DialContext(dctx, "tcp", info.ControlAddr)
	if err != nil {
		jm.post(ctx, evConnErr{id: info.ID, err: fmt.Errorf("connect to taskmanager %s at %s: %w", info.ID, info.ControlAddr, err)})
		return
	}
	c := control.NewConn(nc)
	if err := c.Send(&control.Message{Kind: control.KindHello, Epoch: jm.epoch}); err != nil {
		c.Close()
		jm.post(ctx, evConnErr{id: info.ID, err: err})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := c.Recv()
	_ = c.SetReadDeadline(time.Time{})
	if err != nil || m.Kind != control.KindHelloOK {
		c.Close()
		if err == nil {
			err = fmt.Errorf("taskmanager %s refused epoch %d: %s", info.ID, jm.epoch, m.Error)
		}
		jm.post(ctx, evConnErr{id: info.ID, err: err})
		return
	}
	tc := &tmConn{id: info.ID, conn: c}
	jm.post(ctx, evConn{c: tc})
	for {
		m, err := c.Recv()
		if err != nil {
			jm.post(ctx, evDown{c: tc})
			return
		}
		jm.post(ctx, evMsg{c: tc, m: m})
	}
}

func (jm *JobManager) closeConns() {
	for _, c := range jm.conns {
		c.conn.Close()
	}
}

func (jm *JobManager) send(id string, m *control.Message) error {
	c := jm.conns[id]
	if c == nil {
		return fmt.Errorf("no connection to taskmanager %s", id)
	}
	m.Epoch = jm.epoch
	return c.conn.Send(m)
}

// taskManagers is the connected, known set for the scheduler.
func (jm *JobManager) taskManagers() []scheduler.TaskManager {
	var out []scheduler.TaskManager
	for id, info := range jm.tms {
		if jm.conns[id] == nil {
			continue
		}
		out = append(out, scheduler.TaskManager{ID: id, Slots: info.Slots, Draining: info.State == cluster.TMDraining})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
