package taskmanager

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type tmMetrics struct {
	reg        *prometheus.Registry
	refusals   prometheus.Counter
	registered prometheus.Gauge
	snapshots  *prometheus.CounterVec
	snapBytes  prometheus.Counter
	// retiredSource holds the source records of attempts that are no longer
	// in tm.attempts (guarded by tm.mu), so that
	// ebbflow_taskmanager_source_records_total never goes back.
	retiredSource int64
}

// attemptRecords sums the records of an attempt's source (or sink) tasks.
func attemptRecords(a *attempt, source bool) int64 {
	var n int64
	for _, rt := range a.tasks {
		if (source && rt.source) || (!source && rt.sink) {
			n += rt.t.Stats.RecordsIn.Load()
		}
	}
	return n
}

// forgetAttemptLocked removes an attempt from tm.attempts and adds its
// source records to the running total; tm.mu is held.
func (tm *TaskManager) forgetAttemptLocked(id int64) *attempt {
	a := tm.attempts[id]
	if a != nil {
		tm.metrics.retiredSource += attemptRecords(a, true)
		delete(tm.attempts, id)
	}
	return a
}

func newTMMetrics(tm *TaskManager) *tmMetrics {
	m := &tmMetrics{reg: prometheus.NewRegistry(),
		refusals:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ebbflow_taskmanager_stale_epoch_refusals_total", Help: "Connections or commands refused because they carried an older leader epoch."}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_taskmanager_registered", Help: "1 while the TaskManager holds its etcd registration."}),
		snapshots:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ebbflow_taskmanager_snapshots_total", Help: "Task snapshots by outcome: stored, failed (storing them), declined (an operator could not snapshot, e.g. a sink whose store is down)."}, []string{"status"}),
		snapBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ebbflow_taskmanager_snapshot_bytes_total", Help: "Bytes of task snapshots written to checkpoint storage."}),
	}
	slots := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_taskmanager_slots", Help: "Slots this TaskManager offers."})
	slots.Set(float64(tm.cfg.Slots))
	tasks := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ebbflow_taskmanager_tasks", Help: "Tasks deployed on this TaskManager."}, func() float64 {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		n := 0
		for _, a := range tm.attempts {
			n += len(a.tasks)
		}
		return float64(n)
	})
	records := func(source bool) func() float64 {
		return func() float64 {
			tm.mu.Lock()
			defer tm.mu.Unlock()
			var n int64
			for _, a := range tm.attempts {
				n += attemptRecords(a, source)
			}
			return float64(n)
		}
	}
	sourceTotal := func() float64 {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		n := m.retiredSource
		for _, a := range tm.attempts {
			n += attemptRecords(a, true)
		}
		return float64(n)
	}
	m.snapshots.WithLabelValues("stored")
	m.snapshots.WithLabelValues("failed")
	m.snapshots.WithLabelValues("declined")
	m.reg.MustRegister(m.refusals, m.registered, m.snapshots, m.snapBytes, slots, tasks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ebbflow_taskmanager_source_records", Help: "Records emitted by this TaskManager's source tasks in the current attempt."}, records(true)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ebbflow_taskmanager_sink_records", Help: "Records received by this TaskManager's sink tasks in the current attempt."}, records(false)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ebbflow_taskmanager_source_records_total", Help: "Records emitted by this TaskManager's source tasks since it started, over all attempts (replays included); rate() of it is the TaskManager's input records/s."}, sourceTotal),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics, /livez and /readyz (ready while registered).
func (tm *TaskManager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(tm.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		tm.mu.Lock()
		ok := tm.registered
		tm.mu.Unlock()
		if !ok {
			http.Error(w, "not registered in etcd", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
