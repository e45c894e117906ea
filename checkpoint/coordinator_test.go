package checkpoint

import (
	"go/parser"
	"go/token"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// t0 is the injected clock's origin; tests add durations to it.
var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func taskIDs(chains, p int) []TaskID {
	var out []TaskID
	for c := 0; c < chains; c++ {
		for s := 0; s < p; s++ {
			out = append(out, TaskID{Chain: c, Subtask: s})
		}
	}
	return out
}

func sortTasks(ts []TaskID) []TaskID {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].Chain != ts[j].Chain {
			return ts[i].Chain < ts[j].Chain
		}
		return ts[i].Subtask < ts[j].Subtask
	})
	return ts
}

func TestCoordinatorDue(t *testing.T) {
	const interval = 10 * time.Second
	for _, tc := range []struct {
		what     string
		interval time.Duration
		prepare  func(c *Coordinator) // runs at t0
		now      time.Duration
		want     bool
	}{
		{"before the first interval", interval, nil, 9 * time.Second, false},
		{"exactly one interval after start", interval, nil, interval, true},
		{"long after start", interval, nil, time.Hour, true},
		{"periodic checkpoints disabled", 0, nil, time.Hour, false},
		{"negative interval is disabled", -time.Second, nil, time.Hour, false},
		{"one in flight", interval, func(c *Coordinator) { c.Trigger(t0, false, false) }, time.Hour, false},
		{"savepoint in flight", interval, func(c *Coordinator) { c.Trigger(t0, true, true) }, time.Hour, false},
		{"interval counts from the end of the last one", interval, func(c *Coordinator) {
			p, _ := c.Trigger(at(10*time.Second), false, false)
			c.Finish(p.ID, at(25*time.Second))
		}, 34 * time.Second, false},
		{"due an interval after the last one ended", interval, func(c *Coordinator) {
			p, _ := c.Trigger(at(10*time.Second), false, false)
			c.Finish(p.ID, at(25*time.Second))
		}, 35 * time.Second, true},
		{"Finish of another id leaves it in flight", interval, func(c *Coordinator) {
			p, _ := c.Trigger(t0, false, false)
			c.Finish(p.ID+1, t0)
		}, time.Hour, false},
	} {
		c := NewCoordinator(taskIDs(1, 2), 0, tc.interval, time.Minute, t0)
		if tc.prepare != nil {
			tc.prepare(c)
		}
		if got := c.Due(at(tc.now)); got != tc.want {
			t.Errorf("%s: Due(t0+%v) = %v, want %v", tc.what, tc.now, got, tc.want)
		}
	}
}

