// Package reactive decides how a job follows its TaskManagers. It is a pure
// state machine: events (TaskManagers joining, draining or lost, snapshots
// and rescales finishing, clock ticks) go in with the time they happened,
// decisions come out; it does no I/O and reads no clock. The JobManager
// carries the decisions out and reports back.
//
// Policy: the job runs at p = min(usable slots, key groups), bounded by
// MaxParallelism, and not at all below MinParallelism. A planned change
// (TaskManagers joined, or the target moved while everything is alive) waits
// for the slot count to be stable for Stabilization and for Cooldown since
// the last rescale, then rescales through a stop-with-savepoint, so nothing
// is replayed. A draining TaskManager is acted on at once (draining
// overrides the cooldown): savepoint, redeploy without it, release it. A
// lost TaskManager costs a restore from the latest completed checkpoint.
package reactive

import (
	"fmt"
	"sort"
	"time"
)

// Config is the policy.
type Config struct {
	KeyGroups      int // the job's max parallelism (key groups)
	MinParallelism int // below this the job waits
	MaxParallelism int // 0 = KeyGroups
	Stabilization  time.Duration
	Cooldown       time.Duration
	// DrainTimeout bounds a graceful scale-in: if the savepoint is not done
	// by then, fall back to the latest checkpoint.
	DrainTimeout time.Duration
	// StartSlots, when set, holds the first deployment until that many
	// usable slots exist (ebbflow local knows how many it starts).
	StartSlots int
}

// Validate checks the policy.
func (c Config) Validate() error {
	switch {
	case c.KeyGroups < 1:
		return fmt.Errorf("reactive: key groups %d < 1", c.KeyGroups)
	case c.MinParallelism < 1:
		return fmt.Errorf("reactive: min-parallelism %d must be at least 1", c.MinParallelism)
	case c.MaxParallelism != 0 && c.MaxParallelism < c.MinParallelism:
		return fmt.Errorf("reactive: max-parallelism %d is below min-parallelism %d", c.MaxParallelism, c.MinParallelism)
	case c.Stabilization < 0 || c.Cooldown < 0 || c.DrainTimeout < 0:
		return fmt.Errorf("reactive: negative duration")
	}
	return nil
}

func (c Config) cap() int {
	m := c.KeyGroups
	if c.MaxParallelism > 0 && c.MaxParallelism < m {
		m = c.MaxParallelism
	}
	return m
}

// Trigger says why a rescale happens.
type Trigger string

const (
	TriggerStart    Trigger = "start"    // first deployment
	TriggerScaleUp  Trigger = "scale-up" // more slots
	TriggerPlanned  Trigger = "planned"  // target changed with everyone alive
	TriggerDrain    Trigger = "drain"    // a TaskManager is draining
	TriggerLoss     Trigger = "loss"     // a TaskManager vanished
	TriggerFailure  Trigger = "failure"  // the attempt failed
	TriggerFallback Trigger = "drain-fallback"
)

// EventKind is what happened.
type EventKind int

const (
	Joined        EventKind = iota // a TaskManager registered (ID, Slots)
	Draining                       // a TaskManager asked to leave (ID)
	Lost                           // a TaskManager's lease expired (ID)
	Running                        // the deployment asked for is running (Parallelism)
	RescaleFailed                  // the savepoint or redeploy failed
	AttemptFailed                  // the running attempt failed
	Tick                           // time passed
	Finished                       // the job finished; decide nothing more
)

// Event is one input.
type Event struct {
	Kind  EventKind
	TM    string
	Slots int
}

// ActionKind is a decision.
type ActionKind int

const (
	// Deploy: (re)deploy at Parallelism on the TaskManagers listed.
	// WithSavepoint: stop the running job with a savepoint first and
	// restore from it; otherwise restore from the latest checkpoint.
	Deploy ActionKind = iota
	// Release: the TaskManager may deregister and exit.
	Release
	// Wait: nothing to do now, and why.
	Wait
)

// Action is one decision.
type Action struct {
	Kind          ActionKind
	Parallelism   int
	TaskManagers  []string
	WithSavepoint bool
	Trigger       Trigger
	TM            string // Release
	Reason        string // Wait
}

