// Package scheduler decides where tasks run. It is pure: it takes the
// TaskManagers and their slots as a snapshot and returns a plan, which the
// JobManager carries out (and re-checks) with I/O of its own.
//
// Every slot runs one subtask of each chain (slot sharing), so a job at
// parallelism p needs p slots, and subtask i of every chain shares slot i.
package scheduler

import (
	"fmt"
	"sort"
)

// TaskManager is a TaskManager as the scheduler sees it.
type TaskManager struct {
	ID    string
	Slots int
	// Draining TaskManagers get no tasks.
	Draining bool
}

// Slot is one slot of one TaskManager.
type Slot struct {
	TM    string
	Index int
}

// Plan places subtask i of every chain in Slots[i].
type Plan struct {
	Parallelism int
	Slots       []Slot
}

// TMOf returns the TaskManager that runs subtask i.
func (p Plan) TMOf(i int) string { return p.Slots[i].TM }

// AvailableSlots counts the slots of TaskManagers that may get tasks.
func AvailableSlots(tms []TaskManager) int {
	n := 0
	for _, tm := range tms {
		if !tm.Draining {
			n += tm.Slots
		}
	}
	return n
}

// Parallelism is the parallelism the slots allow: min(slots, maxP), capped
// by limit when limit > 0.
func Parallelism(slots, maxP, limit int) int {
	p := slots
	if p > maxP {
		p = maxP
	}
	if limit > 0 && p > limit {
		p = limit
	}
	return p
}

// Place assigns p subtasks to slots. TaskManagers are taken in id order and
// their slots interleaved (first slot of each, then second of each, ...), so
// subtasks spread over TaskManagers, and the same input gives the same plan.
func Place(tms []TaskManager, p int) (Plan, error) {
	live := make([]TaskManager, 0, len(tms))
	for _, tm := range tms {
		if !tm.Draining && tm.Slots > 0 {
			live = append(live, tm)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].ID < live[j].ID })
	var slots []Slot
	for k := 0; len(slots) < p; k++ {
		added := false
		for _, tm := range live {
			if k < tm.Slots && len(slots) < p {
				slots = append(slots, Slot{TM: tm.ID, Index: k})
				added = true
			}
		}
		if !added {
			return Plan{}, fmt.Errorf("scheduler: parallelism %d needs %d slots, only %d available", p, p, len(slots))
		}
	}
	return Plan{Parallelism: p, Slots: slots}, nil
}
