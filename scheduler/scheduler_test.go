package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestPlaceSpreadsAndIsDeterministic(t *testing.T) {
	tms := []TaskManager{{ID: "b", Slots: 2}, {ID: "a", Slots: 2}, {ID: "c", Slots: 1, Draining: true}}
	p, err := Place(tms, 4)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(p.Slots)
	if want := "[{a 0} {b 0} {a 1} {b 1}]"; got != want {
		t.Fatalf("plan %s, want %s", got, want)
	}
	if _, err := Place(tms, 5); err == nil {
		t.Fatal("placing 5 subtasks on 4 live slots succeeded")
	}
}

// Property: every subtask gets a distinct slot of a live TaskManager and no
// TaskManager gets more subtasks than slots.
func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for n := 0; n < 2000; n++ {
		var tms []TaskManager
		for i := 0; i < rng.IntN(6); i++ {
			tms = append(tms, TaskManager{ID: fmt.Sprintf("tm-%d", i), Slots: rng.IntN(4), Draining: rng.IntN(5) == 0})
		}
		avail := AvailableSlots(tms)
		p := Parallelism(avail, 128, 0)
		if p == 0 {
			continue
		}
		plan, err := Place(tms, p)
		if err != nil {
			t.Fatalf("%v p=%d: %v", tms, p, err)
		}
		used := map[Slot]bool{}
		per := map[string]int{}
		for _, s := range plan.Slots {
			if used[s] {
				t.Fatalf("slot %v used twice", s)
			}
			used[s] = true
			per[s.TM]++
		}
		for _, tm := range tms {
			if tm.Draining && per[tm.ID] > 0 {
				t.Fatalf("draining %s got tasks", tm.ID)
			}
			if per[tm.ID] > tm.Slots {
				t.Fatalf("%s got %d tasks for %d slots", tm.ID, per[tm.ID], tm.Slots)
			}
		}
	}
}

func TestParallelism(t *testing.T) {
	for _, c := range []struct{ slots, maxP, limit, want int }{
		{4, 128, 0, 4}, {200, 128, 0, 128}, {8, 128, 3, 3}, {0, 128, 0, 0},
	} {
		if got := Parallelism(c.slots, c.maxP, c.limit); got != c.want {
			t.Errorf("Parallelism(%d,%d,%d)=%d want %d", c.slots, c.maxP, c.limit, got, c.want)
		}
	}
}