func (a Action) String() string {
	switch a.Kind {
	case Deploy:
		how := "from the latest checkpoint"
		if a.WithSavepoint {
			how = "with a stop-with-savepoint"
		}
		return fmt.Sprintf("deploy p=%d on %v %s (%s)", a.Parallelism, a.TaskManagers, how, a.Trigger)
	case Release:
		return "release " + a.TM
	}
	return "wait: " + a.Reason
}

type tm struct {
	slots    int
	draining bool
	since    time.Time
}

// phase of the machine.
type phase int

const (
	idle      phase = iota // nothing deployed
	running                // a deployment is running
	rescaling              // a deployment was asked for and is not running yet
	done
)

// Machine is the decision core. It is not safe for concurrent use.
type Machine struct {
	cfg          Config
	tms          map[string]*tm
	phase        phase
	current      int      // running parallelism
	placed       []string // TaskManagers of the current/pending deployment
	lastChange   time.Time
	lastRescale  time.Time
	pendingSince time.Time
	pendingDrain map[string]bool // draining TMs to release once the redeploy runs
	drainStarted time.Time
	lastWait     string
}

// New returns a machine with no TaskManagers.
func New(cfg Config) (*Machine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Machine{cfg: cfg, tms: map[string]*tm{}, pendingDrain: map[string]bool{}}, nil
}

// usable lists non-draining TaskManagers (sorted) and their slots.
func (m *Machine) usable() ([]string, int) {
	var ids []string
	slots := 0
	for id, t := range m.tms {
		if !t.draining {
			ids = append(ids, id)
			slots += t.slots
		}
	}
	sort.Strings(ids)
	return ids, slots
}

// Target is the parallelism the usable slots allow, 0 if below the minimum.
func (m *Machine) Target() int {
	_, slots := m.usable()
	p := min(slots, m.cfg.cap())
	if p < m.cfg.MinParallelism {
		return 0
	}
	return p
}

// IdleSlots is how many usable slots the target leaves unused.
func (m *Machine) IdleSlots() int {
	_, slots := m.usable()
	return slots - m.Target()
}

// Step feeds one event at time now and returns the decisions.
func (m *Machine) Step(now time.Time, ev Event) []Action {
	if m.phase == done {
		return nil
	}
	switch ev.Kind {
	case Joined:
		if t, ok := m.tms[ev.TM]; ok {
			if t.slots == ev.Slots {
				return m.decide(now)
			}
			t.slots = ev.Slots
		} else {
			m.tms[ev.TM] = &tm{slots: ev.Slots, since: now}
		}
		m.lastChange = now
	case Draining:
		t, ok := m.tms[ev.TM]
		if !ok || t.draining {
			return m.decide(now)
		}
		t.draining = true
		m.lastChange = now
		if !m.hosts(ev.TM) {
			// It runs nothing: let it go right away.
			delete(m.tms, ev.TM)
			return append([]Action{{Kind: Release, TM: ev.TM}}, m.decide(now)...)
		}
		m.pendingDrain[ev.TM] = true
		if m.phase == running {
			return m.redeploy(now, TriggerDrain, true)
		}
	case Lost:
		if _, ok := m.tms[ev.TM]; !ok {
			return m.decide(now)
		}
		hosted := m.hosts(ev.TM)
		delete(m.tms, ev.TM)
		delete(m.pendingDrain, ev.TM)
		m.lastChange = now
		if hosted && (m.phase == running || m.phase == rescaling) {
			return m.redeploy(now, TriggerLoss, false)
		}
	case Running:
		m.phase = running
		m.lastRescale = now
		var out []Action
		for id := range m.pendingDrain {
			if !m.hosts(id) {
				out = append(out, Action{Kind: Release, TM: id})
				delete(m.pendingDrain, id)
				delete(m.tms, id)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].TM < out[j].TM })
		return append(out, m.decide(now)...)
	case RescaleFailed, AttemptFailed:
		if m.phase == idle {
			return m.decide(now)
		}
		trig := TriggerFailure
		if ev.Kind == RescaleFailed && len(m.pendingDrain) > 0 {
			trig = TriggerFallback
		}
		return m.redeploy(now, trig, false)
	case Finished:
		m.phase = done
		return nil
	case Tick:
		if m.phase == rescaling && len(m.pendingDrain) > 0 && m.cfg.DrainTimeout > 0 && now.Sub(m.drainStarted) >= m.cfg.DrainTimeout {
			// The savepoint did not make it in time: restore from the latest
			// checkpoint without the draining TaskManagers.
			m.drainStarted = now
			return m.redeploy(now, TriggerFallback, false)
		}
	}
	return m.decide(now)
}

