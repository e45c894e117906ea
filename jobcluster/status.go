package jobcluster

import "time"

// CheckpointRecord is one entry of the checkpoint history.
type CheckpointRecord struct {
	ID        int64         `json:"id"`
	Savepoint bool          `json:"savepoint,omitempty"`
	Status    string        `json:"status"` // completed, declined, expired, failed
	StartedAt time.Time     `json:"startedAt"`
	Duration  time.Duration `json:"durationNanos"`
	Bytes     int64         `json:"bytes"`
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
	RunningSince  time.Time         `json:"runningSince,omitzero"`
	FinishedAt    time.Time         `json:"finishedAt,omitzero"`
	LastCompleted *CheckpointRecord `json:"lastCompleted,omitempty"`

	baseSource, baseSink int64
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
	}
}
