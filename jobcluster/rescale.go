package jobcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/internal/control"
	"github.com/ebbflow/ebbflow/network"
	"github.com/ebbflow/ebbflow/reactive"
	"github.com/ebbflow/ebbflow/scheduler"
)

// RescaleRecord is one entry of the rescale history: every deployment after
// the first, with its trigger and the time spent in each phase.
type RescaleRecord struct {
	Trigger     string    `json:"trigger"`
	From        int       `json:"from"`
	To          int       `json:"to"`
	Snapshot    int64     `json:"snapshot"` // checkpoint or savepoint restored
	Savepoint   bool      `json:"savepoint"`
	StartedAt   time.Time `json:"startedAt"`
	SnapshotMs  float64   `json:"snapshotMs"` // stop-with-savepoint: trigger → committed
	StopMs      float64   `json:"stopMs"`     // cancel of the old deployment
	DeployMs    float64   `json:"deployMs"`   // deploy → every task running (restore included)
	FirstOutMs  float64   `json:"firstOutMs"` // running → first record at a sink
	PauseMs     float64   `json:"pauseMs"`    // start of the rescale → first record at a sink
	StateBytes  int64     `json:"stateBytes"`
	TaskManager string    `json:"taskManager,omitempty"` // drained or lost
	Note        string    `json:"note,omitempty"`
	Complete    bool      `json:"complete"`
}

// rescale is a rescale in progress.
type rescale struct {
	action      reactive.Action
	rec         RescaleRecord
	savepointID int64 // 0 until the stop-with-savepoint is triggered
	trigAt      time.Time
	deployAt    time.Time
	runningAt   time.Time
	firstAt     time.Time
	dep         *deployment
}

func (jm *JobManager) newMachine() (*reactive.Machine, error) {
	return reactive.New(reactive.Config{
		KeyGroups: jm.cfg.Graph.MaxParallelism, MinParallelism: jm.cfg.MinParallelism, MaxParallelism: jm.cfg.Parallelism,
		Stabilization: jm.cfg.SlotsStable, Cooldown: jm.cfg.Cooldown, DrainTimeout: jm.cfg.DrainTimeout, StartSlots: jm.cfg.WaitForSlots,
	})
}

// step feeds the decision core and carries out its decisions.
func (jm *JobManager) step(ctx context.Context, ev reactive.Event) {
	if jm.finished {
		return
	}
	for _, a := range jm.machine.Step(time.Now(), ev) {
		jm.apply(ctx, a)
	}
	jm.mu.Lock()
	jm.status.Target = jm.machine.Target()
	jm.status.IdleSlots = jm.machine.IdleSlots()
	jm.status.Waiting = jm.machine.WaitReason()
	jm.mu.Unlock()
	jm.metrics.idleSlots.Set(float64(jm.machine.IdleSlots()))
}

