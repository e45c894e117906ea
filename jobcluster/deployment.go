package jobcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/cluster"
	"github.com/ebbflow/ebbflow/internal/control"
	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/network"
	"github.com/ebbflow/ebbflow/reactive"
	"github.com/ebbflow/ebbflow/scheduler"
)

// deployment is one attempt of the job on a set of slots.
type deployment struct {
	attempt     int64
	parallelism int
	plan        scheduler.Plan
	tms         map[string]bool
	tasks       map[checkpoint.TaskID]string // task → TaskManager
	running     map[checkpoint.TaskID]bool
	finished    map[checkpoint.TaskID]bool
	sources     map[checkpoint.TaskID]bool
	srcDone     map[checkpoint.TaskID]bool
	started     time.Time
	coord       *checkpoint.Coordinator
	finalID     int64 // checkpoint that follows the end of all sources
	finishing   bool
	committing  bool
	firstRecord bool
}

func (d *deployment) allRunning() bool { return len(d.running) == len(d.tasks) }

// loop is the JobManager's single event loop: every decision is made here.
func (jm *JobManager) loop(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			jm.cancelDeployment("shutting down")
			return ctx.Err()
		case <-jm.session.Done():
			jm.log.Error("etcd session ended; stopping at once")
			return ErrLostLeadership
		case ev := <-jm.events:
			if err := jm.handle(ctx, ev); err != nil {
				jm.cancelDeployment("job ended")
				return err
			}
			if jm.finished {
				return nil
			}
		case now := <-tick.C:
			if err := jm.tick(ctx, now); err != nil {
				jm.cancelDeployment("job ended")
				return err
			}
		}
	}
}

func (jm *JobManager) handle(ctx context.Context, ev any) error {
	switch e := ev.(type) {
	case evTMs:
		for id := range jm.tms {
			if _, ok := e.tms[id]; !ok {
				jm.log.Info("taskmanager left", zap.String("taskmanager", id))
				delete(jm.released, id)
				delete(jm.unreachable, id)
				if c := jm.conns[id]; c != nil {
					c.conn.Close()
					delete(jm.conns, id)
				}
				jm.step(ctx, reactive.Event{Kind: reactive.Lost, TM: id})
			}
		}
		for id, info := range e.tms {
			old, known := jm.tms[id]
			if !known {
				jm.log.Info("taskmanager joined", zap.String("taskmanager", id), zap.Int("slots", info.Slots), zap.String("control", info.ControlAddr))
			} else if old.State != info.State {
				jm.log.Info("taskmanager changed state", zap.String("taskmanager", id), zap.String("state", string(info.State)))
				if info.State == cluster.TMDraining {
					jm.tms[id] = info
					jm.step(ctx, reactive.Event{Kind: reactive.Draining, TM: id})
				}
			}
			if jm.conns[id] == nil && !jm.dialing[id] && !jm.released[id] {
				jm.dialing[id] = true
				jm.wg.Add(1)
				go jm.dial(ctx, info)
			}
		}
		jm.tms = e.tms
		jm.updateSlots()
	case evConn:
		delete(jm.dialing, e.c.id)
		if _, ok := jm.tms[e.c.id]; !ok {
			e.c.conn.Close()
			return nil
		}
		jm.conns[e.c.id] = e.c
		delete(jm.unreachable, e.c.id)
		jm.updateSlots()
		info := jm.tms[e.c.id]
		jm.step(ctx, reactive.Event{Kind: reactive.Joined, TM: e.c.id, Slots: info.Slots})
		if info.State == cluster.TMDraining {
			jm.step(ctx, reactive.Event{Kind: reactive.Draining, TM: e.c.id})
		}
	case evConnErr:
		delete(jm.dialing, e.id)
		if jm.released[e.id] {
			return nil // it was released and is leaving
		}
		if !jm.unreachable[e.id] {
			jm.unreachable[e.id] = true
			jm.log.Warn("taskmanager unreachable; retrying while it is registered", zap.String("taskmanager", e.id), zap.Error(e.err))
		} else {
			jm.log.Debug("taskmanager still unreachable", zap.String("taskmanager", e.id), zap.Error(e.err))
		}
		if info, ok := jm.tms[e.id]; ok && ctx.Err() == nil {
			// Retry while it is registered.
			jm.dialing[e.id] = true
			jm.wg.Add(1)
			go func() {
				select {
				case <-time.After(500 * time.Millisecond):
				case <-ctx.Done():
				}
				jm.dial(ctx, info)
			}()
		}
	case evDown:
		if jm.conns[e.c.id] == e.c && jm.released[e.c.id] {
			delete(jm.conns, e.c.id)
			jm.log.Info("released taskmanager left", zap.String("taskmanager", e.c.id))
			jm.updateSlots()
			return nil
		}
		if jm.conns[e.c.id] == e.c {
			delete(jm.conns, e.c.id)
			jm.log.Warn("lost control connection to taskmanager", zap.String("taskmanager", e.c.id))
			jm.step(ctx, reactive.Event{Kind: reactive.Lost, TM: e.c.id})
			if info, ok := jm.tms[e.c.id]; ok && !jm.dialing[e.c.id] {
				jm.dialing[e.c.id] = true
				jm.wg.Add(1)
				go jm.dial(ctx, info)
			}
			jm.updateSlots()
		}
	case evMsg:
		return jm.handleMsg(ctx, e.c, e.m)
	case evCommitted:
		return jm.committed(ctx, e)
	case evFatal:
		return e.err
	case evSavepoint:
		d := jm.dep
		switch {
		case d == nil || !d.allRunning():
			e.reply <- savepointReply{err: errors.New("the job is not running")}
		case d.finishing || d.finalID != 0:
			e.reply <- savepointReply{err: errors.New("the job is finishing")}
		case d.coord.Pending() != nil || d.committing:
			e.reply <- savepointReply{err: fmt.Errorf("checkpoint %d is in progress; try again", d.coord.Pending().ID)}
		default:
			id := jm.trigger(d, time.Now(), true)
			sp := SavepointStatus{ID: id, Status: "pending"}
			jm.setSavepoint(sp)
			e.reply <- savepointReply{sp: sp}
		}
	}
	return nil
}

