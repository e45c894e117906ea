package jobcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the JobManager's REST API (docs/rest-api.md), /metrics,
// /livez and /readyz.
func (jm *JobManager) Handler() http.Handler {
	mux := &leaderMux{jm: jm, ServeMux: http.NewServeMux()}
	mux.HandleFunc("GET /v1/job", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, jm.Status())
	})
	mux.HandleFunc("GET /v1/taskmanagers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, jm.TaskManagers())
	})
	mux.HandleFunc("GET /v1/rescales", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, jm.Status().Rescales)
	})
	mux.HandleFunc("GET /v1/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		st := jm.Status()
		writeJSON(w, http.StatusOK, map[string]any{"latest": st.LastCompleted, "history": st.Checkpoints})
	})
	mux.HandleFunc("POST /v1/savepoints", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		sp, err := jm.TriggerSavepoint(ctx)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusAccepted, sp)
	})
	mux.HandleFunc("GET /v1/savepoints/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "savepoint id must be a number"})
			return
		}
		sp, ok := jm.Savepoint(id)
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no savepoint %d", id)})
			return
		}
		writeJSON(w, http.StatusOK, sp)
	})
	mux.ServeMux.Handle("GET /metrics", promhttp.HandlerFor(jm.metrics.reg, promhttp.HandlerOpts{}))
	mux.ServeMux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.ServeMux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := jm.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// leaderMux serves the REST API (/v1/…) of the leader: on a standby, such a
// request is forwarded to the leader's REST address (from the standby's
// watched view of etcd, leaderCache), so a Service or load balancer in
// front of both JobManagers gives the leader's answers. `?local=1` asks
// this JobManager itself. /metrics, /livez and /readyz are always this
// process's own.
type leaderMux struct {
	jm *JobManager
	*http.ServeMux
}

// ForwardedHeader marks a request a standby forwarded, and the response
// the leader gave it; a forwarded request is never forwarded again.
const ForwardedHeader = "X-Ebbflow-Forwarded-By"

func (m *leaderMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.ServeMux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("local") != "" || !m.jm.standingBy() {
			h(w, r)
			return
		}
		if by := r.Header.Get(ForwardedHeader); by != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf("JobManager %s is a standby too (request forwarded by %s while leadership changes); try again", m.jm.cfg.ID, by)})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		leader, err := m.jm.leaderInfo(ctx)
		cancel()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": fmt.Sprintf("JobManager %s is a standby and cannot forward to the leader: %v (add ?local=1 for this standby's own status)", m.jm.cfg.ID, err)})
			return
		}
		target := &url.URL{Scheme: "http", Host: leader.HTTP}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.SetXForwarded()
				pr.Out.Header.Set(ForwardedHeader, m.jm.cfg.ID)
			},
			ModifyResponse: func(resp *http.Response) error {
				resp.Header.Set(ForwardedHeader, m.jm.cfg.ID)
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("JobManager %s is a standby; the leader %s at %s did not answer: %v", m.jm.cfg.ID, leader.ID, leader.HTTP, err)})
			},
		}
		proxy.ServeHTTP(w, r)
	})
}

// standingBy reports whether this JobManager waits in the election.
func (jm *JobManager) standingBy() bool {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	return jm.status.Phase == "standby"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Ready reports whether this JobManager is healthy: leading with an etcd
// session, or standing by in the election.
func (jm *JobManager) Ready() error {
	jm.mu.Lock()
	phase := jm.status.Phase
	jm.mu.Unlock()
	switch phase {
	case "", "failed":
		return errors.New("not started")
	}
	return nil
}

// TaskManagerStatus is one registered TaskManager in the REST API.
type TaskManagerStatus struct {
	ID          string `json:"id"`
	Slots       int    `json:"slots"`
	State       string `json:"state"`
	ControlAddr string `json:"controlAddr"`
	DataAddr    string `json:"dataAddr"`
	Connected   bool   `json:"connected"`
	Tasks       int    `json:"tasks"`
}

// TaskManagers lists the registered TaskManagers.
func (jm *JobManager) TaskManagers() []TaskManagerStatus {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	out := append([]TaskManagerStatus(nil), jm.tmView...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SavepointStatus is a savepoint as the REST API shows it.
type SavepointStatus struct {
	ID     int64  `json:"id"`
	Status string `json:"status"` // pending, completed, failed
	Dir    string `json:"dir,omitempty"`
	Error  string `json:"error,omitempty"`
}

// metrics are the JobManager's Prometheus metrics.
type metrics struct {
	reg            *prometheus.Registry
	checkpoints    *prometheus.CounterVec
	chkDuration    prometheus.Histogram
	chkBytes       prometheus.Gauge
	parallelism    prometheus.Gauge
	restarts       prometheus.Counter
	taskManagers   prometheus.Gauge
	slots          prometheus.Gauge
	sourceRecords  prometheus.GaugeFunc
	sinkRecords    prometheus.GaugeFunc
	leader         prometheus.Gauge
	lastCheckpoint prometheus.Gauge
	rescales       *prometheus.CounterVec
	lastPause      prometheus.Gauge
	idleSlots      prometheus.Gauge
}

func newMetrics(jm *JobManager) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg,
		checkpoints:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ebbflow_checkpoints_total", Help: "Checkpoints by outcome (completed, declined, expired, failed)."}, []string{"status"}),
		chkDuration:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ebbflow_checkpoint_duration_seconds", Help: "Time from trigger to commit of completed checkpoints.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		chkBytes:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_checkpoint_size_bytes", Help: "Size of the last completed checkpoint."}),
		parallelism:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_job_parallelism", Help: "Current parallelism of the job."}),
		restarts:       prometheus.NewCounter(prometheus.CounterOpts{Name: "ebbflow_job_restarts_total", Help: "Attempts that failed and were restarted from a checkpoint."}),
		taskManagers:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_taskmanagers", Help: "Registered TaskManagers."}),
		slots:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_slots", Help: "Slots offered by connected TaskManagers that are not draining."}),
		leader:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_jobmanager_leader", Help: "1 while this JobManager is the leader."}),
		lastCheckpoint: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_last_checkpoint_id", Help: "Id of the last completed checkpoint."}),
	}
	m.rescales = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ebbflow_rescales_total", Help: "Rescales, restores and drains by trigger."}, []string{"trigger"})
	m.lastPause = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_rescale_last_pause_seconds", Help: "Pause of the last rescale: its start until the first record reached a sink."})
	m.idleSlots = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ebbflow_idle_slots", Help: "Usable slots the job does not use (parallelism capped)."})
	reg.MustRegister(m.rescales, m.lastPause, m.idleSlots)
	m.sourceRecords = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ebbflow_source_records", Help: "Records emitted by sources in this JobManager's lifetime (replays included)."},
		func() float64 { return float64(jm.Status().SourceRecords) })
	m.sinkRecords = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ebbflow_sink_records", Help: "Records received by sinks in this JobManager's lifetime (replays included)."},
		func() float64 { return float64(jm.Status().SinkRecords) })
	reg.MustRegister(m.checkpoints, m.chkDuration, m.chkBytes, m.parallelism, m.restarts, m.taskManagers, m.slots,
		m.sourceRecords, m.sinkRecords, m.leader, m.lastCheckpoint,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	for _, s := range []string{"completed", "declined", "expired", "failed"} {
		m.checkpoints.WithLabelValues(s)
	}
	return m
}
