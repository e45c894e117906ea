// Package fakemeta imitates the two cloud instance metadata services that
// package termination watches, for tests: EC2's IMDSv2 and the GCE
// metadata server. They are imitations — EC2 and GCE cannot be reached from
// a test — built from the providers' documentation and as strict as the
// real services where the watchers depend on it:
//
// IMDS: a session token only from PUT /latest/api/token with
// X-aws-ec2-metadata-token-ttl-seconds (1..21600; else 400; a GET there is
// 405; X-Forwarded-For is 403); every metadata GET needs a valid, unexpired
// token in X-aws-ec2-metadata-token (else 401); items that are not set are
// 404 (autoscaling/target-lifecycle-state outside an Auto Scaling group,
// spot/instance-action without an interruption notice).
//
// GCE: every request needs Metadata-Flavor: Google (else 403) and every
// answer carries it; values have an ETag; ?wait_for_change=true holds the
// GET until the value differs from last_etag (at once if it already does)
// or timeout_sec passes.
package fakemeta

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSCounts counts what an IMDS imitation served.
type IMDSCounts struct {
	TokenPuts    int // tokens issued
	Gets         int // metadata GETs answered with a valid token
	Unauthorized int // metadata GETs refused with 401
	BadRequests  int // other refusals (400, 403, 405)
	Failed       int // GETs failed on purpose (FailNext)
}

// IMDS imitates EC2's instance metadata service in IMDSv2-required mode.
type IMDS struct {
	mu        sync.Mutex
	now       func() time.Time
	tokens    map[string]time.Time // token → expiry
	seq       int
	lifecycle string // "" = not in an Auto Scaling group (404)
	spot      string // "" = no interruption notice (404)
	failNext  int
	counts    IMDSCounts
	lastState map[string]int // GETs per lifecycle state served
}

// NewIMDS returns an IMDS imitation whose tokens expire by now (nil:
// time.Now). Serve it with httptest.NewServer.
func NewIMDS(now func() time.Time) *IMDS {
	if now == nil {
		now = time.Now
	}
	return &IMDS{now: now, tokens: map[string]time.Time{}, lastState: map[string]int{}}
}

// SetLifecycleState sets autoscaling/target-lifecycle-state ("" = 404).
func (m *IMDS) SetLifecycleState(s string) {
	m.mu.Lock()
	m.lifecycle = s
	m.mu.Unlock()
}

// SetSpotAction sets spot/instance-action, e.g.
// {"action":"terminate","time":"2026-01-02T03:04:05Z"} ("" = 404).
func (m *IMDS) SetSpotAction(s string) {
	m.mu.Lock()
	m.spot = s
	m.mu.Unlock()
}

// RevokeTokens invalidates every token issued so far (as after a restart
// of the metadata service): the next GET with one gets 401.
func (m *IMDS) RevokeTokens() {
	m.mu.Lock()
	m.tokens = map[string]time.Time{}
	m.mu.Unlock()
}

// FailNext makes the next n metadata GETs answer 500.
func (m *IMDS) FailNext(n int) {
	m.mu.Lock()
	m.failNext = n
	m.mu.Unlock()
}

// Counts returns what was served so far.
func (m *IMDS) Counts() IMDSCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts
}

// StateReads is how many authorized GETs of target-lifecycle-state
// answered state.
func (m *IMDS) StateReads(state string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastState[state]
}

