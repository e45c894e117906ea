package jobcluster

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ebbflow/ebbflow/internal/testenv"
)

// A standby forwards REST requests to the leader from its watched view of
// etcd: no etcd read per request, and it follows a change of leader. The
// new leader continues the rescale history.
func TestStandbyForwardsFromItsView(t *testing.T) {
	e := testenv.StartEtcd(t)
	st := newStorage(t)
	a := newTestJM(t, e, st, "fwd", "jm-a", nil)
	a.start(t)
	a.waitLoop(t)
	a.recordRescale(record(1))

	b := newTestJM(t, e, st, "fwd", "jm-b", nil)
	c := newTestJM(t, e, st, "fwd", "jm-c", nil)
	// Before its view is synced (here: before Run), a JobManager reads etcd.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := b.leaderInfo(ctx)
	if err != nil || info.ID != "jm-a" || info.HTTP != a.httpAdvertise {
		t.Fatalf("leaderInfo of a JobManager not running: %+v, %v; want jm-a at %s", info, err, a.httpAdvertise)
	}
	if n := b.kv.gets.Load(); n != 1 {
		t.Fatalf("leaderInfo without a synced view read the jobmanagers keys %d times, want 1", n)
	}

	b.start(t)
	c.start(t)
	for _, s := range []*testJM{b, c} {
		waitFor(t, s.cfg.ID+" standing by with a synced view", 30*time.Second, func() bool { return s.standingBy() && s.synced() })
	}
	base := map[*testJM]int64{b: b.kv.gets.Load(), c: c.kv.gets.Load()}
	epochA := a.Epoch()
	for range 3 {
		for _, s := range []*testJM{b, c} {
			got, resp, err := s.getJob(t, "")
			if err != nil || got.Epoch != epochA || got.Phase == "standby" || resp.Header.Get(ForwardedHeader) != s.cfg.ID {
				t.Fatalf("GET /v1/job on %s: %+v, %v; want the leader's status (epoch %d) forwarded by %s", s.cfg.ID, got, err, epochA, s.cfg.ID)
			}
		}
	}
	if got, resp, err := b.getJob(t, "?local=1"); err != nil || got.Phase != "standby" || resp.Header.Get(ForwardedHeader) != "" {
		t.Fatalf("GET /v1/job?local=1 on jm-b: %+v, %v, forwarded-by %q; want its own standby status", got, err, resp.Header.Get(ForwardedHeader))
	}

	// The leader stops; one standby takes over, the other forwards to it.
	if err := a.stop(t); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("leader jm-a: %v", err)
	}
	var lead, standby *testJM
	waitFor(t, "a new leader", 30*time.Second, func() bool {
		for _, s := range []*testJM{b, c} {
			if s.Epoch() != 0 {
				lead = s
			} else {
				standby = s
			}
		}
		return lead != nil
	})
	epoch := lead.Epoch()
	waitFor(t, standby.cfg.ID+" forwarding to the new leader", 30*time.Second, func() bool {
		got, resp, err := standby.getJob(t, "")
		return err == nil && got.Epoch == epoch && resp.Header.Get(ForwardedHeader) == standby.cfg.ID
	})
	if id, _, registered, synced := standby.leaders.leader(); id != lead.cfg.ID || !registered || !synced {
		t.Fatalf("%s's view: leader %q (registered %v, synced %v), want %s", standby.cfg.ID, id, registered, synced, lead.cfg.ID)
	}
	for s, n := range base {
		if d := s.kv.gets.Load() - n; d != 0 {
			t.Errorf("%s read the jobmanagers keys %d times while forwarding from a synced view", s.cfg.ID, d)
		}
	}
	// The new leader reads the history once it has won (its epoch is set
	// and it answers REST before it has read it): wait for it.
	waitFor(t, "the new leader to continue jm-a's rescale history [1]", 30*time.Second, func() bool {
		return slices.Equal(tos(lead.Status().Rescales), []int{1})
	})

	// Requests forwarded twice are refused, not forwarded again.
	req, _ := http.NewRequest(http.MethodGet, standby.srv.URL+"/v1/job", nil)
	req.Header.Set(ForwardedHeader, "elsewhere")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a forwarded request to a standby: %s, want 503", resp.Status)
	}
}