func (jm *JobManager) updateSlots() {
	n := scheduler.AvailableSlots(jm.taskManagers())
	var view []TaskManagerStatus
	for id, info := range jm.tms {
		tasks := 0
		if jm.dep != nil {
			for _, tm := range jm.dep.tasks {
				if tm == id {
					tasks++
				}
			}
		}
		view = append(view, TaskManagerStatus{ID: id, Slots: info.Slots, State: string(info.State), ControlAddr: info.ControlAddr, DataAddr: info.DataAddr, Connected: jm.conns[id] != nil, Tasks: tasks})
	}
	jm.mu.Lock()
	jm.status.TaskManagers = len(jm.tms)
	jm.status.Slots = n
	jm.tmView = view
	jm.mu.Unlock()
	jm.metrics.taskManagers.Set(float64(len(jm.tms)))
	jm.metrics.slots.Set(float64(n))
}

func (jm *JobManager) tick(ctx context.Context, now time.Time) error {
	if jm.dep != nil && jm.chkFails >= jm.cfg.TolerableCheckpointFailures {
		n := jm.chkFails
		jm.chkFails = 0
		jm.failDeployment(ctx, fmt.Errorf("%d checkpoints in a row failed (tolerable: %d); last: %s", n, jm.cfg.TolerableCheckpointFailures, jm.lastCheckpointError()))
	}
	jm.step(ctx, reactive.Event{Kind: reactive.Tick})
	jm.pushRescale(ctx, now)
	d := jm.dep
	if d == nil {
		return nil
	}
	if !d.allRunning() {
		if now.Sub(d.started) > jm.cfg.DeployTimeout {
			jm.failDeployment(ctx, fmt.Errorf("tasks not running %v after deployment", jm.cfg.DeployTimeout))
		}
		return nil
	}
	if p := d.coord.Expired(now); p != nil && !d.committing {
		jm.log.Warn("checkpoint timed out", zap.Int64("checkpoint", p.ID), zap.Duration("timeout", jm.cfg.CheckpointTimeout), zap.Any("missing", d.coord.Missing()))
		d.coord.Finish(p.ID, now)
		jm.recordCheckpoint(CheckpointRecord{ID: p.ID, Savepoint: p.Savepoint, Status: "expired", StartedAt: p.Started, Duration: now.Sub(p.Started)})
		jm.rescaleSnapshotFailed(ctx, p.ID)
	}
	if d.finishing || d.committing {
		return nil
	}
	allDone := len(d.srcDone) == len(d.sources)
	if allDone && d.finalID == 0 && d.coord.Pending() == nil {
		jm.trigger(d, now, false)
		return nil
	}
	if !allDone && d.coord.Due(now) {
		jm.trigger(d, now, false)
	}
	return nil
}

