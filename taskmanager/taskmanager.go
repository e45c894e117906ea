// Package taskmanager is the TaskManager process role: it registers itself in
// etcd under a lease, offers its slots, accepts the leader JobManager's
// control connection (refusing older epochs), runs the tasks it is given,
// persists their snapshots to checkpoint storage, and serves the data plane.
package taskmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/cluster"
	"github.com/ebbflow/ebbflow/internal/control"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/network"
)

// Config configures a TaskManager.
type Config struct {
	ID      string
	Cluster string
	Slots   int
	// ControlBind/DataBind are listen addresses; the advertised addresses
	// (what others dial) default to the bound ones.
	ControlBind      string
	ControlAdvertise string
	DataBind         string
	DataAdvertise    string
	LeaseTTL         time.Duration
	Etcd             *clientv3.Client
	Jobs             graph.Registry
	// OpenStorage opens checkpoint storage by URL.
	OpenStorage func(url string) (checkpoint.Storage, error)
	Logger      *zap.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("taskmanager: id is empty")
	case c.Slots < 1:
		return fmt.Errorf("taskmanager: slots must be at least 1, got %d", c.Slots)
	case c.Etcd == nil:
		return errors.New("taskmanager: no etcd client")
	case c.Jobs == nil:
		return errors.New("taskmanager: no job registry")
	case c.LeaseTTL < time.Second:
		return fmt.Errorf("taskmanager: lease TTL %v is below 1s", c.LeaseTTL)
	}
	return nil
}

// TaskManager is one TaskManager.
type TaskManager struct {
	cfg    Config
	log    *zap.Logger
	ctlLn  net.Listener
	dataLn net.Listener
	data   *network.Server

	mu         sync.Mutex
	maxEpoch   int64
	leader     *control.Conn
	attempts   map[int64]*attempt
	draining   bool
	leaseID    clientv3.LeaseID
	registered bool
	metrics    *tmMetrics
	released   chan struct{}
	releaseMu  sync.Once
	crash      chan struct{}
	crashOnce  sync.Once

	wg sync.WaitGroup
}

// New binds the listeners.
func New(cfg Config) (*TaskManager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	ctlLn, err := net.Listen("tcp", cfg.ControlBind)
	if err != nil {
		return nil, fmt.Errorf("taskmanager: listen on control address %s: %w", cfg.ControlBind, err)
	}
	dataLn, err := net.Listen("tcp", cfg.DataBind)
	if err != nil {
		ctlLn.Close()
		return nil, fmt.Errorf("taskmanager: listen on data address %s: %w", cfg.DataBind, err)
	}
	if cfg.ControlAdvertise == "" {
		cfg.ControlAdvertise = advertised(ctlLn)
	}
	if cfg.DataAdvertise == "" {
		cfg.DataAdvertise = advertised(dataLn)
	}
	log := cfg.Logger.With(zap.String("taskmanager", cfg.ID))
	tm := &TaskManager{cfg: cfg, log: log, ctlLn: ctlLn, dataLn: dataLn, attempts: map[int64]*attempt{}, released: make(chan struct{}), crash: make(chan struct{})}
	tm.metrics = newTMMetrics(tm)
	tm.data = network.NewServer(dataLn, 30*time.Second, func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) })
	return tm, nil
}

// ID is the TaskManager's id.
func (tm *TaskManager) ID() string { return tm.cfg.ID }

func (tm *TaskManager) info() cluster.TaskManagerInfo {
	st := cluster.TMRunning
	if tm.draining {
		st = cluster.TMDraining
	}
	return cluster.TaskManagerInfo{ID: tm.cfg.ID, Slots: tm.cfg.Slots, ControlAddr: tm.cfg.ControlAdvertise, DataAddr: tm.cfg.DataAdvertise, State: st, StartedAt: time.Now().UTC()}
}

