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

// The tests run against fakemeta.IMDS, an imitation of EC2's IMDSv2 (EC2
// cannot be reached from here).

func newAWSTest(t *testing.T, o Options) (*fakemeta.IMDS, Watcher, *clock) {
	t.Helper()
	clk := newClock()
	m := fakemeta.NewIMDS(clk.Now)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	o.Endpoint = srv.URL
	o.Now = clk.Now
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 20 * time.Millisecond
	}
	w, err := New(KindAWS, o)
	if err != nil {
		t.Fatal(err)
	}
	return m, w, clk
}

func probeNone(t *testing.T, w Watcher) {
	t.Helper()
	n, err := w.Probe(context.Background())
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if n != nil {
		t.Fatalf("Probe found a notice at start: %+v", *n)
	}
}

func TestAWSAutoScalingTerminated(t *testing.T) {
	m, w, _ := newAWSTest(t, Options{})
	m.SetLifecycleState("InService")
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "three polls of InService", func() bool { return m.StateReads("InService") >= 3 })
	noResult(t, res)
	m.SetLifecycleState("Terminated")
	n := result(t, res)
	if n.Cloud != KindAWS || n.Reason != "aws autoscaling target-lifecycle-state Terminated" {
		t.Fatalf("notice %+v", n)
	}
	c := m.Counts()
	if c.TokenPuts != 1 || c.Unauthorized != 0 || c.BadRequests != 0 {
		t.Fatalf("want one token and every GET authorized; got %+v", c)
	}
}

func TestAWSSpotInterruption(t *testing.T) {
	log, logs := observed()
	m, w, _ := newAWSTest(t, Options{Logger: log})
	// Not in an Auto Scaling group: target-lifecycle-state is 404.
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "a few polls", func() bool { return m.Counts().Gets >= 8 })
	noResult(t, res)
	if n := countLogs(logs, zapcore.InfoLevel, "not in an Auto Scaling group"); n != 1 {
		t.Fatalf("'not in an Auto Scaling group' logged %d times, want once", n)
	}
	m.SetSpotAction(`{"action": "terminate", "time": "2026-01-02T03:06:05Z"}`)
	n := result(t, res)
	if n.Reason != "aws spot interruption notice: terminate at 2026-01-02T03:06:05Z" {
		t.Fatalf("notice %+v", n)
	}
	if c := countLogs(logs, zapcore.WarnLevel, ""); c != 0 {
		t.Fatalf("%d warnings on a healthy metadata service: %v", c, logs.All())
	}
}

func TestAWSSpotNoticeThatDoesNotParse(t *testing.T) {
	m, w, _ := newAWSTest(t, Options{})
	m.SetSpotAction("stop soon")
	n, err := w.Probe(context.Background())
	if err != nil || n == nil || n.Reason != "aws spot interruption notice: stop soon" {
		t.Fatalf("Probe = %+v, %v; want the notice with the raw answer", n, err)
	}
}

func TestAWSNoticeAlreadyPostedAtStart(t *testing.T) {
	m, w, _ := newAWSTest(t, Options{})
	m.SetLifecycleState("Terminated")
	n, err := w.Probe(context.Background())
	if err != nil || n == nil || n.Reason != "aws autoscaling target-lifecycle-state Terminated" {
		t.Fatalf("Probe = %+v, %v", n, err)
	}
}

