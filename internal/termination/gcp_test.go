package termination

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/ebbflow/ebbflow/internal/termination/fakemeta"
)

// The tests run against fakemeta.GCE, an imitation of the GCE metadata
// server (GCE cannot be reached from here).

func newGCPTest(t *testing.T, o Options) (*fakemeta.GCE, Watcher) {
	t.Helper()
	g := fakemeta.NewGCE()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	o.Endpoint = srv.URL
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 20 * time.Millisecond
	}
	if o.HangTimeout == 0 {
		o.HangTimeout = 30 * time.Second
	}
	w, err := New(KindGCP, o)
	if err != nil {
		t.Fatal(err)
	}
	return g, w
}

// Preemption ends the hanging GET at once (long before its timeout).
func TestGCPPreempted(t *testing.T) {
	log, logs := observed()
	g, w := newGCPTest(t, Options{Logger: log})
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "both keys in a hanging GET", func() bool { return g.Counts().Waiting == 2 })
	if c := g.Counts(); c.HangsETag != 2 {
		t.Fatalf("hanging GETs without last_etag (a change between probe and watch would be missed): %+v", c)
	}
	noResult(t, res)
	start := time.Now()
	g.Set("preempted", "TRUE")
	n := result(t, res)
	if n.Cloud != KindGCP || n.Reason != "gcp preempted" {
		t.Fatalf("notice %+v", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("preemption seen after %v: the hanging GET did not return on the change", d)
	}
	if c := g.Counts(); c.Forbidden != 0 {
		t.Fatalf("requests without Metadata-Flavor: %+v", c)
	}
	if n := countLogs(logs, zapcore.WarnLevel, ""); n != 0 {
		t.Fatalf("%d warnings on a healthy metadata server", n)
	}
}

func TestGCPMaintenanceEvent(t *testing.T) {
	log, logs := observed()
	g, w := newGCPTest(t, Options{Logger: log})
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "hanging GETs", func() bool { return g.Counts().Waiting == 2 })
	// Live migration: the VM keeps running.
	g.Set("maintenance-event", "MIGRATE_ON_HOST_MAINTENANCE")
	waitFor(t, "the migration logged", func() bool { return countLogs(logs, zapcore.InfoLevel, "does not stop this VM") == 1 })
	waitFor(t, "hanging GETs again", func() bool { return g.Counts().Waiting == 2 })
	noResult(t, res)
	g.Set("maintenance-event", "TERMINATE_ON_HOST_MAINTENANCE")
	n := result(t, res)
	if !strings.HasPrefix(n.Reason, "gcp maintenance-event TERMINATE_ON_HOST_MAINTENANCE") {
		t.Fatalf("notice %+v", n)
	}
}

// A hanging GET that times out (timeout_sec) is simply issued again.
func TestGCPHangingGETTimesOut(t *testing.T) {
	g, w := newGCPTest(t, Options{HangTimeout: time.Second})
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "a second round of hanging GETs after timeout_sec", func() bool { c := g.Counts(); return c.Hangs >= 4 && c.Waiting == 2 })
	noResult(t, res)
	g.Set("preempted", "TRUE")
	if n := result(t, res); n.Reason != "gcp preempted" {
		t.Fatalf("notice %+v", n)
	}
}

func TestGCPNoticeAlreadyPostedAtStart(t *testing.T) {
	g, w := newGCPTest(t, Options{})
	g.Set("preempted", "TRUE")
	n, err := w.Probe(context.Background())
	if err != nil || n == nil || n.Reason != "gcp preempted" {
		t.Fatalf("Probe = %+v, %v", n, err)
	}
}

func TestGCPWithoutMaintenanceEvent(t *testing.T) {
	log, logs := observed()
	g, w := newGCPTest(t, Options{Logger: log})
	g.Delete("maintenance-event")
	probeNone(t, w)
	if countLogs(logs, zapcore.InfoLevel, "no instance/maintenance-event") != 1 {
		t.Fatalf("missing maintenance-event not logged: %v", logs.All())
	}
	res := startWatch(t, w)
	waitFor(t, "the preempted GET hanging", func() bool { return g.Counts().Waiting == 1 })
	g.Set("preempted", "TRUE")
	result(t, res)
}

func TestGCPTransientErrorsRetried(t *testing.T) {
	log, logs := observed()
	g, w := newGCPTest(t, Options{Logger: log})
	probeNone(t, w)
	g.FailNext(4)
	res := startWatch(t, w)
	waitFor(t, "four failed requests and then hanging GETs", func() bool { c := g.Counts(); return c.Failed == 4 && c.Waiting == 2 })
	noResult(t, res)
	if n := countLogs(logs, zapcore.WarnLevel, "gcp metadata request failed; retrying"); n != 4 {
		t.Fatalf("%d retries logged, want 4: %v", n, logs.All())
	}
	g.Set("preempted", "TRUE")
	result(t, res)
}

func TestGCPNoMetadataServer(t *testing.T) {
	ep := closedEndpoint(t)
	w, err := New(KindGCP, Options{Endpoint: ep, ProbeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Probe(context.Background())
	if err == nil {
		t.Fatal("Probe succeeded with nothing at the endpoint")
	}
	for _, want := range []string{ep, "GCE metadata server", "does not answer", "/computeMetadata/v1/instance/preempted"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
}

// Some other HTTP server at the address is not taken for the metadata
// server: the real one always answers with Metadata-Flavor: Google.
func TestGCPNotAMetadataServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("FALSE")) }))
	defer srv.Close()
	w, err := New(KindGCP, Options{Endpoint: srv.URL, ProbeTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = w.Probe(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a GCE metadata server") {
		t.Fatalf("Probe error %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("retried for %v", time.Since(start))
	}
}

// The imitation must be as strict as the real server, or the tests above
// prove nothing.
func TestGCEImitationIsStrict(t *testing.T) {
	g := fakemeta.NewGCE()
	srv := httptest.NewServer(g)
	defer srv.Close()
	get := func(path string, flavor bool) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if flavor {
			req.Header.Set("Metadata-Flavor", "Google")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if r, _ := get("/computeMetadata/v1/instance/preempted", false); r.StatusCode != 403 {
		t.Errorf("without Metadata-Flavor: %d, want 403", r.StatusCode)
	}
	r, v := get("/computeMetadata/v1/instance/preempted", true)
	if r.StatusCode != 200 || v != "FALSE" || r.Header.Get("ETag") == "" || r.Header.Get("Metadata-Flavor") != "Google" {
		t.Fatalf("GET preempted: %d %q %v", r.StatusCode, v, r.Header)
	}
	etag := r.Header.Get("ETag")
	g.Set("preempted", "TRUE")
	// The value differs from last_etag: the hanging GET answers at once.
	r, v = get("/computeMetadata/v1/instance/preempted?wait_for_change=true&timeout_sec=30&last_etag="+etag, true)
	if r.StatusCode != 200 || v != "TRUE" || r.Header.Get("ETag") == etag {
		t.Fatalf("hanging GET after a change: %d %q", r.StatusCode, v)
	}
	if c := g.Counts(); c.Hangs != 0 {
		t.Fatalf("a GET with a stale last_etag waited: %+v", c)
	}
	if r, _ := get("/computeMetadata/v1/instance/no-such-key", true); r.StatusCode != 404 {
		t.Errorf("unknown key: %d, want 404", r.StatusCode)
	}
}
