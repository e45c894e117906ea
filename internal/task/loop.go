package task

import (
	"context"
	"fmt"
	"time"

	"github.com/ebbflow/ebbflow/internal/graph"
	"github.com/ebbflow/ebbflow/network"
)

// maxBatch bounds how many records a source emits per poll, so commands
// (checkpoint triggers) are seen promptly.
const maxBatch = 1024

// emitted is implemented by source operators that count their records.
type emitted interface{ Emitted() int64 }

func (t *Task) runSource(ctx context.Context) error {
	c := t.cfg
	rate := c.Graph.Vertices[c.Chain.Head().ID].Rate
	perSubtask := 0.0
	if rate > 0 {
		perSubtask = rate / float64(c.Parallelism)
	}
	var (
		tokens     float64
		lastFill   = time.Now()
		lastFlush  = time.Now()
		ended      bool // input exhausted
		stopped    bool // stop-with-savepoint barrier sent
		counter, _ = t.source.(emitted)
	)
	if perSubtask > 0 {
		tokens = perSubtask / 100 // a small initial burst
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	handle := func(cmd Command) (bool, error) {
		switch cmd.Kind {
		case CmdTrigger:
			if stopped {
				return false, nil
			}
			if err := t.snapshot(cmd.ID, cmd.Flags); err != nil {
				return false, err
			}
			lastFlush = time.Now()
			if cmd.Flags&network.BarrierStop != 0 {
				stopped = true
			}
		case CmdNotifyComplete:
			return false, t.notify(cmd.ID)
		case CmdFinish:
			if !ended {
				return false, fmt.Errorf("task: finish requested before the source ended")
			}
			return true, t.finish()
		}
		return false, nil
	}
	for {
		// Commands first, without blocking.
		for drained := false; !drained; {
			select {
			case cmd := <-t.cmds:
				done, err := handle(cmd)
				if err != nil {
					return err
				}
				if done {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			default:
				drained = true
			}
		}
		wait := time.Duration(0)
		if !ended && !stopped {
			max := maxBatch
			if perSubtask > 0 {
				now := time.Now()
				tokens += now.Sub(lastFill).Seconds() * perSubtask
				lastFill = now
				if burst := perSubtask / 10; tokens > burst && burst >= 1 {
					tokens = burst
				}
				if tokens < 1 {
					max = 0
					wait = time.Duration((1 - tokens) / perSubtask * float64(time.Second))
				} else if float64(max) > tokens {
					max = int(tokens)
				}
			}
			if max > 0 {
				st, err := t.source.Poll(max)
				if err != nil {
					return fmt.Errorf("source %q: %w", c.Chain.Head().Name, err)
				}
				if err := t.checkFailure(); err != nil {
					return err
				}
				if counter != nil {
					n := counter.Emitted()
					if perSubtask > 0 {
						tokens -= float64(n - t.Stats.RecordsIn.Load())
					}
					t.Stats.RecordsIn.Store(n)
				}
				switch st {
				case graph.EndOfInput:
					ended = true
					if err := t.flush(); err != nil {
						return err
					}
					c.Listener.SourceFinished()
				case graph.NothingAvailable:
					wait = 5 * time.Millisecond
				}
			}
		} else {
			wait = c.BufferTimeout
		}
		if time.Since(lastFlush) >= c.BufferTimeout {
			if err := t.flush(); err != nil {
				return err
			}
			t.countOut()
			lastFlush = time.Now()
		}
		if wait > 0 {
			if ended || stopped {
				wait = time.Hour // nothing to flush; wake on commands only
			} else if wait > c.BufferTimeout {
				wait = c.BufferTimeout
			}
			timer.Reset(wait)
			select {
			case cmd := <-t.cmds:
				done, err := handle(cmd)
				if err != nil {
					return err
				}
				if done {
					return nil
				}
			case <-timer.C:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

func (t *Task) runInput(ctx context.Context) error {
	c := t.cfg
	g := c.Gate
	n := g.Channels()
	var (
		aligning   int64 = -1 // checkpoint being aligned
		flags      byte
		arrived    = make([]bool, n)
		numArrived int
		eos        = make([]bool, n)
		numEOS     int
		in         int64
		firstSeen  = t.sinks == 0
	)
	ticker := time.NewTicker(c.BufferTimeout)
	defer ticker.Stop()
	completeAlignment := func() error {
		if err := t.snapshot(aligning, flags); err != nil {
			return err
		}
		for i := range arrived {
			if arrived[i] {
				arrived[i] = false
				g.Resume(i)
			}
		}
		numArrived, aligning = 0, -1
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case cmd := <-t.cmds:
			switch cmd.Kind {
			case CmdNotifyComplete:
				if err := t.notify(cmd.ID); err != nil {
					return err
				}
			default:
				return fmt.Errorf("task: command %d is for sources only", cmd.Kind)
			}
		case <-ticker.C:
			if err := t.flush(); err != nil {
				return err
			}
			t.Stats.RecordsIn.Store(in)
			t.countOut()
		case ev := <-g.Events():
			switch ev.Kind {
			case network.EventData:
				read := t.readers[g.EdgeOf(ev.Channel)]
				cnt := 0
				err := network.Records(ev.Body, func(rec []byte) error {
					cnt++
					return read(rec)
				})
				if err != nil {
					return fmt.Errorf("task %s subtask %d: decode input: %w", c.Chain.Name(), c.Subtask, err)
				}
				in += int64(cnt)
				if !firstSeen && cnt > 0 {
					firstSeen = true
					c.Listener.FirstRecord(time.Now())
				}
				if err := t.checkFailure(); err != nil {
					return err
				}
				if err := g.Release(ev); err != nil {
					return err
				}
			case network.EventBarrier:
				if aligning == -1 {
					aligning, flags = ev.Barrier, ev.Flags
				} else if ev.Barrier != aligning {
					return fmt.Errorf("task %s subtask %d: barrier %d arrived while aligning %d", c.Chain.Name(), c.Subtask, ev.Barrier, aligning)
				}
				arrived[ev.Channel] = true
				numArrived++
				if numArrived == n-numEOS {
					if err := completeAlignment(); err != nil {
						return err
					}
				}
			case network.EventWatermark:
				// Event time is not implemented yet; watermarks are ignored.
			case network.EventEOS:
				eos[ev.Channel] = true
				numEOS++
				if numEOS == n {
					t.Stats.RecordsIn.Store(in)
					if err := t.awaitNotify(ctx); err != nil {
						return err
					}
					return t.finish()
				}
				if aligning != -1 && numArrived == n-numEOS {
					if err := completeAlignment(); err != nil {
						return err
					}
				}
			case network.EventError:
				return ev.Err
			}
		}
	}
}

// awaitNotify waits, at end of stream, until the last checkpoint this task
// snapshotted is notified complete, so two-phase sinks publish their last
// transaction before the task ends. The JobManager only ends the sources
// after the final checkpoint is committed, so the notification is on its way.
func (t *Task) awaitNotify(ctx context.Context) error {
	for t.lastNotified < t.lastSnapshot {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case cmd := <-t.cmds:
			if cmd.Kind == CmdNotifyComplete {
				if err := t.notify(cmd.ID); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