func (m *Machine) hosts(id string) bool {
	for _, p := range m.placed {
		if p == id {
			return true
		}
	}
	return false
}

// redeploy asks for a deployment at the current target.
func (m *Machine) redeploy(now time.Time, trig Trigger, savepoint bool) []Action {
	p := m.Target()
	if p == 0 {
		m.phase = idle
		m.placed = nil
		return append(m.releaseDrained(), m.wait(fmt.Sprintf("%d usable slots, below min-parallelism %d", m.slotsNow(), m.cfg.MinParallelism)))
	}
	ids, _ := m.usable()
	m.phase = rescaling
	m.placed = m.choose(ids, p)
	m.pendingSince = now
	if trig == TriggerDrain {
		m.drainStarted = now
	}
	out := []Action{{Kind: Deploy, Parallelism: p, TaskManagers: m.placed, WithSavepoint: savepoint, Trigger: trig}}
	m.current = p
	return out
}

func (m *Machine) releaseDrained() []Action {
	var out []Action
	for id := range m.pendingDrain {
		out = append(out, Action{Kind: Release, TM: id})
		delete(m.tms, id)
	}
	m.pendingDrain = map[string]bool{}
	sort.Slice(out, func(i, j int) bool { return out[i].TM < out[j].TM })
	return out
}

func (m *Machine) slotsNow() int { _, s := m.usable(); return s }

// choose takes TaskManagers in id order until they hold p slots.
func (m *Machine) choose(ids []string, p int) []string {
	var out []string
	n := 0
	for _, id := range ids {
		if n >= p {
			break
		}
		out = append(out, id)
		n += m.tms[id].slots
	}
	return out
}

// decide handles the level-based part: start, or a planned rescale.
func (m *Machine) decide(now time.Time) []Action {
	target := m.Target()
	switch m.phase {
	case idle:
		if s := m.slotsNow(); m.cfg.StartSlots > 0 && m.lastRescale.IsZero() && s < m.cfg.StartSlots && target > 0 {
			return []Action{m.wait(fmt.Sprintf("waiting for slots (%d of %d)", s, m.cfg.StartSlots))}
		}
		if target == 0 {
			return []Action{m.wait(fmt.Sprintf("%d usable slots, below min-parallelism %d", m.slotsNow(), m.cfg.MinParallelism))}
		}
		if now.Sub(m.lastChange) < m.cfg.Stabilization {
			return []Action{m.wait(fmt.Sprintf("slots changed %v ago; stabilizing for %v", now.Sub(m.lastChange), m.cfg.Stabilization))}
		}
		return m.redeploy(now, TriggerStart, false)
	case rescaling:
		return []Action{m.wait("a deployment is in progress")}
	case running:
		for id := range m.pendingDrain {
			if m.hosts(id) {
				// A TaskManager began draining while the last deployment
				// was being made, which still placed work on it: move the
				// work at once (draining overrides stabilization and
				// cooldown).
				return m.redeploy(now, TriggerDrain, true)
			}
		}
		if target == m.current || target == 0 {
			if target == 0 {
				return []Action{m.wait("below min-parallelism; keeping the running deployment")}
			}
			if idle := m.IdleSlots(); idle > 0 {
				return []Action{m.wait(fmt.Sprintf("%d slots idle: parallelism is capped at %d", idle, m.cfg.cap()))}
			}
			return nil
		}
		if now.Sub(m.lastChange) < m.cfg.Stabilization {
			return []Action{m.wait(fmt.Sprintf("target %d: stabilizing (slots changed %v ago, window %v)", target, now.Sub(m.lastChange), m.cfg.Stabilization))}
		}
		if now.Sub(m.lastRescale) < m.cfg.Cooldown {
			return []Action{m.wait(fmt.Sprintf("target %d: cooling down (%v since the last rescale, cooldown %v)", target, now.Sub(m.lastRescale), m.cfg.Cooldown))}
		}
		trig := TriggerPlanned
		if target > m.current {
			trig = TriggerScaleUp
		}
		return m.redeploy(now, trig, true)
	}
	return nil
}

func (m *Machine) wait(reason string) Action {
	m.lastWait = reason
	return Action{Kind: Wait, Reason: reason}
}

// WaitReason is the reason of the last Wait decision.
func (m *Machine) WaitReason() string { return m.lastWait }
