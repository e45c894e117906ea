package reactive

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files of the scenario tests")

// TestScenarios replays testdata/*.txt: each line is a command; the
// transcript of commands and decisions must equal the .golden file.
//
//	config keygroups=128 min=1 max=0 stabilization=2s cooldown=10s drain-timeout=20s
//	at 1.5s join tm-1 2      (also: drain ID, lose ID, running, rescale-failed, attempt-failed, tick, finished)
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			got := runScenario(t, f)
			golden := strings.TrimSuffix(f, ".txt") + ".golden"
			if *rewrite {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -rewrite to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("transcript differs from %s (run with -rewrite and review the diff):\n--- got\n%s", golden, got)
			}
		})
	}
}

func runScenario(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	var m *Machine
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(sc.Text() + "\n")
			continue
		}
		out.WriteString(line + "\n")
		fields := strings.Fields(line)
		if fields[0] == "config" {
			cfg := Config{KeyGroups: 128, MinParallelism: 1}
			for _, kv := range fields[1:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "keygroups":
					cfg.KeyGroups, _ = strconv.Atoi(v)
				case "min":
					cfg.MinParallelism, _ = strconv.Atoi(v)
				case "max":
					cfg.MaxParallelism, _ = strconv.Atoi(v)
				case "stabilization":
					cfg.Stabilization, _ = time.ParseDuration(v)
				case "cooldown":
					cfg.Cooldown, _ = time.ParseDuration(v)
				case "drain-timeout":
					cfg.DrainTimeout, _ = time.ParseDuration(v)
				default:
					t.Fatalf("%s:%d: unknown config %q", path, n, k)
				}
			}
			if m, err = New(cfg); err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
			continue
		}
		if fields[0] != "at" || len(fields) < 3 || m == nil {
			t.Fatalf("%s:%d: want 'at DURATION EVENT ...' after a config line", path, n)
		}
		d, err := time.ParseDuration(fields[1])
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		var ev Event
		switch fields[2] {
		case "join":
			slots, _ := strconv.Atoi(fields[4])
			ev = Event{Kind: Joined, TM: fields[3], Slots: slots}
		case "drain":
			ev = Event{Kind: Draining, TM: fields[3]}
		case "lose":
			ev = Event{Kind: Lost, TM: fields[3]}
		case "running":
			ev = Event{Kind: Running}
		case "rescale-failed":
			ev = Event{Kind: RescaleFailed}
		case "attempt-failed":
			ev = Event{Kind: AttemptFailed}
		case "tick":
			ev = Event{Kind: Tick}
		case "finished":
			ev = Event{Kind: Finished}
		default:
			t.Fatalf("%s:%d: unknown event %q", path, n, fields[2])
		}
		for _, a := range m.Step(base.Add(d), ev) {
			fmt.Fprintf(&out, "  -> %s\n", a)
		}
		fmt.Fprintf(&out, "  target=%d idle=%d\n", m.Target(), m.IdleSlots())
	}
	return out.String()
}

// Property: whatever happens, a deployment never asks for more slots than
// the usable TaskManagers have, never uses a draining one, and respects the
// bounds.
func TestDeployNeverOvercommits(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		m, _ := New(Config{KeyGroups: 16, MinParallelism: 2, MaxParallelism: 12, Stabilization: time.Second, Cooldown: 3 * time.Second, DrainTimeout: 5 * time.Second})
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		x := seed*6364136223846793005 + 1442695040888963407
		for i := 0; i < 200; i++ {
			x = x*6364136223846793005 + 1442695040888963407
			now = now.Add(time.Duration(x%2000) * time.Millisecond)
			id := fmt.Sprintf("tm-%d", (x>>20)%6)
			var ev Event
			switch (x >> 40) % 7 {
			case 0, 1:
				ev = Event{Kind: Joined, TM: id, Slots: 1 + int((x>>50)%4)}
			case 2:
				ev = Event{Kind: Draining, TM: id}
			case 3:
				ev = Event{Kind: Lost, TM: id}
			case 4:
				ev = Event{Kind: Running}
			case 5:
				ev = Event{Kind: AttemptFailed}
			default:
				ev = Event{Kind: Tick}
			}
			for _, a := range m.Step(now, ev) {
				if a.Kind != Deploy {
					continue
				}
				slots := 0
				for _, id := range a.TaskManagers {
					tm, ok := m.tms[id]
					if !ok || tm.draining {
						t.Fatalf("seed %d: deploy on unusable %s", seed, id)
					}
					slots += tm.slots
				}
				if a.Parallelism > slots || a.Parallelism < 2 || a.Parallelism > 12 {
					t.Fatalf("seed %d: deploy p=%d on %d slots (bounds 2..12)", seed, a.Parallelism, slots)
				}
			}
		}
	}
}

func TestPureImports(t *testing.T) {
	b, err := os.ReadFile("reactive.go")
	if err != nil {
		t.Fatal(err)
	}
	imports := string(b[strings.Index(string(b), "import ("):strings.Index(string(b), ")\n")])
	for _, banned := range []string{"etcd", "net", "zap", "os", "minio", "log"} {
		if strings.Contains(imports, "\""+banned) {
			t.Fatalf("reactive.go imports %s: the decision core must stay pure", banned)
		}
	}
}