// trigger starts a checkpoint (or savepoint) and returns its id (0 if one
// is already in flight).
func (jm *JobManager) trigger(d *deployment, now time.Time, savepoint bool) int64 {
	p, err := d.coord.Trigger(now, savepoint, false)
	if err != nil {
		return 0
	}
	jm.lastID = p.ID
	if len(d.srcDone) == len(d.sources) {
		d.finalID = p.ID
	}
	var flags byte
	if savepoint {
		flags |= network.BarrierSavepoint
	}
	for tm := range d.tms {
		if err := jm.send(tm, &control.Message{Kind: control.KindTrigger, Attempt: d.attempt, ID: p.ID, Flags: flags}); err != nil {
			jm.log.Warn("trigger checkpoint", zap.Int64("checkpoint", p.ID), zap.Error(err))
		}
	}
	return p.ID
}

func (jm *JobManager) deploy(ctx context.Context, plan scheduler.Plan) error {
	g := jm.cfg.Graph
	p := plan.Parallelism
	jm.attemptNo++
	if err := jm.writeJob(ctx, cluster.JobRunning, ""); err != nil {
		return err
	}
	d := &deployment{attempt: jm.attemptNo, parallelism: p, plan: plan, tms: map[string]bool{}, tasks: map[checkpoint.TaskID]string{},
		running: map[checkpoint.TaskID]bool{}, finished: map[checkpoint.TaskID]bool{}, sources: map[checkpoint.TaskID]bool{},
		srcDone: map[checkpoint.TaskID]bool{}, started: time.Now()}
	chains := g.Chains()
	chainOf := map[*graph.Vertex]int{}
	for _, c := range chains {
		for _, v := range c.Vertices {
			chainOf[v] = c.ID
		}
	}
	perTM := map[string][]control.TaskSpec{}
	for _, c := range chains {
		for i := 0; i < p; i++ {
			tm := plan.TMOf(i)
			ts := control.TaskSpec{Chain: c.ID, Subtask: i}
			for _, e := range c.Inputs {
				prod := p
				if e.Kind == graph.Forward {
					prod = 1
				}
				ts.Inputs = append(ts.Inputs, control.InputSpec{Edge: e.ID, Producers: prod})
			}
			for _, e := range c.Outputs {
				o := control.OutputSpec{Edge: e.ID}
				targets := []int{i}
				if e.Kind != graph.Forward {
					targets = make([]int, p)
					for j := range targets {
						targets[j] = j
					}
				}
				for _, j := range targets {
					o.Targets = append(o.Targets, j)
					o.Addrs = append(o.Addrs, jm.tms[plan.TMOf(j)].DataAddr)
				}
				ts.Outputs = append(ts.Outputs, o)
			}
			perTM[tm] = append(perTM[tm], ts)
			id := checkpoint.TaskID{Chain: c.ID, Subtask: i}
			d.tasks[id] = tm
			if c.Head().Kind == graph.KindSource {
				d.sources[id] = true
			}
			d.tms[tm] = true
		}
	}
	var restoreDir string
	var restoreID int64
	if jm.latest != nil {
		restoreDir, restoreID = jm.latest.Dir, jm.latest.ID
	}
	ids := make([]checkpoint.TaskID, 0, len(d.tasks))
	for id := range d.tasks {
		ids = append(ids, id)
	}
	d.coord = checkpoint.NewCoordinator(ids, jm.lastID, jm.cfg.CheckpointInterval, jm.cfg.CheckpointTimeout, time.Now())
	jm.dep = d
	jm.lastP = d.parallelism
	jm.log.Info("deploying", zap.Int64("attempt", d.attempt), zap.Int("parallelism", p), zap.Int("taskmanagers", len(d.tms)),
		zap.Int("tasks", len(d.tasks)), zap.Int64("restoreFrom", restoreID))
	for tm, specs := range perTM {
		msg := &control.Message{Kind: control.KindDeploy, Deploy: &control.Deploy{
			Job: jm.cfg.Job, Args: jm.cfg.Args, Attempt: d.attempt, Parallelism: p, MaxParallelism: g.MaxParallelism,
			CheckpointURL: jm.cfg.Storage.URL(), RestoreDir: restoreDir, RestoreID: restoreID, Tasks: specs,
		}}
		if err := jm.send(tm, msg); err != nil {
			// The TaskManager is gone (its connection broke): that is a loss,
			// not a failure of the job.
			jm.log.Warn("deploy failed; treating the taskmanager as lost", zap.String("taskmanager", tm), zap.Error(err))
			if c := jm.conns[tm]; c != nil {
				c.conn.Close()
				delete(jm.conns, tm)
			}
			jm.cancelDeployment("deploy failed")
			jm.step(ctx, reactive.Event{Kind: reactive.Lost, TM: tm})
			return nil
		}
	}
	jm.metrics.parallelism.Set(float64(p))
	jm.updateSlots()
	jm.mu.Lock()
	jm.status.Phase = "deploying"
	jm.status.Parallelism = p
	jm.status.Attempt = d.attempt
	jm.mu.Unlock()
	return nil
}