func TestCoordinatorTrigger(t *testing.T) {
	c := NewCoordinator(taskIDs(2, 2), 0, time.Second, time.Minute, t0)
	if c.Pending() != nil {
		t.Fatal("pending before any trigger")
	}
	p, err := c.Trigger(at(time.Second), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != 1 || !p.Savepoint || !p.Stop || !p.Started.Equal(at(time.Second)) || len(p.Acks) != 0 {
		t.Fatalf("pending = %+v", p)
	}
	if c.Pending() != p {
		t.Fatal("Pending() is not the triggered checkpoint")
	}
	for _, sp := range []bool{false, true} {
		p2, err := c.Trigger(at(2*time.Second), sp, false)
		if err == nil || p2 != nil {
			t.Fatalf("second concurrent trigger (savepoint=%v) accepted", sp)
		}
		if !strings.Contains(err.Error(), "checkpoint 1") {
			t.Fatalf("error %q does not name the checkpoint in flight", err)
		}
	}
	if c.Pending() != p {
		t.Fatal("a refused trigger replaced the pending checkpoint")
	}
	c.Finish(1, at(3*time.Second))
	p, err = c.Trigger(at(4*time.Second), false, false)
	if err != nil || p.ID != 2 || p.Savepoint || p.Stop {
		t.Fatalf("trigger after finish: %+v, %v", p, err)
	}
}

// Ids never repeat: a coordinator of the next deployment starts after the
// last id, and ids of refused or timed-out checkpoints are not reused.
func TestCoordinatorIDsIncrease(t *testing.T) {
	last := int64(0)
	for deployment, lastID := range []int64{0, 3, 3, 17, 1 << 40} {
		if lastID < last {
			lastID = last
		}
		c := NewCoordinator(taskIDs(1, 1), lastID, time.Second, time.Second, t0)
		for n := 0; n < 4; n++ {
			p, err := c.Trigger(at(time.Duration(n)*time.Minute), n%2 == 1, false)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID <= last || p.ID <= lastID {
				t.Fatalf("deployment %d: id %d after %d (lastID %d)", deployment, p.ID, last, lastID)
			}
			if n == 0 && p.ID != lastID+1 {
				t.Fatalf("deployment %d: first id %d, want %d", deployment, p.ID, lastID+1)
			}
			last = p.ID
			if n%2 == 0 {
				if exp := c.Expired(at(time.Duration(n)*time.Minute + 2*time.Second)); exp != p {
					t.Fatalf("checkpoint %d did not expire", p.ID)
				}
			}
			c.Finish(p.ID, at(time.Duration(n)*time.Minute+3*time.Second))
		}
	}
}

func TestCoordinatorAcknowledge(t *testing.T) {
	tasks := taskIDs(2, 3)
	c := NewCoordinator(tasks, 41, time.Second, time.Minute, t0)
	ack := func(task TaskID) Ack { return Ack{Task: task, Bytes: 10} }

	if _, err := c.Acknowledge(42, ack(tasks[0])); err == nil || !strings.Contains(err.Error(), "42") {
		t.Fatalf("ack with nothing in flight: %v", err)
	}
	p, _ := c.Trigger(t0, false, false)
	if p.ID != 42 {
		t.Fatalf("id %d, want 42", p.ID)
	}
	for _, tc := range []struct {
		what string
		id   int64
		task TaskID
		want string
	}{
		{"older id", 41, tasks[0], "checkpoint 41"},
		{"newer id", 43, tasks[0], "checkpoint 43"},
		{"unknown chain", 42, TaskID{Chain: 2, Subtask: 0}, "chain 2 subtask 0"},
		{"unknown subtask", 42, TaskID{Chain: 0, Subtask: 3}, "chain 0 subtask 3"},
		{"negative subtask", 42, TaskID{Chain: 0, Subtask: -1}, "unknown task"},
	} {
		done, err := c.Acknowledge(tc.id, ack(tc.task))
		if err == nil || done != nil {
			t.Errorf("%s: accepted", tc.what)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q lacks %q", tc.what, err, tc.want)
		}
	}
	if len(p.Acks) != 0 {
		t.Fatalf("refused acks were recorded: %v", p.Acks)
	}
	for i, task := range tasks {
		done, err := c.Acknowledge(42, ack(task))
		if err != nil {
			t.Fatal(err)
		}
		if i < len(tasks)-1 {
			if done != nil {
				t.Fatalf("complete after %d of %d acks", i+1, len(tasks))
			}
			// A repeated ack does not count twice.
			if done, err := c.Acknowledge(42, ack(task)); err != nil || done != nil {
				t.Fatalf("repeated ack of %v: %v, %v", task, done, err)
			}
			continue
		}
		if done != p {
			t.Fatalf("last ack: complete = %v, want the pending checkpoint", done)
		}
	}
	if len(p.Acks) != len(tasks) {
		t.Fatalf("%d acks recorded, want %d", len(p.Acks), len(tasks))
	}
	c.Finish(42, at(time.Second))
	if c.Pending() != nil {
		t.Fatal("still pending after Finish")
	}
	if _, err := c.Acknowledge(42, ack(tasks[0])); err == nil {
		t.Fatal("late ack of a finished checkpoint accepted")
	}
}

func TestCoordinatorExpired(t *testing.T) {
	const timeout = 30 * time.Second
	for _, tc := range []struct {
		what    string
		timeout time.Duration
		trigger bool
		now     time.Duration // since the trigger at t0+5s
		want    bool
	}{
		{"nothing in flight", timeout, false, time.Hour, false},
		{"just started", timeout, true, 0, false},
		{"before the timeout", timeout, true, timeout - time.Nanosecond, false},
		{"exactly at the timeout", timeout, true, timeout, false},
		{"after the timeout", timeout, true, timeout + time.Nanosecond, true},
		{"long after", timeout, true, time.Hour, true},
		{"no timeout", 0, true, 1000 * time.Hour, false},
	} {
		c := NewCoordinator(taskIDs(1, 2), 0, time.Second, tc.timeout, t0)
		var p *Pending
		if tc.trigger {
			p, _ = c.Trigger(at(5*time.Second), false, false)
		}
		got := c.Expired(at(5*time.Second + tc.now))
		if (got != nil) != tc.want || (got != nil && got != p) {
			t.Errorf("%s: Expired = %v, want %v", tc.what, got, tc.want)
		}
	}
	// After Finish nothing is expired.
	c := NewCoordinator(taskIDs(1, 1), 0, time.Second, timeout, t0)
	p, _ := c.Trigger(t0, false, false)
	c.Finish(p.ID, at(time.Hour))
	if c.Expired(at(2*time.Hour)) != nil {
		t.Fatal("finished checkpoint expired")
	}
}

func TestCoordinatorMissing(t *testing.T) {
	tasks := taskIDs(2, 2)
	c := NewCoordinator(tasks, 0, time.Second, time.Minute, t0)
	if m := c.Missing(); m != nil {
		t.Fatalf("Missing with nothing in flight = %v", m)
	}
	p, _ := c.Trigger(t0, false, false)
	for _, tc := range []struct {
		ack  *TaskID
		want []TaskID
	}{
		{nil, tasks},
		{&TaskID{Chain: 1, Subtask: 0}, []TaskID{{0, 0}, {0, 1}, {1, 1}}},
		{&TaskID{Chain: 9, Subtask: 9}, []TaskID{{0, 0}, {0, 1}, {1, 1}}}, // refused ack changes nothing
		{&TaskID{Chain: 0, Subtask: 1}, []TaskID{{0, 0}, {1, 1}}},
		{&TaskID{Chain: 0, Subtask: 0}, []TaskID{{1, 1}}},
		{&TaskID{Chain: 1, Subtask: 1}, nil},
	} {
		if tc.ack != nil {
			c.Acknowledge(p.ID, Ack{Task: *tc.ack})
		}
		if got := sortTasks(c.Missing()); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("after ack of %v: Missing = %v, want %v", tc.ack, got, tc.want)
		}
	}
}