func (m *IMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case r.URL.Path == "/latest/api/token":
		if r.Method != http.MethodPut {
			m.counts.BadRequests++
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("X-Forwarded-For") != "" {
			m.counts.BadRequests++
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if err != nil || ttl < 1 || ttl > 21600 {
			m.counts.BadRequests++
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		m.seq++
		tok := fmt.Sprintf("imds-imitation-token-%d-%x", m.seq, m.now().UnixNano())
		m.tokens[tok] = m.now().Add(time.Duration(ttl) * time.Second)
		m.counts.TokenPuts++
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", strconv.Itoa(ttl))
		w.Write([]byte(tok))
	case strings.HasPrefix(r.URL.Path, "/latest/meta-data/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			m.counts.BadRequests++
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		exp, ok := m.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
		if !ok || !m.now().Before(exp) {
			m.counts.Unauthorized++
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if m.failNext > 0 {
			m.failNext--
			m.counts.Failed++
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			return
		}
		m.counts.Gets++
		var v string
		switch strings.TrimPrefix(r.URL.Path, "/latest/meta-data/") {
		case "autoscaling/target-lifecycle-state":
			v = m.lifecycle
			if v != "" {
				m.lastState[v]++
			}
		case "spot/instance-action":
			v = m.spot
		case "instance-id":
			v = "i-0imitation0000000"
		case "placement/region":
			v = "us-east-1"
		case "local-ipv4":
			v = "127.0.0.1"
		}
		if v == "" {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(v))
	default:
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

// GCECounts counts what a GCE imitation served.
type GCECounts struct {
	Requests  int // answered with a value
	Forbidden int // refused: no Metadata-Flavor: Google
	Hangs     int // wait_for_change GETs that waited
	HangsETag int // … of them with a last_etag
	Waiting   int // wait_for_change GETs waiting now
	Failed    int // failed on purpose (FailNext)
}

// GCE imitates the GCE metadata server's instance/ values.
type GCE struct {
	mu       sync.Mutex
	values   map[string]string // key under instance/ → value; absent = 404
	changed  chan struct{}     // closed on every Set
	failNext int
	counts   GCECounts
}

// NewGCE returns a GCE imitation with instance/preempted FALSE and
// instance/maintenance-event NONE.
func NewGCE() *GCE {
	return &GCE{values: map[string]string{"preempted": "FALSE", "maintenance-event": "NONE"}, changed: make(chan struct{})}
}

// Set sets instance/key; Delete removes it (404).
func (g *GCE) Set(key, value string) {
	g.mu.Lock()
	g.values[key] = value
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// Delete removes instance/key: GETs of it answer 404.
func (g *GCE) Delete(key string) {
	g.mu.Lock()
	delete(g.values, key)
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// FailNext makes the next n requests answer 503.
func (g *GCE) FailNext(n int) {
	g.mu.Lock()
	g.failNext = n
	g.mu.Unlock()
}

// Counts returns what was served so far.
func (g *GCE) Counts() GCECounts {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counts
}

func etagOf(key, value string) string {
	h := fnv.New64a()
	h.Write([]byte(key + "\x00" + value))
	return fmt.Sprintf("%016x", h.Sum64())
}

func (g *GCE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Metadata-Flavor", "Google")
	g.mu.Lock()
	if r.Header.Get("Metadata-Flavor") != "Google" || r.Header.Get("X-Forwarded-For") != "" {
		g.counts.Forbidden++
		g.mu.Unlock()
		http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
		return
	}
	if g.failNext > 0 {
		g.failNext--
		g.counts.Failed++
		g.mu.Unlock()
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/computeMetadata/v1/instance/")
	if !ok || r.Method != http.MethodGet {
		g.mu.Unlock()
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	if q.Get("wait_for_change") == "true" {
		timeout := time.Duration(0)
		if s := q.Get("timeout_sec"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				g.mu.Unlock()
				http.Error(w, "Bad Request: timeout_sec", http.StatusBadRequest)
				return
			}
			timeout = time.Duration(n) * time.Second
		}
		last := q.Get("last_etag")
		v, ok := g.values[key]
		if !ok || last == "" || last == etagOf(key, v) {
			// Nothing new for this client yet: wait for a change.
			g.counts.Hangs++
			if last != "" {
				g.counts.HangsETag++
			}
			g.counts.Waiting++
			var timer <-chan time.Time
			if timeout > 0 {
				t := time.NewTimer(timeout)
				defer t.Stop()
				timer = t.C
			}
			for {
				ch := g.changed
				g.mu.Unlock()
				timedOut := false
				select {
				case <-ch:
				case <-timer:
					timedOut = true
				case <-r.Context().Done():
				}
				g.mu.Lock()
				if r.Context().Err() != nil {
					g.counts.Waiting--
					g.mu.Unlock()
					return
				}
				if nv, nok := g.values[key]; timedOut || nok != ok || nv != v {
					break
				}
				// Another key changed: keep waiting.
			}
			g.counts.Waiting--
		}
	}
	v, ok := g.values[key]
	if !ok {
		g.mu.Unlock()
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	g.counts.Requests++
	g.mu.Unlock()
	w.Header().Set("ETag", etagOf(key, v))
	w.Header().Set("Content-Type", "application/text")
	w.Write([]byte(v))
}
