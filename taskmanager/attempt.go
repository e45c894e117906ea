package taskmanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/control"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/internal/task"
	"github.com/ebbflow/ebbflow/network"
)

// attempt is the set of tasks one deployment placed on this TaskManager.
type attempt struct {
	tm      *TaskManager
	id      int64
	d       *control.Deploy
	conn    *control.Conn
	storage checkpoint.Storage
	ctx     context.Context
	cancel  context.CancelFunc
	tasks   []*runningTask
	wg      sync.WaitGroup
	once    sync.Once
}

type runningTask struct {
	id      checkpoint.TaskID
	t       *task.Task
	gate    *network.Gate
	key     network.GateKey
	source  bool
	sink    bool
	running bool
}

func (tm *TaskManager) deploy(ctx context.Context, c *control.Conn, d *control.Deploy) (*attempt, error) {
	g, err := tm.cfg.Jobs.Build(d.Job, d.Args)
	if err != nil {
		return nil, fmt.Errorf("build job %q: %w", d.Job, err)
	}
	if g.MaxParallelism != d.MaxParallelism {
		return nil, fmt.Errorf("job %q builds with max parallelism %d here but the JobManager uses %d (different binaries?)", d.Job, g.MaxParallelism, d.MaxParallelism)
	}
	chains := g.Chains()
	st, err := tm.cfg.OpenStorage(d.CheckpointURL)
	if err != nil {
		return nil, err
	}
	var md *checkpoint.Metadata
	if d.RestoreDir != "" {
		md, err = checkpoint.ReadMetadata(ctx, st, d.RestoreDir)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	actx, cancel := context.WithCancel(ctx)
	a := &attempt{tm: tm, id: d.Attempt, d: d, conn: c, storage: st, ctx: actx, cancel: cancel}
	log := tm.log.With(zap.Int64("attempt", d.Attempt))
	for _, ts := range d.Tasks {
		if ts.Chain < 0 || ts.Chain >= len(chains) {
			a.stop()
			return nil, fmt.Errorf("deploy names chain %d but job %q has %d chains", ts.Chain, d.Job, len(chains))
		}
	}
	// Every task's share of the snapshot is read before any task starts,
	// all tasks at once: the downloads overlap instead of queueing.
	restoredFor := make([]map[string]*graph.RestoredState, len(d.Tasks))
	if md != nil {
		lg, lctx := errgroup.WithContext(ctx)
		for i, ts := range d.Tasks {
			lg.Go(func() error {
				restored := map[string]*graph.RestoredState{}
				objects := checkpoint.NewReadCache()
				for _, v := range chains[ts.Chain].Vertices {
					as := checkpoint.Assign(md, v.Name, ts.Subtask, d.Parallelism)
					if as == nil {
						continue
					}
					rs, err := checkpoint.LoadCached(lctx, st, d.RestoreDir, md.ID, as, objects)
					if err != nil {
						return err
					}
					restored[v.Name] = rs
				}
				restoredFor[i] = restored
				return nil
			})
		}
		if err := lg.Wait(); err != nil {
			a.stop()
			return nil, err
		}
	}
	for i, ts := range d.Tasks {
		ch := chains[ts.Chain]
		rt := &runningTask{id: checkpoint.TaskID{Chain: ts.Chain, Subtask: ts.Subtask}, source: ch.Head().Kind == graph.KindSource}
		for _, v := range ch.Vertices {
			if v.Kind == graph.KindSink {
				rt.sink = true
			}
		}
		restored := restoredFor[i]
		if restored == nil {
			restored = map[string]*graph.RestoredState{}
		}
		cfg := task.Config{
			Graph: g, Chain: ch, Subtask: ts.Subtask, Parallelism: d.Parallelism, MaxParallelism: d.MaxParallelism,
			Attempt: d.Attempt, Restored: restored,
			Logf: func(f string, args ...any) { log.Info(fmt.Sprintf(f, args...)) },
		}
		edges := map[int]*graph.Edge{}
		for _, e := range g.Edges {
			edges[e.ID] = e
		}
		for _, o := range ts.Outputs {
			e := edges[o.Edge]
			if e == nil || len(o.Addrs) != len(o.Targets) {
				a.stop()
				return nil, fmt.Errorf("deploy: bad output edge %d", o.Edge)
			}
			cfg.Outputs = append(cfg.Outputs, task.Output{Edge: e, Addrs: o.Addrs, Targets: o.Targets})
		}
		if len(ts.Inputs) > 0 {
			ins := make([]network.GateInput, len(ts.Inputs))
			for i, in := range ts.Inputs {
				ins[i] = network.GateInput{Edge: in.Edge, Producers: in.Producers}
			}
			rt.key = network.GateKey{Job: d.Job, Attempt: d.Attempt, Chain: ts.Chain, To: ts.Subtask}
			rt.gate = network.NewGate(rt.key, ins, 0, 0)
			tm.data.Register(rt.key, rt.gate)
			cfg.Gate = rt.gate
		}
		cfg.Listener = &listener{a: a, rt: rt}
		rt.t = task.New(cfg)
		a.tasks = append(a.tasks, rt)
	}
	for _, rt := range a.tasks {
		a.wg.Add(1)
		go a.run(rt)
	}
	a.wg.Add(1)
	go a.reportStats()
	log.Info("deployed", zap.String("job", d.Job), zap.Int("tasks", len(d.Tasks)), zap.Int("parallelism", d.Parallelism), zap.Int64("restoreFrom", d.RestoreID))
	return a, nil
}

func (a *attempt) run(rt *runningTask) {
	defer a.wg.Done()
	err := rt.t.Run(a.ctx)
	if rt.gate != nil {
		a.tm.data.Unregister(rt.key)
		rt.gate.Close()
	}
	switch {
	case err == nil:
		a.sendStats()
		a.send(&control.Message{Kind: control.KindTaskFinished, Task: &rt.id})
	case a.ctx.Err() != nil && errors.Is(err, context.Canceled):
	case a.ctx.Err() != nil:
		a.tm.log.Debug("task stopped", zap.Int64("attempt", a.id), zap.Stringer("task", rt.id), zap.Error(err))
	default:
		a.tm.log.Error("task failed", zap.Int64("attempt", a.id), zap.Stringer("task", rt.id), zap.Error(err))
		a.send(&control.Message{Kind: control.KindTaskFailed, Task: &rt.id, Error: err.Error(), Fatal: fatal(err)})
	}
}

func (a *attempt) send(m *control.Message) {
	m.Attempt = a.id
	a.tm.send(a.conn, m)
}

func (a *attempt) reportStats() {
	defer a.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		a.sendStats()
	}
}

