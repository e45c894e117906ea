package termination

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// clock is a settable clock for token expiry, shared by a watcher and the
// IMDS imitation.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

// countLogs counts entries at level or above whose message contains s.
func countLogs(logs *observer.ObservedLogs, level zapcore.Level, s string) int {
	n := 0
	for _, e := range logs.All() {
		if e.Level >= level && strings.Contains(e.Message, s) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type watchResult struct {
	n   Notice
	err error
}

// startWatch runs w.Watch in the background; the test's end cancels it.
func startWatch(t *testing.T, w Watcher) <-chan watchResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan watchResult, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := w.Watch(ctx)
		res <- watchResult{n, err}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
	return res
}

func result(t *testing.T, res <-chan watchResult) Notice {
	t.Helper()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("Watch: %v", r.err)
		}
		return r.n
	case <-time.After(10 * time.Second):
		t.Fatal("no termination notice within 10s")
	}
	return Notice{}
}

func noResult(t *testing.T, res <-chan watchResult) {
	t.Helper()
	select {
	case r := <-res:
		t.Fatalf("Watch returned early: %+v", r)
	default:
	}
}

// closedEndpoint is an http:// address where nothing listens.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}