func (jm *JobManager) apply(ctx context.Context, a reactive.Action) {
	switch a.Kind {
	case reactive.Wait:
		if a.Reason != jm.lastWait {
			jm.lastWait = a.Reason
			jm.log.Debug("waiting", zap.String("reason", a.Reason))
		}
	case reactive.Release:
		jm.log.Info("releasing drained taskmanager", zap.String("taskmanager", a.TM))
		jm.released[a.TM] = true
		_ = jm.send(a.TM, &control.Message{Kind: control.KindRelease})
	case reactive.Deploy:
		jm.lastWait = ""
		if old := jm.rescale; old != nil {
			// A rescale overtaken by the next decision (a TaskManager lost
			// or draining mid-rescale) stays in the history, incomplete.
			old.rec.Note = strings.TrimSpace(old.rec.Note + " superseded by " + string(a.Trigger) + " before it completed")
			old.rec.PauseMs = ms(time.Since(old.rec.StartedAt))
			jm.rescale = nil
			jm.recordRescale(old.rec)
		}
		from := jm.lastP
		if jm.dep != nil {
			from = jm.dep.parallelism
		}
		r := &rescale{action: a, rec: RescaleRecord{Trigger: string(a.Trigger), From: from, To: a.Parallelism, StartedAt: time.Now()}}
		if a.Trigger == reactive.TriggerLoss || a.Trigger == reactive.TriggerDrain {
			r.rec.Note = "taskmanagers " + fmt.Sprint(a.TaskManagers)
		}
		d := jm.dep
		if a.WithSavepoint && d != nil && d.allRunning() && !d.finishing && d.finalID == 0 {
			jm.rescale = r
			jm.log.Info("rescaling with a stop-with-savepoint", zap.String("trigger", string(a.Trigger)), zap.Int("from", from), zap.Int("to", a.Parallelism))
			jm.pushRescale(ctx, time.Now())
			return
		}
		if a.WithSavepoint && d != nil && (d.finishing || d.finalID != 0) {
			// The job is taking its final checkpoint: let it finish.
			jm.log.Info("not rescaling a finishing job", zap.String("trigger", string(a.Trigger)))
			jm.step(ctx, reactive.Event{Kind: reactive.Running})
			return
		}
		if a.Trigger == reactive.TriggerStart && jm.takeover {
			// The job ran under an earlier leader: this deployment is the
			// failover's restore, and belongs in the history.
			r.rec.Trigger = TriggerFailover
		}
		jm.takeover = false
		if r.rec.Trigger != string(reactive.TriggerStart) {
			r.rec.Snapshot = jm.latestID()
			jm.rescale = r
		}
		if time.Now().Before(jm.restartAt) || jm.commitsInFlight > 0 || !jm.settlePointer(ctx) {
			jm.deferred = r // carried out by pushRescale once the backoff is over
			return
		}
		jm.redeploy(ctx, r, a)
	}
}

func (jm *JobManager) latestID() int64 {
	if jm.latest != nil {
		return jm.latest.ID
	}
	return 0
}

// pushRescale triggers the stop-with-savepoint of a pending rescale once no
// other checkpoint is in flight.
func (jm *JobManager) pushRescale(ctx context.Context, now time.Time) {
	if d := jm.deferred; d != nil && !now.Before(jm.restartAt) && jm.commitsInFlight == 0 && jm.settlePointer(ctx) {
		jm.deferred = nil
		jm.redeploy(ctx, d, d.action)
		return
	}
	r := jm.rescale
	d := jm.dep
	if r == nil || r.savepointID != 0 || !r.action.WithSavepoint || d == nil || !d.allRunning() || d.committing || d.coord.Pending() != nil {
		return
	}
	p, err := d.coord.Trigger(now, true, true)
	if err != nil {
		return
	}
	jm.lastID = p.ID
	r.savepointID, r.trigAt, r.dep = p.ID, now, d
	for tm := range d.tms {
		if err := jm.send(tm, &control.Message{Kind: control.KindTrigger, Attempt: d.attempt, ID: p.ID, Flags: network.BarrierSavepoint | network.BarrierStop}); err != nil {
			jm.log.Warn("trigger stop-with-savepoint", zap.Error(err))
		}
	}
}

// finishRescale runs once the stop-with-savepoint is committed.
func (jm *JobManager) finishRescale(ctx context.Context, id int64, bytes int64) {
	r := jm.rescale
	r.rec.Snapshot, r.rec.Savepoint, r.rec.StateBytes = id, true, bytes
	r.rec.SnapshotMs = ms(time.Since(r.trigAt))
	jm.redeploy(ctx, r, r.action)
}