func (jm *JobManager) handleMsg(ctx context.Context, c *tmConn, m *control.Message) error {
	if m.Kind == control.KindStats && m.Stats != nil {
		// Counters of every attempt, also of cancelled ones (their last
		// report comes after the cancel), so totals count each record
		// emitted once per emission: a total above the input means replay.
		per := jm.attemptStats[m.Attempt]
		if per == nil {
			per = map[string]control.Stats{}
			jm.attemptStats[m.Attempt] = per
		}
		per[m.TM] = *m.Stats
		var s control.Stats
		for _, byTM := range jm.attemptStats {
			for _, x := range byTM {
				s.SourceRecords += x.SourceRecords
				s.SinkRecords += x.SinkRecords
			}
		}
		jm.mu.Lock()
		jm.status.SourceRecords = s.SourceRecords
		jm.status.SinkRecords = s.SinkRecords
		jm.mu.Unlock()
		return nil
	}
	d := jm.dep
	if d == nil || m.Attempt != d.attempt {
		return nil // a report about an attempt that is over
	}
	switch m.Kind {
	case control.KindTaskRunning:
		d.running[*m.Task] = true
		if d.allRunning() {
			jm.log.Info("job running", zap.Int64("attempt", d.attempt), zap.Int("parallelism", d.parallelism), zap.Duration("deploy", time.Since(d.started)))
			jm.rescaleRunning(d)
			jm.step(ctx, reactive.Event{Kind: reactive.Running})
			jm.failures = 0
			jm.mu.Lock()
			jm.status.Phase = "running"
			if jm.status.RunningSince.IsZero() {
				jm.status.RunningSince = time.Now()
			}
			jm.mu.Unlock()
		}
	case control.KindTaskFailed:
		what := "deployment"
		if m.Task != nil {
			what = m.Task.String()
		}
		err := fmt.Errorf("%s on taskmanager %s failed: %s", what, m.TM, m.Error)
		if m.Fatal {
			_ = jm.writeJob(ctx, cluster.JobFailed, err.Error())
			return fmt.Errorf("jobmanager: job failed: %w", err)
		}
		jm.failDeployment(ctx, err)
	case control.KindSourceFinished:
		d.srcDone[*m.Task] = true
		if len(d.srcDone) == len(d.sources) {
			jm.log.Info("all sources finished; taking the final checkpoint")
		}
	case control.KindTaskFinished:
		d.finished[*m.Task] = true
		if len(d.finished) == len(d.tasks) {
			if err := jm.writeJob(ctx, cluster.JobFinished, ""); err != nil {
				return err
			}
			jm.log.Info("job finished", zap.Int64("attempt", d.attempt))
			jm.mu.Lock()
			jm.status.Phase = "finished"
			jm.status.FinishedAt = time.Now()
			jm.mu.Unlock()
			jm.dep = nil
			jm.finished = true
			jm.machine.Step(time.Now(), reactive.Event{Kind: reactive.Finished})
		}
	case control.KindAck:
		if m.Ack == nil {
			return nil
		}
		p, err := d.coord.Acknowledge(m.ID, *m.Ack)
		if err != nil {
			jm.log.Debug("ignored ack", zap.Error(err))
			return nil
		}
		if p != nil {
			d.committing = true
			jm.commit(ctx, d, p)
		}
	case control.KindDecline:
		if pend := d.coord.Pending(); pend != nil && pend.ID == m.ID {
			jm.log.Warn("checkpoint declined", zap.Int64("checkpoint", m.ID), zap.String("taskmanager", m.TM), zap.String("reason", m.Error))
			d.coord.Finish(m.ID, time.Now())
			jm.recordCheckpoint(CheckpointRecord{ID: m.ID, Savepoint: pend.Savepoint, Status: "declined", StartedAt: pend.Started, Duration: time.Since(pend.Started), Error: m.Error})
			if d.finalID == m.ID {
				d.finalID = 0
			}
			jm.rescaleSnapshotFailed(ctx, m.ID)
		}
	case control.KindFirstRecord:
		if !d.firstRecord {
			d.firstRecord = true
			jm.rescaleFirstRecord(d, m.At)
			jm.log.Debug("first record reached a sink", zap.Duration("sinceDeploy", m.At.Sub(d.started)))
		}
	}
	return nil
}

