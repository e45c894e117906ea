package checkpoint

import (
	"fmt"
	"sort"
	"time"
)

// TaskID names one task (chain subtask) of a deployment.
type TaskID struct {
	Chain   int `json:"chain"`
	Subtask int `json:"subtask"`
}

func (t TaskID) String() string { return fmt.Sprintf("chain %d subtask %d", t.Chain, t.Subtask) }

// Ack is a task's report that its part of a checkpoint is stored.
type Ack struct {
	Task   TaskID                  `json:"task"`
	States map[string]SubtaskState `json:"states"`
	Union  map[string]bool         `json:"union,omitempty"`
	Bytes  int64                   `json:"bytes"`
}

// Pending is a checkpoint waiting for acknowledgements.
type Pending struct {
	ID        int64
	Savepoint bool
	Stop      bool
	Started   time.Time
	Acks      map[TaskID]Ack
}

// Coordinator is the pure bookkeeping of a job's checkpoints for one
// deployment: when to trigger, which acks are missing, when a checkpoint
// is complete or has timed out. It does no I/O; time is passed in.
type Coordinator struct {
	tasks    map[TaskID]bool
	interval time.Duration
	timeout  time.Duration
	nextID   int64
	pending  *Pending
	lastEnd  time.Time
}

// NewCoordinator tracks checkpoints of the given tasks; ids start after
// lastID so they never repeat across deployments.
func NewCoordinator(tasks []TaskID, lastID int64, interval, timeout time.Duration, now time.Time) *Coordinator {
	m := map[TaskID]bool{}
	for _, t := range tasks {
		m[t] = true
	}
	return &Coordinator{tasks: m, interval: interval, timeout: timeout, nextID: lastID + 1, lastEnd: now}
}

// Pending is the checkpoint in flight, or nil.
func (c *Coordinator) Pending() *Pending { return c.pending }

// Due reports whether a periodic checkpoint should start now: none in
// flight and the interval has passed since the last one ended.
func (c *Coordinator) Due(now time.Time) bool {
	return c.interval > 0 && c.pending == nil && now.Sub(c.lastEnd) >= c.interval
}

// Trigger starts checkpoint (or savepoint) number NextID. It fails if one
// is in flight.
func (c *Coordinator) Trigger(now time.Time, savepoint, stop bool) (*Pending, error) {
	if c.pending != nil {
		return nil, fmt.Errorf("checkpoint %d is still in progress", c.pending.ID)
	}
	c.pending = &Pending{ID: c.nextID, Savepoint: savepoint, Stop: stop, Started: now, Acks: map[TaskID]Ack{}}
	c.nextID++
	return c.pending, nil
}

// Acknowledge records an ack. It returns the pending checkpoint when it is
// complete (every task acked), and an error for an ack that does not fit.
func (c *Coordinator) Acknowledge(id int64, a Ack) (*Pending, error) {
	if c.pending == nil || c.pending.ID != id {
		return nil, fmt.Errorf("ack for checkpoint %d, which is not in progress", id)
	}
	if !c.tasks[a.Task] {
		return nil, fmt.Errorf("ack for checkpoint %d from unknown task %v", id, a.Task)
	}
	if _, dup := c.pending.Acks[a.Task]; dup {
		return nil, nil // a repeated ack counts once and never completes twice
	}
	c.pending.Acks[a.Task] = a
	if len(c.pending.Acks) < len(c.tasks) {
		return nil, nil
	}
	return c.pending, nil
}

// Finish ends the pending checkpoint id (completed, failed or declined).
func (c *Coordinator) Finish(id int64, now time.Time) {
	if c.pending != nil && c.pending.ID == id {
		c.pending = nil
		c.lastEnd = now
	}
}

// Expired returns the pending checkpoint if it has run longer than the timeout.
func (c *Coordinator) Expired(now time.Time) *Pending {
	if c.pending != nil && c.timeout > 0 && now.Sub(c.pending.Started) > c.timeout {
		return c.pending
	}
	return nil
}

// Missing lists the tasks that have not acked the pending checkpoint.
func (c *Coordinator) Missing() []TaskID {
	var out []TaskID
	if c.pending == nil {
		return nil
	}
	for t := range c.tasks {
		if _, ok := c.pending.Acks[t]; !ok {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Chain != out[j].Chain {
			return out[i].Chain < out[j].Chain
		}
		return out[i].Subtask < out[j].Subtask
	})
	return out
}

// BuildMetadata assembles the metadata of a complete checkpoint.
func BuildMetadata(job string, p *Pending, attempt int64, maxP, parallelism int, now time.Time) *Metadata {
	md := &Metadata{Job: job, ID: p.ID, Savepoint: p.Savepoint, Attempt: attempt, MaxParallelism: maxP, Parallelism: parallelism, CreatedAt: now.UTC(), Operators: map[string]*OperatorState{}}
	for id, a := range p.Acks {
		if id.Subtask < 0 || id.Subtask >= parallelism {
			continue
		}
		md.Bytes += a.Bytes
		for op, st := range a.States {
			os := md.Operators[op]
			if os == nil {
				os = &OperatorState{Subtasks: make([]SubtaskState, parallelism)}
				md.Operators[op] = os
			}
			os.Subtasks[id.Subtask] = st
			if a.Union[op] {
				os.Union = true
			}
		}
	}
	return md
}