func (a *attempt) sendStats() {
	var s control.Stats
	for _, rt := range a.tasks {
		if rt.source {
			s.SourceRecords += rt.t.Stats.RecordsIn.Load()
		}
		if rt.sink {
			s.SinkRecords += rt.t.Stats.RecordsIn.Load()
		}
	}
	a.send(&control.Message{Kind: control.KindStats, Stats: &s})
}

func (a *attempt) command(m *control.Message) {
	var cmd task.Command
	switch m.Kind {
	case control.KindTrigger:
		cmd = task.Command{Kind: task.CmdTrigger, ID: m.ID, Flags: m.Flags}
	case control.KindNotify:
		cmd = task.Command{Kind: task.CmdNotifyComplete, ID: m.ID}
	case control.KindFinish:
		cmd = task.Command{Kind: task.CmdFinish}
	}
	for _, rt := range a.tasks {
		if (cmd.Kind == task.CmdTrigger || cmd.Kind == task.CmdFinish) && !rt.source {
			continue
		}
		if err := rt.t.Send(cmd); err != nil {
			a.tm.log.Error("task mailbox full", zap.Stringer("task", rt.id))
		}
	}
}

// stop cancels every task and waits for them, then reports the attempt's
// final counters. Safe to call twice.
func (a *attempt) stop() {
	first := false
	a.once.Do(func() {
		first = true
		a.cancel()
		for _, rt := range a.tasks {
			if rt.gate != nil {
				rt.gate.Close() // unblocks a task aligned on a barrier
			}
		}
	})
	a.wg.Wait()
	if first {
		a.sendStats()
	}
}

// listener reports a task's events to the JobManager.
type listener struct {
	a  *attempt
	rt *runningTask
}

func (l *listener) Running() {
	l.a.send(&control.Message{Kind: control.KindTaskRunning, Task: &l.rt.id})
}

func (l *listener) SourceFinished() {
	l.a.send(&control.Message{Kind: control.KindSourceFinished, Task: &l.rt.id})
}

func (l *listener) FirstRecord(at time.Time) {
	l.a.send(&control.Message{Kind: control.KindFirstRecord, Task: &l.rt.id, At: at})
}

// Snapshot persists the task's state asynchronously and acknowledges.
func (l *listener) Snapshot(id int64, flags byte, snaps map[string]graph.Snapshot) {
	a := l.a
	dir := checkpoint.Dir(a.d.Job, id)
	if flags&network.BarrierSavepoint != 0 {
		dir = checkpoint.SavepointDir(a.d.Job, id)
	}
	object := fmt.Sprintf("a%d-c%d-s%d.state", a.id, l.rt.id.Chain, l.rt.id.Subtask)
	data, states, union := checkpoint.EncodeTaskState(object, snaps)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.storage.Put(a.ctx, dir+object, data); err != nil {
			a.tm.metrics.snapshots.WithLabelValues("failed").Inc()
			a.tm.log.Warn("storing snapshot failed; declining the checkpoint", zap.Int64("checkpoint", id), zap.Error(err))
			a.send(&control.Message{Kind: control.KindDecline, ID: id, Task: &l.rt.id, Error: err.Error()})
			return
		}
		a.tm.metrics.snapshots.WithLabelValues("stored").Inc()
		a.tm.metrics.snapBytes.Add(float64(len(data)))
		a.send(&control.Message{Kind: control.KindAck, ID: id, Ack: &checkpoint.Ack{Task: l.rt.id, States: states, Union: union, Bytes: int64(len(data))}})
	}()
}

// Decline declines checkpoint id for a task whose operator could not
// snapshot but goes on (a sink whose store is unreachable for now).
func (l *listener) Decline(id int64, err error) {
	l.a.tm.metrics.snapshots.WithLabelValues("declined").Inc()
	l.a.tm.log.Warn("an operator declined the checkpoint; the task goes on", zap.Int64("checkpoint", id), zap.String("task", l.rt.id.String()), zap.Error(err))
	l.a.send(&control.Message{Kind: control.KindDecline, ID: id, Task: &l.rt.id, Error: err.Error()})
}

// fatal tells failures that a restart cannot fix: a corrupt or missing
// snapshot to restore, or an error a connector marked unrecoverable.
func fatal(err error) bool {
	return errors.Is(err, checkpoint.ErrCorrupt) || errors.Is(err, checkpoint.ErrNotFound) || graph.IsUnrecoverable(err)
}