// redeploy cancels the running deployment and deploys the action's plan,
// restoring from the latest committed snapshot.
func (jm *JobManager) redeploy(ctx context.Context, r *rescale, a reactive.Action) {
	stopAt := time.Now()
	jm.cancelDeployment(string(a.Trigger))
	r.rec.StopMs = ms(time.Since(stopAt))
	var tms []scheduler.TaskManager
	for _, id := range a.TaskManagers {
		if info, ok := jm.tms[id]; ok && jm.conns[id] != nil {
			tms = append(tms, scheduler.TaskManager{ID: id, Slots: info.Slots})
		}
	}
	plan, err := scheduler.Place(tms, a.Parallelism)
	if err != nil {
		jm.log.Warn("cannot place the deployment; retrying", zap.Error(err))
		jm.step(ctx, reactive.Event{Kind: reactive.RescaleFailed})
		return
	}
	r.deployAt = time.Now()
	if err := jm.deploy(ctx, plan); err != nil {
		jm.post(ctx, evFatal{err: err})
		return
	}
	r.dep = jm.dep
}

func (jm *JobManager) rescaleRunning(d *deployment) {
	if r := jm.rescale; r != nil && r.dep == d {
		r.runningAt = time.Now()
		r.rec.DeployMs = ms(r.runningAt.Sub(r.deployAt))
		if !r.firstAt.IsZero() {
			jm.completeRescale(r)
		}
	}
}

// rescaleFirstRecord notes the first record at a sink of the new
// deployment (it may come before the last task reports running).
func (jm *JobManager) rescaleFirstRecord(d *deployment, at time.Time) {
	r := jm.rescale
	if r == nil || r.dep != d || !r.firstAt.IsZero() {
		return
	}
	r.firstAt = at
	if !r.runningAt.IsZero() {
		jm.completeRescale(r)
	}
}

func (jm *JobManager) completeRescale(r *rescale) {
	at := r.firstAt
	if at.Before(r.runningAt) {
		at = r.runningAt
	}
	r.rec.FirstOutMs = ms(at.Sub(r.runningAt))
	r.rec.PauseMs = ms(at.Sub(r.rec.StartedAt))
	r.rec.Complete = true
	jm.rescale = nil
	jm.recordRescale(r.rec)
}

// rescaleSnapshotFailed handles a failed stop-with-savepoint: the core
// falls back to a restore from the latest checkpoint.
func (jm *JobManager) rescaleSnapshotFailed(ctx context.Context, id int64) {
	if r := jm.rescale; r != nil && r.savepointID == id {
		jm.log.Warn("stop-with-savepoint failed; falling back to the latest checkpoint", zap.Int64("savepoint", id))
		r.rec.Note = strings.TrimSpace(r.rec.Note + " stop-with-savepoint failed")
		r.rec.PauseMs = ms(time.Since(r.rec.StartedAt))
		jm.rescale = nil
		jm.recordRescale(r.rec)
		jm.step(ctx, reactive.Event{Kind: reactive.RescaleFailed})
	}
}

func (jm *JobManager) recordRescale(rec RescaleRecord) {
	jm.log.Info("rescaled", zap.String("trigger", rec.Trigger), zap.Int("from", rec.From), zap.Int("to", rec.To),
		zap.Int64("snapshot", rec.Snapshot), zap.Bool("savepoint", rec.Savepoint), zap.Float64("snapshotMs", rec.SnapshotMs),
		zap.Float64("deployMs", rec.DeployMs), zap.Float64("firstOutMs", rec.FirstOutMs), zap.Float64("pauseMs", rec.PauseMs))
	jm.metrics.rescales.WithLabelValues(rec.Trigger).Inc()
	jm.metrics.lastPause.Set(rec.PauseMs / 1000)
	jm.mu.Lock()
	jm.status.Rescales = append(jm.status.Rescales, rec)
	if len(jm.status.Rescales) > maxHistory {
		jm.status.Rescales = jm.status.Rescales[len(jm.status.Rescales)-maxHistory:]
	}
	val, err := json.Marshal(jm.status.Rescales)
	jm.mu.Unlock()
	if err != nil {
		return
	}
	// Kept in etcd so that the next leader continues it, by the history
	// writer: the loop does not wait for etcd.
	jm.history.offer(val)
}

// TriggerFailover marks the first deployment of a leader that took over a
// running job from an earlier one.
const TriggerFailover = "failover"

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