// Run registers the TaskManager and serves until ctx ends; then it stops
// its tasks and deregisters. A lost lease (etcd unreachable for longer than
// the TTL) ends Run with an error: the JobManager has already given up on
// this TaskManager's tasks, so they must not go on.
func (tm *TaskManager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ttl := int64(tm.cfg.LeaseTTL / time.Second)
	lease, err := tm.cfg.Etcd.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("taskmanager %s: grant etcd lease: %w", tm.cfg.ID, err)
	}
	tm.mu.Lock()
	tm.leaseID = lease.ID
	tm.mu.Unlock()
	key := cluster.TaskManagerKey(tm.cfg.Cluster, tm.cfg.ID)
	val, _ := json.Marshal(tm.info())
	if _, err := tm.cfg.Etcd.Put(ctx, key, string(val), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("taskmanager %s: register %s: %w", tm.cfg.ID, key, err)
	}
	ka, err := tm.cfg.Etcd.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fmt.Errorf("taskmanager %s: keep lease alive: %w", tm.cfg.ID, err)
	}
	tm.mu.Lock()
	tm.registered = true
	tm.mu.Unlock()
	tm.metrics.registered.Set(1)
	defer func() {
		tm.mu.Lock()
		tm.registered = false
		tm.mu.Unlock()
		tm.metrics.registered.Set(0)
	}()
	tm.log.Info("registered", zap.String("key", key), zap.Int("slots", tm.cfg.Slots),
		zap.String("control", tm.cfg.ControlAdvertise), zap.String("data", tm.cfg.DataAdvertise), zap.Duration("leaseTTL", tm.cfg.LeaseTTL))

	errc := make(chan error, 2)
	tm.wg.Add(2)
	go func() { defer tm.wg.Done(); errc <- tm.data.Serve() }()
	go func() { defer tm.wg.Done(); errc <- tm.serveControl(ctx) }()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case _, ok := <-ka:
			if !ok {
				if ctx.Err() == nil {
					runErr = fmt.Errorf("taskmanager %s: etcd lease %x lost", tm.cfg.ID, lease.ID)
				}
				break loop
			}
		case err := <-errc:
			if err != nil {
				runErr = err
				break loop
			}
		case <-tm.released:
			tm.log.Info("released by the JobManager after draining")
			break loop
		case <-tm.crash:
			// Simulated kill -9: connections die, the lease is left to expire.
			cancel()
			tm.shutdown()
			return errors.New("taskmanager: crashed on purpose")
		}
	}
	cancel()
	tm.shutdown()
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer dcancel()
	if _, err := tm.cfg.Etcd.Revoke(dctx, lease.ID); err == nil {
		tm.log.Info("deregistered", zap.String("key", key))
	}
	return runErr
}

// SetDraining marks the TaskManager as draining in etcd.
func (tm *TaskManager) SetDraining(ctx context.Context) error {
	tm.mu.Lock()
	tm.draining = true
	lease := tm.leaseID
	tm.mu.Unlock()
	if lease == 0 {
		return fmt.Errorf("taskmanager %s: not registered in etcd yet", tm.cfg.ID)
	}
	val, _ := json.Marshal(tm.info())
	// Only while our registration stands: a key written without its lease,
	// or after the lease is gone, would outlive this process.
	key := cluster.TaskManagerKey(tm.cfg.Cluster, tm.cfg.ID)
	resp, err := tm.cfg.Etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("taskmanager %s: registration %s is gone (lease %x expired)", tm.cfg.ID, key, lease)
	}
	return nil
}

func (tm *TaskManager) shutdown() {
	tm.ctlLn.Close()
	tm.mu.Lock()
	atts := make([]*attempt, 0, len(tm.attempts))
	for _, a := range tm.attempts {
		atts = append(atts, a)
	}
	if tm.leader != nil {
		tm.leader.Close()
	}
	tm.mu.Unlock()
	for _, a := range atts {
		a.stop()
	}
	tm.data.Close()
	tm.wg.Wait()
}

func (tm *TaskManager) serveControl(ctx context.Context) error {
	for {
		c, err := tm.ctlLn.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("taskmanager: accept control connection: %w", err)
		}
		tm.wg.Add(1)
		go func() {
			defer tm.wg.Done()
			tm.handleLeader(ctx, control.NewConn(c))
		}()
	}
}