func TestTaskIDString(t *testing.T) {
	if s := (TaskID{Chain: 2, Subtask: 7}).String(); s != "chain 2 subtask 7" {
		t.Fatalf("String = %q", s)
	}
}

func TestBuildMetadata(t *testing.T) {
	// Chain 0 is a source at parallelism 1, chains 1 and 2 run at 3.
	const p = 3
	tasks := []TaskID{{0, 0}, {1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 1}, {2, 2}}
	c := NewCoordinator(tasks, 6, time.Second, time.Minute, t0)
	pend, _ := c.Trigger(at(time.Second), true, false)
	obj := func(t TaskID) string {
		return "a5-c" + strconv.Itoa(t.Chain) + "-s" + strconv.Itoa(t.Subtask) + ".state"
	}
	var done *Pending
	var wantBytes int64
	// Acks arrive in any order.
	for _, i := range []int{4, 0, 6, 2, 1, 5, 3} {
		task := tasks[i]
		a := Ack{Task: task, Bytes: int64(100*task.Chain + task.Subtask + 1), States: map[string]SubtaskState{}, Union: map[string]bool{}}
		wantBytes += a.Bytes
		switch task.Chain {
		case 0:
			a.States["lines"] = SubtaskState{Object: obj(task), List: []Span{{Off: 0, Len: 4}}}
			a.Union["lines"] = false
		case 1:
			a.States["tokenize"] = SubtaskState{Object: obj(task)}
			a.States["count"] = SubtaskState{Object: obj(task), KeyGroups: []Span{{KeyGroup: task.Subtask, Len: 1}}}
		case 2:
			a.States["out"] = SubtaskState{Object: obj(task), List: []Span{{Off: 0, Len: 2}}}
			// Only some subtasks report the flag; one is enough.
			a.Union["out"] = task.Subtask == 1
		}
		var err error
		done, err = c.Acknowledge(pend.ID, a)
		if err != nil {
			t.Fatal(err)
		}
	}
	if done == nil {
		t.Fatal("not complete after every ack")
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	md := BuildMetadata("wc", done, 5, 128, p, now)
	if md.Job != "wc" || md.ID != 7 || !md.Savepoint || md.Attempt != 5 || md.MaxParallelism != 128 || md.Parallelism != p {
		t.Fatalf("header %+v", md)
	}
	if md.Bytes != wantBytes {
		t.Fatalf("bytes %d, want %d", md.Bytes, wantBytes)
	}
	if !md.CreatedAt.Equal(now) || md.CreatedAt.Location() != time.UTC {
		t.Fatalf("createdAt %v, want %v in UTC", md.CreatedAt, now)
	}
	var ops []string
	for op := range md.Operators {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	if !reflect.DeepEqual(ops, []string{"count", "lines", "out", "tokenize"}) {
		t.Fatalf("operators %q", ops)
	}
	for op, os := range md.Operators {
		if len(os.Subtasks) != p {
			t.Fatalf("%s: %d subtask entries, want %d (one per subtask of the job's parallelism)", op, len(os.Subtasks), p)
		}
		if os.Union != (op == "out") {
			t.Fatalf("%s: union = %v", op, os.Union)
		}
	}
	// Each ack's state sits at its subtask index.
	for _, task := range tasks {
		for op, os := range md.Operators {
			chain := map[string]int{"lines": 0, "tokenize": 1, "count": 1, "out": 2}[op]
			if chain != task.Chain {
				continue
			}
			if got := os.Subtasks[task.Subtask].Object; got != obj(task) {
				t.Fatalf("%s subtask %d: object %q, want %q", op, task.Subtask, got, obj(task))
			}
		}
	}
	if ks := md.Operators["count"].Subtasks[2].KeyGroups; len(ks) != 1 || ks[0].KeyGroup != 2 {
		t.Fatalf("count subtask 2 key groups %v", ks)
	}
	// The source ran at parallelism 1: its other entries are empty.
	for s := 1; s < p; s++ {
		if st := md.Operators["lines"].Subtasks[s]; st.Object != "" || len(st.List)+len(st.KeyGroups) != 0 {
			t.Fatalf("lines subtask %d: %+v", s, st)
		}
	}
	// And it still restores: the single list entry goes to one subtask.
	n := 0
	for j := 0; j < 4; j++ {
		n += len(Assign(md, "lines", j, 4).pieces)
	}
	if n != 1 {
		t.Fatalf("source list entry assigned %d times", n)
	}
}

// The coordinator is part of the pure core (DESIGN.md §8): it must not do
// I/O, log or talk to etcd or the network.
func TestCoordinatorIsPure(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "coordinator.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"fmt": true, "time": true, "sort": true, "slices": true, "maps": true, "errors": true, "strings": true, "strconv": true}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if !allowed[p] {
			t.Errorf("coordinator.go imports %q; the coordinator's bookkeeping must stay free of I/O", p)
		}
	}
}