func TestAWSLifecycleStates(t *testing.T) {
	t.Run("warm pool, standby, then scale-in into the warm pool", func(t *testing.T) {
		log, logs := observed()
		m, w, _ := newAWSTest(t, Options{Logger: log})
		// Launched into a running warm pool: not a termination.
		m.SetLifecycleState("Warmed:Running")
		probeNone(t, w)
		res := startWatch(t, w)
		waitFor(t, "polls of Warmed:Running", func() bool { return m.StateReads("Warmed:Running") >= 3 })
		noResult(t, res)
		m.SetLifecycleState("InService")
		waitFor(t, "polls of InService", func() bool { return m.StateReads("InService") >= 3 })
		m.SetLifecycleState("Standby")
		waitFor(t, "polls of Standby", func() bool { return m.StateReads("Standby") >= 3 })
		noResult(t, res)
		if countLogs(logs, zapcore.InfoLevel, "not a termination") != 2 {
			t.Fatalf("want Warmed:Running and Standby logged once each as not a termination: %v", logs.All())
		}
		m.SetLifecycleState("InService")
		waitFor(t, "polls of InService", func() bool { return m.StateReads("InService") >= 6 })
		m.SetLifecycleState("Warmed:Running")
		n := result(t, res)
		if !strings.HasPrefix(n.Reason, "aws autoscaling target-lifecycle-state Warmed:Running") {
			t.Fatalf("notice %+v", n)
		}
	})
	for _, st := range []string{"Warmed:Stopped", "Warmed:Hibernated", "Warmed:Terminated"} {
		t.Run(st, func(t *testing.T) {
			m, w, _ := newAWSTest(t, Options{})
			m.SetLifecycleState("InService")
			probeNone(t, w)
			res := startWatch(t, w)
			m.SetLifecycleState(st)
			if n := result(t, res); !strings.HasPrefix(n.Reason, "aws autoscaling target-lifecycle-state "+st) {
				t.Fatalf("notice %+v", n)
			}
		})
	}
}

// The token is refreshed after three quarters of its TTL, before it
// expires: no GET is ever refused.
func TestAWSTokenRefreshedBeforeExpiry(t *testing.T) {
	m, w, clk := newAWSTest(t, Options{TokenTTL: 8 * time.Second})
	m.SetLifecycleState("InService")
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "polls with the first token", func() bool { return m.Counts().Gets >= 6 })
	clk.Add(7 * time.Second) // past 6s (refresh), before 8s (expiry)
	waitFor(t, "a second token", func() bool { return m.Counts().TokenPuts == 2 })
	g := m.Counts().Gets
	waitFor(t, "polls with the second token", func() bool { return m.Counts().Gets >= g+6 })
	clk.Add(7 * time.Second)
	waitFor(t, "a third token", func() bool { return m.Counts().TokenPuts == 3 })
	m.SetLifecycleState("Terminated")
	result(t, res)
	if c := m.Counts(); c.Unauthorized != 0 {
		t.Fatalf("%d GETs refused: the token was not refreshed before it expired (%+v)", c.Unauthorized, c)
	}
}

// A token the service no longer accepts (401) is replaced at once, without
// a warning and without missing a poll.
func TestAWSTokenRefreshedOn401(t *testing.T) {
	log, logs := observed()
	m, w, _ := newAWSTest(t, Options{Logger: log})
	m.SetLifecycleState("InService")
	probeNone(t, w)
	res := startWatch(t, w)
	waitFor(t, "polls", func() bool { return m.Counts().Gets >= 4 })
	m.RevokeTokens()
	waitFor(t, "a new token after the 401", func() bool { c := m.Counts(); return c.TokenPuts == 2 && c.Unauthorized == 1 })
	g := m.Counts().Gets
	waitFor(t, "polls with the new token", func() bool { return m.Counts().Gets >= g+4 })
	m.SetLifecycleState("Terminated")
	result(t, res)
	if c := m.Counts(); c.Unauthorized != 1 || c.TokenPuts != 2 {
		t.Fatalf("counts %+v", c)
	}
	if n := countLogs(logs, zapcore.WarnLevel, ""); n != 0 {
		t.Fatalf("a replaced token is not an error, got %d warnings", n)
	}
}

// Transient metadata errors are logged and retried; the watch goes on and
// still sees the notice.
func TestAWSTransientErrorsRetried(t *testing.T) {
	log, logs := observed()
	m, w, _ := newAWSTest(t, Options{Logger: log})
	m.SetLifecycleState("InService")
	probeNone(t, w)
	m.FailNext(5)
	res := startWatch(t, w)
	waitFor(t, "five failed GETs", func() bool { return m.Counts().Failed == 5 })
	g := m.Counts().Gets
	waitFor(t, "polls after the errors", func() bool { return m.Counts().Gets >= g+4 })
	noResult(t, res)
	if n := countLogs(logs, zapcore.WarnLevel, "instance metadata check failed; retrying"); n < 1 {
		t.Fatalf("errors were not logged: %v", logs.All())
	}
	m.SetLifecycleState("Terminated")
	if n := result(t, res); n.Reason != "aws autoscaling target-lifecycle-state Terminated" {
		t.Fatalf("notice %+v", n)
	}
}