// handleLeader serves one JobManager connection: an epoch handshake, then
// commands until the connection ends.
func (tm *TaskManager) handleLeader(ctx context.Context, c *control.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hello, err := c.Recv()
	_ = c.SetReadDeadline(time.Time{})
	if err != nil || hello.Kind != control.KindHello {
		tm.log.Warn("control connection without hello", zap.String("peer", c.RemoteAddr()), zap.Error(err))
		return
	}
	tm.mu.Lock()
	if hello.Epoch < tm.maxEpoch {
		seen := tm.maxEpoch
		tm.mu.Unlock()
		tm.metrics.refusals.Inc()
		tm.log.Warn("refused JobManager with an older epoch", zap.Int64("epoch", hello.Epoch), zap.Int64("newestEpoch", seen), zap.String("peer", c.RemoteAddr()))
		_ = c.Send(&control.Message{Kind: control.KindRefused, TM: tm.cfg.ID, Error: fmt.Sprintf("epoch %d is older than %d", hello.Epoch, seen)})
		return
	}
	var stale []*attempt
	if hello.Epoch > tm.maxEpoch {
		// A new leader: whatever the old one deployed is void.
		for id, a := range tm.attempts {
			stale = append(stale, a)
			tm.forgetAttemptLocked(id)
		}
	}
	tm.maxEpoch = hello.Epoch
	old := tm.leader
	tm.leader = c
	tm.mu.Unlock()
	if old != nil {
		old.Close()
	}
	for _, a := range stale {
		a.stop()
	}
	tm.log.Info("JobManager connected", zap.Int64("epoch", hello.Epoch), zap.String("peer", c.RemoteAddr()))
	if err := c.Send(&control.Message{Kind: control.KindHelloOK, TM: tm.cfg.ID}); err != nil {
		return
	}
	for {
		m, err := c.Recv()
		if err != nil {
			tm.mu.Lock()
			if tm.leader == c {
				tm.leader = nil
			}
			tm.mu.Unlock()
			if ctx.Err() == nil {
				tm.log.Info("JobManager connection ended", zap.Int64("epoch", hello.Epoch), zap.Error(err))
			}
			return
		}
		tm.mu.Lock()
		cur := tm.maxEpoch
		tm.mu.Unlock()
		if m.Epoch < cur {
			tm.metrics.refusals.Inc()
			tm.log.Warn("refused command with an older epoch", zap.String("kind", m.Kind), zap.Int64("epoch", m.Epoch), zap.Int64("newestEpoch", cur))
			return
		}
		tm.handle(ctx, c, m)
	}
}

func (tm *TaskManager) send(c *control.Conn, m *control.Message) {
	m.TM = tm.cfg.ID
	if err := c.Send(m); err != nil {
		tm.log.Debug("send to JobManager failed", zap.String("kind", m.Kind), zap.Error(err))
	}
}

func (tm *TaskManager) handle(ctx context.Context, c *control.Conn, m *control.Message) {
	switch m.Kind {
	case control.KindDeploy:
		if m.Deploy == nil {
			return
		}
		a, err := tm.deploy(ctx, c, m.Deploy)
		if err != nil {
			tm.log.Error("deploy failed", zap.Int64("attempt", m.Deploy.Attempt), zap.Error(err))
			tm.send(c, &control.Message{Kind: control.KindTaskFailed, Attempt: m.Deploy.Attempt, Error: err.Error(), Fatal: fatal(err)})
			return
		}
		tm.mu.Lock()
		tm.attempts[a.id] = a
		tm.mu.Unlock()
	case control.KindTrigger, control.KindNotify, control.KindFinish:
		tm.mu.Lock()
		a := tm.attempts[m.Attempt]
		tm.mu.Unlock()
		if a != nil {
			a.command(m)
		}
	case control.KindRelease:
		tm.releaseMu.Do(func() { close(tm.released) })
	case control.KindCancel:
		tm.mu.Lock()
		a := tm.forgetAttemptLocked(m.Attempt)
		tm.mu.Unlock()
		if a != nil {
			a.stop()
		}
		tm.send(c, &control.Message{Kind: control.KindCancelled, Attempt: m.Attempt})
	}
}

// advertised is the address others dial for a listener without an explicit
// advertised address: its bound address, with this host's name in place of
// an unspecified IP (":6121" in a container becomes "<hostname>:6121").
func advertised(ln net.Listener) string {
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.IsUnspecified() {
		return addr.String()
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return addr.String()
	}
	return net.JoinHostPort(h, strconv.Itoa(addr.Port))
}

// Released is closed when the JobManager has moved this TaskManager's work
// elsewhere after it asked to drain.
func (tm *TaskManager) Released() <-chan struct{} { return tm.released }

// Crash stops the TaskManager the way kill -9 would: its connections close
// and its etcd lease is left to expire, without deregistering. ebbflow local
// uses it to demonstrate the loss of a TaskManager in one process.
func (tm *TaskManager) Crash() { tm.crashOnce.Do(func() { close(tm.crash) }) }