// commit writes _metadata (create-only) and moves the etcd pointer; the
// result comes back to the loop as evCommitted.
func (jm *JobManager) commit(ctx context.Context, d *deployment, p *checkpoint.Pending) {
	md := checkpoint.BuildMetadata(jm.cfg.Job, p, d.attempt, jm.cfg.Graph.MaxParallelism, d.parallelism, time.Now())
	dir := checkpoint.Dir(jm.cfg.Job, p.ID)
	if p.Savepoint {
		dir = checkpoint.SavepointDir(jm.cfg.Job, p.ID)
	}
	jm.commitsInFlight++
	jm.wg.Add(1)
	go func() {
		defer jm.wg.Done()
		// Bounded, so that a store or etcd that does not answer cannot hold
		// up the next deployment for good (see commitsInFlight).
		cctx, cancel := context.WithTimeout(ctx, jm.cfg.CheckpointTimeout)
		defer cancel()
		err := func() error {
			b, err := checkpoint.EncodeMetadata(md)
			if err != nil {
				return err
			}
			if err := jm.cfg.Storage.PutIfAbsent(cctx, dir+checkpoint.MetadataName, b); err != nil {
				return err
			}
			ptr, _ := json.Marshal(cluster.CheckpointPointer{ID: p.ID, Dir: dir, Savepoint: p.Savepoint, At: time.Now().UTC()})
			return jm.guardedPut(cctx, cluster.LatestCheckpointKey(jm.cfg.Cluster), string(ptr))
		}()
		unsure := false
		if err != nil && !errors.Is(err, ErrLostLeadership) {
			// The CAS may have happened without an answer: read the
			// pointer back.
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			ptr, rerr := jm.readPointer(rctx)
			rcancel()
			switch {
			case rerr != nil:
				unsure = true
			case ptr != nil && ptr.ID == p.ID && ptr.Dir == dir:
				err = nil
			}
		}
		jm.post(ctx, evCommitted{dep: d, p: p, md: md, dir: dir, err: err, unsure: unsure})
	}()
}

func (jm *JobManager) committed(ctx context.Context, e evCommitted) error {
	now := time.Now()
	jm.commitsInFlight--
	if errors.Is(e.err, ErrLostLeadership) {
		return e.err
	}
	d := jm.dep
	if d != e.dep {
		d = nil // the deployment that took this checkpoint is gone
	}
	if d != nil {
		d.coord.Finish(e.p.ID, now)
		d.committing = false
	}
	if e.unsure {
		jm.pointerUnsure = true
	}
	if e.err != nil {
		jm.log.Warn("checkpoint commit failed", zap.Int64("checkpoint", e.p.ID), zap.Error(e.err))
		jm.recordCheckpoint(CheckpointRecord{ID: e.p.ID, Savepoint: e.p.Savepoint, Status: "failed", StartedAt: e.p.Started, Duration: now.Sub(e.p.Started), Error: e.err.Error()})
		if d != nil && d.finalID == e.p.ID {
			d.finalID = 0
		}
		jm.rescaleSnapshotFailed(ctx, e.p.ID)
		return nil
	}
	jm.latest = &cluster.CheckpointPointer{ID: e.p.ID, Dir: e.dir, Savepoint: e.p.Savepoint}
	jm.pointerUnsure = false
	jm.log.Info("checkpoint completed", zap.Int64("checkpoint", e.p.ID), zap.Int64("bytes", e.md.Bytes), zap.Duration("duration", now.Sub(e.p.Started)))
	jm.recordCheckpoint(CheckpointRecord{ID: e.p.ID, Savepoint: e.p.Savepoint, Status: "completed", StartedAt: e.p.Started, Duration: now.Sub(e.p.Started), Bytes: e.md.Bytes, Dir: e.dir})
	if e.p.Savepoint {
		jm.log.Info("savepoint completed", zap.Int64("savepoint", e.p.ID), zap.String("dir", e.dir))
	}
	if d != nil {
		for tm := range d.tms {
			_ = jm.send(tm, &control.Message{Kind: control.KindNotify, Attempt: d.attempt, ID: e.p.ID})
		}
		if d.finalID == e.p.ID {
			d.finishing = true
			jm.setPhase("finishing")
			for tm := range d.tms {
				_ = jm.send(tm, &control.Message{Kind: control.KindFinish, Attempt: d.attempt})
			}
		}
	}
	jm.wg.Add(1)
	go func() { defer jm.wg.Done(); jm.retain(ctx, e.p.ID) }()
	if r := jm.rescale; r != nil && r.savepointID == e.p.ID && d != nil {
		jm.finishRescale(ctx, e.p.ID, e.md.Bytes)
	}
	return nil
}

