package jobcluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// historyWriter stores the rescale history in etcd off the event loop, so
// that a slow etcd never stalls a decision. The loop hands it each new
// snapshot with offer, which never blocks; its goroutine (run) writes the
// newest one with the leader's guarded put. Every snapshot is the whole
// list, so one that arrives while a write is in flight replaces any that
// waits: the newest wins.
type historyWriter struct {
	log *zap.Logger
	put func(ctx context.Context, val string) error
	// timeout bounds one write; flushTimeout the last one, at shutdown.
	timeout, flushTimeout time.Duration

	wake chan struct{} // 1 slot: a snapshot is pending

	mu       sync.Mutex
	pending  []byte // newest snapshot not yet stored; nil when there is none
	gen      uint64 // counts the snapshots offered
	attempts int    // writes started
	finished int    // writes over (stored or failed)
}

func newHistoryWriter(log *zap.Logger, put func(ctx context.Context, val string) error) *historyWriter {
	return &historyWriter{log: log, put: put, timeout: 2 * time.Second, flushTimeout: 2 * time.Second, wake: make(chan struct{}, 1)}
}

// offer makes val the snapshot to store next. It never blocks.
func (h *historyWriter) offer(val []byte) {
	h.mu.Lock()
	h.pending = val
	h.gen++
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default: // a wake-up is already due: it will find val
	}
}

// run writes the pending snapshot whenever there is one, until ctx ends.
// A failed write is retried at the next snapshot or after a short backoff;
// a refused one (another JobManager leads) goes to lost, and run returns.
func (h *historyWriter) run(ctx context.Context, lost func(error)) {
	var backoff time.Duration
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-retry:
		}
		retry = nil
		err := h.write(ctx, h.timeout)
		switch {
		case err == nil:
			backoff = 0
		case errors.Is(err, ErrLostLeadership):
			h.log.Error("the rescale history write was refused: this JobManager no longer leads", zap.Error(err))
			lost(err)
			return
		case ctx.Err() != nil:
			return
		default:
			// Informational only: history is lost, not data. Say so and
			// try again.
			backoff = min(max(2*backoff, 250*time.Millisecond), 5*time.Second)
			h.log.Warn("could not store the rescale history in etcd; retrying", zap.Duration("in", backoff), zap.Error(err))
			retry = time.After(backoff)
		}
	}
}

// write stores the pending snapshot, if any, within timeout. The snapshot
// stays pending if the write fails or a newer one arrived meanwhile.
func (h *historyWriter) write(ctx context.Context, timeout time.Duration) error {
	h.mu.Lock()
	val, gen := h.pending, h.gen
	if val != nil {
		h.attempts++
	}
	h.mu.Unlock()
	if val == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err := h.put(wctx, string(val))
	cancel()
	h.mu.Lock()
	h.finished++
	if err == nil && h.gen == gen {
		h.pending = nil
	}
	h.mu.Unlock()
	return err
}

// flush stores what is still pending once the writer goroutine is gone (a
// leader that stops, e.g. a bounded job that finished), within
// flushTimeout.
func (h *historyWriter) flush() error {
	return h.write(context.Background(), h.flushTimeout)
}