func TestAWSNoMetadataService(t *testing.T) {
	ep := closedEndpoint(t)
	w, err := New(KindAWS, Options{Endpoint: ep, ProbeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = w.Probe(context.Background())
	if err == nil {
		t.Fatal("Probe succeeded with nothing at the endpoint")
	}
	for _, want := range []string{ep, "PUT /latest/api/token", "does not answer", "IMDSv2"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the probe timeout", time.Since(start))
	}
}

// IMDS switched off answers 403: that is final, the probe does not wait.
func TestAWSMetadataServiceSwitchedOff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	w, err := New(KindAWS, Options{Endpoint: srv.URL, ProbeTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = w.Probe(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("Probe error %v; want HTTP 403 and the endpoint", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("a 403 was retried for %v", time.Since(start))
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		kind string
		o    Options
		want string
	}{
		{"azure", Options{}, `"azure"`},
		{KindAWS, Options{Endpoint: "169.254.169.254"}, "169.254.169.254"},
		{KindGCP, Options{Endpoint: "http://metadata.google.internal/computeMetadata/v1"}, "scheme and host only"},
		{KindAWS, Options{TokenTTL: 7 * time.Hour}, "TTL"},
		{KindAWS, Options{PollInterval: -time.Second}, "negative"},
	} {
		_, err := New(tc.kind, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %+v) = %v; want an error mentioning %s", tc.kind, tc.o, err, tc.want)
		}
	}
	w, err := New(KindAWS, Options{})
	if err != nil || w.Endpoint() != DefaultAWSEndpoint {
		t.Fatalf("default AWS endpoint: %v, %v", w, err)
	}
	w, err = New(KindGCP, Options{Endpoint: "http://127.0.0.1:9/"})
	if err != nil || w.Endpoint() != "http://127.0.0.1:9" {
		t.Fatalf("endpoint with a slash: %v, %v", w, err)
	}
}

// The imitation must be as strict as the real IMDSv2, or the tests above
// prove nothing.
func TestIMDSImitationIsStrict(t *testing.T) {
	clk := newClock()
	m := fakemeta.NewIMDS(clk.Now)
	srv := httptest.NewServer(m)
	defer srv.Close()
	do := func(method, path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ttl := map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"}
	if c, _ := do("GET", "/latest/api/token", ttl); c != 405 {
		t.Errorf("GET token: %d, want 405", c)
	}
	if c, _ := do("PUT", "/latest/api/token", nil); c != 400 {
		t.Errorf("PUT token without TTL: %d, want 400", c)
	}
	if c, _ := do("PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "21601"}); c != 400 {
		t.Errorf("PUT token with TTL 21601: %d, want 400", c)
	}
	if c, _ := do("PUT", "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"}); c != 403 {
		t.Errorf("PUT token through a proxy: %d, want 403", c)
	}
	if c, _ := do("GET", "/latest/meta-data/instance-id", nil); c != 401 {
		t.Errorf("GET without token: %d, want 401", c)
	}
	if c, _ := do("GET", "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": "made-up"}); c != 401 {
		t.Errorf("GET with a made-up token: %d, want 401", c)
	}
	c, tok := do("PUT", "/latest/api/token", ttl)
	if c != 200 || tok == "" {
		t.Fatalf("PUT token: %d %q", c, tok)
	}
	auth := map[string]string{"X-aws-ec2-metadata-token": tok}
	if c, v := do("GET", "/latest/meta-data/instance-id", auth); c != 200 || v == "" {
		t.Errorf("GET with token: %d %q", c, v)
	}
	if c, _ := do("GET", "/latest/meta-data/spot/instance-action", auth); c != 404 {
		t.Errorf("spot/instance-action without a notice: %d, want 404", c)
	}
	if c, _ := do("GET", "/latest/meta-data/autoscaling/target-lifecycle-state", auth); c != 404 {
		t.Errorf("target-lifecycle-state outside an Auto Scaling group: %d, want 404", c)
	}
	clk.Add(61 * time.Second)
	if c, _ := do("GET", "/latest/meta-data/instance-id", auth); c != 401 {
		t.Errorf("GET with an expired token: %d, want 401", c)
	}
}
