package jobcluster

import (
	"context"
	"errors"
	"time"
)

// CheckpointRecord is one entry of the checkpoint history.
type CheckpointRecord struct {
	ID        int64         `json:"id"`
	Savepoint bool          `json:"savepoint,omitempty"`
	Status    string        `json:"status"` // completed, declined, expired, failed
	StartedAt time.Time     `json:"startedAt"`
	Duration  time.Duration `json:"durationNanos"`
	Bytes     int64         `json:"bytes"`
	Dir       string        `json:"dir,omitempty"`
	Error     string        `json:"error,omitempty"`
}

// Status is a point-in-time view of the job, safe to read from any goroutine.
type Status struct {
	Job           string             `json:"job"`
	Phase         string             `json:"phase"`
	Epoch         int64              `json:"epoch"`
	Attempt       int64              `json:"attempt"`
	Parallelism   int                `json:"parallelism"`
	TaskManagers  int                `json:"taskManagers"`
	Slots         int                `json:"slots"`
	SourceRecords int64              `json:"sourceRecords"`
	SinkRecords   int64              `json:"sinkRecords"`
	Restarts      int                `json:"restarts"`
	LastError     string             `json:"lastError,omitempty"`
	ResumedFrom   int64              `json:"resumedFrom,omitempty"`
	Checkpoints   []CheckpointRecord `json:"checkpoints"`
	// RunningSince is when the current attempt's tasks all ran; FinishedAt
	// when a bounded job's output was committed.
	RunningSince time.Time `json:"runningSince,omitzero"`
	// Target is the parallelism the usable slots allow; IdleSlots the
	// slots it leaves unused; Waiting why the job is not (re)deploying.
	Target        int               `json:"target"`
	IdleSlots     int               `json:"idleSlots"`
	Waiting       string            `json:"waiting,omitempty"`
	Rescales      []RescaleRecord   `json:"rescales"`
	FinishedAt    time.Time         `json:"finishedAt,omitzero"`
	LastCompleted *CheckpointRecord `json:"lastCompleted,omitempty"`
}

// maxHistory bounds the checkpoint history kept in memory.
const maxHistory = 100

// Status returns a copy of the job's status.
func (jm *JobManager) Status() Status {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	s := jm.status
	s.Job = jm.cfg.Job
	s.Epoch = jm.epoch
	s.Checkpoints = append([]CheckpointRecord(nil), jm.status.Checkpoints...)
	s.Rescales = append([]RescaleRecord(nil), jm.status.Rescales...)
	if jm.status.LastCompleted != nil {
		c := *jm.status.LastCompleted
		s.LastCompleted = &c
	}
	return s
}

func (jm *JobManager) setPhase(p string) {
	jm.mu.Lock()
	jm.status.Phase = p
	jm.mu.Unlock()
}

func (jm *JobManager) setResumed(id int64) {
	jm.mu.Lock()
	jm.status.ResumedFrom = id
	jm.mu.Unlock()
}

func (jm *JobManager) recordCheckpoint(r CheckpointRecord) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	jm.status.Checkpoints = append(jm.status.Checkpoints, r)
	if len(jm.status.Checkpoints) > maxHistory {
		jm.status.Checkpoints = jm.status.Checkpoints[len(jm.status.Checkpoints)-maxHistory:]
	}
	if r.Status == "completed" {
		c := r
		jm.status.LastCompleted = &c
		jm.metrics.chkDuration.Observe(r.Duration.Seconds())
		jm.metrics.chkBytes.Set(float64(r.Bytes))
		jm.metrics.lastCheckpoint.Set(float64(r.ID))
	}
	jm.metrics.checkpoints.WithLabelValues(r.Status).Inc()
	if r.Status == "completed" {
		jm.chkFails = 0
	} else {
		jm.chkFails++
	}
	if r.Savepoint {
		sp := &SavepointStatus{ID: r.ID, Status: r.Status, Error: r.Error}
		if r.Status == "completed" {
			sp.Dir = r.Dir
		} else {
			sp.Status = "failed"
		}
		jm.savepoints[r.ID] = sp
	}
}

// TriggerSavepoint asks the leader to take a savepoint of the running job.
// It returns once the savepoint is triggered; poll Savepoint for the result.
func (jm *JobManager) TriggerSavepoint(ctx context.Context) (SavepointStatus, error) {
	jm.mu.Lock()
	phase := jm.status.Phase
	jm.mu.Unlock()
	if phase == "standby" {
		return SavepointStatus{}, errors.New("this JobManager is a standby; ask the leader")
	}
	reply := make(chan savepointReply, 1)
	select {
	case jm.events <- evSavepoint{reply: reply}:
	case <-ctx.Done():
		return SavepointStatus{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.sp, r.err
	case <-ctx.Done():
		return SavepointStatus{}, ctx.Err()
	}
}

// Savepoint returns the status of savepoint id.
func (jm *JobManager) Savepoint(id int64) (SavepointStatus, bool) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	sp, ok := jm.savepoints[id]
	if !ok {
		return SavepointStatus{}, false
	}
	return *sp, true
}

func (jm *JobManager) setSavepoint(sp SavepointStatus) {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	jm.savepoints[sp.ID] = &sp
}

func (jm *JobManager) lastCheckpointError() string {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	if n := len(jm.status.Checkpoints); n > 0 {
		c := jm.status.Checkpoints[n-1]
		if c.Error != "" {
			return c.Error
		}
		return c.Status
	}
	return ""
}