// retain deletes completed checkpoints beyond the newest Retain ones and
// any older folder that never completed.
func (jm *JobManager) retain(ctx context.Context, latest int64) {
	ids, err := jm.checkpointIDs(ctx)
	if err != nil {
		return
	}
	var older []int64
	for _, id := range ids {
		if id < latest {
			older = append(older, id)
		}
	}
	keep := map[int64]bool{}
	for i := len(older) - 1; i >= 0 && len(keep) < jm.cfg.Retain-1; i-- {
		if _, err := jm.cfg.Storage.Get(ctx, checkpoint.Dir(jm.cfg.Job, older[i])+checkpoint.MetadataName); err == nil {
			keep[older[i]] = true
		}
	}
	for _, id := range older {
		if !keep[id] {
			_ = jm.cfg.Storage.DeletePrefix(ctx, checkpoint.Dir(jm.cfg.Job, id))
		}
	}
}

// readPointer reads the latest checkpoint pointer from etcd (nil if none).
func (jm *JobManager) readPointer(ctx context.Context) (*cluster.CheckpointPointer, error) {
	resp, err := jm.cfg.Etcd.Get(ctx, cluster.LatestCheckpointKey(jm.cfg.Cluster))
	if err != nil {
		return nil, fmt.Errorf("read latest checkpoint pointer: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var p cluster.CheckpointPointer
	if err := json.Unmarshal(resp.Kvs[0].Value, &p); err != nil {
		return nil, fmt.Errorf("checkpoint pointer %s is corrupt: %w", cluster.LatestCheckpointKey(jm.cfg.Cluster), err)
	}
	return &p, nil
}

// settlePointer makes jm.latest what etcd holds after a commit whose outcome
// is unknown; false if etcd cannot tell yet (the deployment waits).
func (jm *JobManager) settlePointer(ctx context.Context) bool {
	if !jm.pointerUnsure {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := jm.readPointer(rctx)
	if err != nil {
		jm.log.Warn("cannot read the checkpoint pointer back after a commit without an answer; deploying later", zap.Error(err))
		return false
	}
	if p != nil && (jm.latest == nil || p.ID > jm.latest.ID) {
		jm.latest = p
	}
	jm.pointerUnsure = false
	return true
}

// failDeployment cancels the attempt and schedules a restart from the
// latest completed checkpoint.
func (jm *JobManager) failDeployment(ctx context.Context, err error) {
	if jm.dep == nil {
		return
	}
	jm.failures++
	jm.metrics.restarts.Inc()
	jm.log.Error("attempt failed; restarting from the latest checkpoint", zap.Int64("attempt", jm.dep.attempt), zap.Error(err), zap.Int("consecutiveFailures", jm.failures))
	jm.mu.Lock()
	jm.status.Restarts++
	jm.status.LastError = err.Error()
	jm.mu.Unlock()
	jm.cancelDeployment(err.Error())
	if jm.failures > jm.cfg.MaxRestarts {
		jm.post(ctx, evFatal{err: fmt.Errorf("jobmanager: job failed %d times in a row; last error: %w", jm.failures, err)})
		return
	}
	jm.setPhase("restarting")
	// Back off before the restart: a failure is often the first sign of a
	// TaskManager loss that etcd or the control connection reports a moment
	// later, and the restart should see it.
	jm.restartAt = time.Now().Add(jm.cfg.RestartDelay * time.Duration(min(jm.failures, 10)))
	jm.step(ctx, reactive.Event{Kind: reactive.AttemptFailed})
}

func (jm *JobManager) cancelDeployment(reason string) {
	d := jm.dep
	if d == nil {
		return
	}

	for tm := range d.tms {
		_ = jm.send(tm, &control.Message{Kind: control.KindCancel, Attempt: d.attempt, Error: reason})
	}
	jm.dep = nil
}
