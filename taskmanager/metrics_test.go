package taskmanager

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/ebbflow/ebbflow/internal/task"
)

func gather(t *testing.T, tm *TaskManager, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := tm.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("metric %s not exported", name)
	return nil
}

// ebbflow_taskmanager_source_records_total is what an autoscaler takes
// rate() of (deploy/kubernetes): it must be a counter and must not go back
// when an attempt ends (a rescale, a new leader), unlike the per-attempt
// gauge beside it.
func TestSourceRecordsTotalSurvivesAttempts(t *testing.T) {
	tm := &TaskManager{cfg: Config{Slots: 1}, attempts: map[int64]*attempt{}}
	tm.metrics = newTMMetrics(tm)
	total := func() float64 {
		mf := gather(t, tm, "ebbflow_taskmanager_source_records_total")
		if mf.GetType() != dto.MetricType_COUNTER {
			t.Fatalf("ebbflow_taskmanager_source_records_total is a %v, want a counter", mf.GetType())
		}
		return mf.GetMetric()[0].GetCounter().GetValue()
	}
	gauge := func() float64 {
		return gather(t, tm, "ebbflow_taskmanager_source_records").GetMetric()[0].GetGauge().GetValue()
	}
	newAttempt := func(id int64, sourceRecords, sinkRecords int64) *attempt {
		src, snk := &task.Task{}, &task.Task{}
		src.Stats.RecordsIn.Store(sourceRecords)
		snk.Stats.RecordsIn.Store(sinkRecords)
		return &attempt{id: id, tasks: []*runningTask{{t: src, source: true}, {t: snk, sink: true}}}
	}

	a1 := newAttempt(1, 100, 90)
	tm.attempts[1] = a1
	if got := total(); got != 100 {
		t.Fatalf("total with one attempt = %v, want 100", got)
	}
	a1.tasks[0].t.Stats.RecordsIn.Store(150)
	tm.mu.Lock()
	tm.forgetAttemptLocked(1) // cancelled: a rescale
	tm.attempts[2] = newAttempt(2, 7, 0)
	tm.mu.Unlock()
	if got := gauge(); got != 7 {
		t.Errorf("per-attempt gauge = %v, want 7 (the new attempt only)", got)
	}
	if got := total(); got != 157 {
		t.Fatalf("total after the attempt changed = %v, want 157 (150 of the old attempt + 7)", got)
	}
	// A new leader voids every attempt: the same fold.
	tm.mu.Lock()
	for id := range tm.attempts {
		tm.forgetAttemptLocked(id)
	}
	tm.mu.Unlock()
	if got := total(); got != 157 {
		t.Fatalf("total with no attempt = %v, want 157", got)
	}
	if tm.forgetAttemptLocked(99) != nil {
		t.Fatal("forgetting an unknown attempt returned one")
	}
}
