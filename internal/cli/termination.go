package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ebbflow/ebbflow/internal/termination"
	"github.com/ebbflow/ebbflow/taskmanager"
)

// startTerminationWatch builds the watcher that taskmanager.termination-watch
// asks for (nil for none) and probes the metadata service, so that a
// TaskManager told to watch a cloud it is not on fails at start. A notice
// already posted (the instance is being terminated) is returned.
func startTerminationWatch(ctx context.Context, s *settings, log *zap.Logger) (termination.Watcher, *termination.Notice, error) {
	kd, _ := keyDefOf("taskmanager.termination-watch")
	kind := strings.ToLower(s.str("taskmanager.termination-watch"))
	switch kind {
	case "", termination.KindNone:
		if ep := s.str("taskmanager.metadata-endpoint"); ep != "" {
			log.Warn("taskmanager.metadata-endpoint is set but taskmanager.termination-watch is none: no termination notices are watched", zap.String("endpoint", ep))
		}
		return nil, nil, nil
	case termination.KindAWS, termination.KindGCP:
	default:
		return nil, nil, usageError("config key %s: %q is not none, aws or gcp", describeSource(kd), s.str("taskmanager.termination-watch"))
	}
	poll := s.dur("taskmanager.metadata-poll-interval")
	if poll <= 0 {
		pd, _ := keyDefOf("taskmanager.metadata-poll-interval")
		return nil, nil, usageError("config key %s must be positive, got %v", describeSource(pd), poll)
	}
	w, err := termination.New(kind, termination.Options{Endpoint: s.str("taskmanager.metadata-endpoint"), PollInterval: poll, Logger: log.With(zap.String("watch", kind))})
	if err != nil {
		ed, _ := keyDefOf("taskmanager.metadata-endpoint")
		return nil, nil, usageError("config key %s: %v", describeSource(ed), err)
	}
	n, err := w.Probe(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		hint := "not an EC2 instance, or its instance metadata service is off (in a container the IMDSv2 hop limit must be at least 2)"
		if kind == termination.KindGCP {
			hint = "not a Compute Engine VM"
		}
		return nil, nil, fmt.Errorf("config key %s is %s, but %v: %s; set it to none, or taskmanager.metadata-endpoint to the right endpoint", describeSource(kd), kind, err, hint)
	}
	log.Info("watching the instance metadata for termination notices", zap.String("watch", kind), zap.String("endpoint", w.Endpoint()), zap.Duration("pollInterval", poll))
	return w, n, nil
}

// watchTermination runs w.Watch until ctx ends; a notice goes to the
// returned channel. A nil w never sends.
func watchTermination(ctx context.Context, w termination.Watcher) <-chan termination.Notice {
	ch := make(chan termination.Notice, 1)
	if w != nil {
		go func() {
			if n, err := w.Watch(ctx); err == nil {
				ch <- n
			}
		}()
	}
	return ch
}

// afterSignals returns a channel closed when the n-th SIGINT/SIGTERM from
// now arrives (onEarlier, if set, is told of the ones before), and a
// function that removes the handler.
func afterSignals(n int, onEarlier func()) (<-chan struct{}, func()) {
	sig := make(chan os.Signal, n)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		for i := 1; ; i++ {
			select {
			case <-sig:
				if i >= n {
					close(done)
					return
				}
				if onEarlier != nil {
					onEarlier()
				}
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return done, func() {
		once.Do(func() {
			signal.Stop(sig)
			close(quit)
		})
	}
}

// drainTaskManager is the drain that SIGTERM and a termination notice
// both start: mark draining in etcd and keep running until the JobManager
// has moved the work and releases this TaskManager (Run returns), or the
// drain timeout passes, or stopNow closes (a second signal).
func drainTaskManager(tm *taskmanager.TaskManager, runErr <-chan error, cancelRun context.CancelFunc, drain time.Duration, stopNow <-chan struct{}, log *zap.Logger) error {
	// Mark draining only once registered, so that the mark carries the
	// lease: a notice (or a signal) can come while Run is still registering,
	// and a mark written without the lease would outlive the process.
	ready := tm.Handler()
	for !registered(ready) {
		select {
		case err := <-runErr:
			return err
		case <-stopNow:
			cancelRun()
			return <-runErr
		case <-time.After(20 * time.Millisecond):
		}
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := tm.SetDraining(dctx)
	dcancel()
	if err != nil {
		log.Warn("could not mark draining in etcd; stopping", zap.Error(err))
		cancelRun()
		return <-runErr
	}
	timeout := time.NewTimer(drain)
	defer timeout.Stop()
	select {
	case err := <-runErr:
		log.Info("drained")
		return err
	case <-timeout.C:
		log.Warn("drain timeout passed before the JobManager released this TaskManager; stopping", zap.Duration("drainTimeout", drain))
	case <-stopNow:
		log.Warn("second signal; stopping without waiting for the drain")
	}
	cancelRun()
	return <-runErr
}

// registered asks the TaskManager's /readyz (ready while it holds its etcd
// registration).
func registered(h http.Handler) bool {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code == http.StatusOK
}
