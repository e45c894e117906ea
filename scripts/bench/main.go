// Command bench measures ebbflow's throughput in local mode against a
// hand-written reference loop and prints a Markdown report on stdout.
//
// It generates (once, cached by size) a text corpus with scripts/gentext,
// times the physical reference — the wordcount work done by one goroutine
// with no framework — and then runs `bin/ebbflow local` scenarios
// (wordcount and the stateless passthrough job, with checkpoints every
// second and with checkpoints off), each several times, taking the median of
// the throughput measured over the job's "running" time. A run during which
// other processes took more than -max-others cores is repeated (the machine
// it was written on is shared), and every run's CPU use is in the report.
//
// Run it from the repository root, after `make build`:
//
//	scripts/bench.sh [-runs 3] [-lines 2000000] [-quick] [-out FILE]
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Targets from the performance issue.
const (
	targetPassthrough    = 2_000_000 // records/s, stateless pass-through
	targetWordcount      = 1_000_000 // words/s
	targetCheckpointCost = 0.10      // 1 − with/without
	targetRatio          = 0.5       // long-term aim: wordcount ÷ reference loop
)

type options struct {
	runs           int
	lines          int
	quick          bool
	out            string
	bin            string
	dir            string
	passCount      int64
	rebalanceCount int64
	timeout        time.Duration
	maxOthers      float64
	retries        int
}

// scenario is one `ebbflow local` configuration.
type scenario struct {
	name     string
	job      string // "wordcount" or "passthrough"
	tms      int
	slots    int
	interval string // --checkpoint-interval
	jobArgs  []string
	pair     string // scenarios with the same pair key differ only in checkpointing
	expect   int64  // expected sink records (0 = unknown)
}

// result is the parsed summary line of one run.
type result struct {
	wall, running         float64
	source, sink          int64
	sourceRate, rate      float64 // rate = sink records/s over the running time
	parallelism           int
	checkpoints, restarts int
	cpu                   cpuShare
	disturbed             bool // kept although other processes used more than -max-others
	discarded             bool // repeated because other processes used more than -max-others
	seq                   int  // order of the run in the whole benchmark
}

type outcome struct {
	sc        scenario
	runs      []result // the counted runs
	discarded []result // runs repeated because other processes competed for the CPU
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "runs per scenario (the median is reported)")
	flag.IntVar(&o.lines, "lines", 2_000_000, "lines of the generated corpus")
	flag.BoolVar(&o.quick, "quick", false, "fast smoke run: 1 run, 500k lines, passthrough counts ÷ 4 (explicit flags win)")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.StringVar(&o.bin, "bin", "bin/ebbflow", "the ebbflow binary (make build)")
	flag.StringVar(&o.dir, "dir", "", "bench folder for the corpus and the runs (default $EBBFLOW_BENCH_DIR or $HOME/.cache/ebbflow/bench)")
	flag.Int64Var(&o.passCount, "pass-count", 50_000_000, "--count of the chained passthrough scenarios")
	flag.Int64Var(&o.rebalanceCount, "rebalance-count", 20_000_000, "--count of the rebalanced passthrough scenarios")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "limit for one ebbflow run")
	flag.Float64Var(&o.maxOthers, "max-others", 0.25, "discard and repeat a run during which other processes used more than this many cores (0 = keep every run)")
	flag.IntVar(&o.retries, "retries", 3, "extra attempts per run discarded by -max-others; if none is quiet, the least disturbed is kept (and marked)")
	flag.Parse()
	if flag.NArg() > 0 {
		fatalf("unexpected arguments: %q", flag.Args())
	}
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["runs"] {
			o.runs = 1
		}
		if !set["lines"] {
			o.lines = 500_000
		}
		if !set["pass-count"] {
			o.passCount /= 4
		}
		if !set["rebalance-count"] {
			o.rebalanceCount /= 4
		}
	}
	if o.runs < 1 || o.lines < 1 || o.passCount < 1 || o.rebalanceCount < 1 {
		fatalf("-runs, -lines, -pass-count and -rebalance-count must be positive")
	}
	if o.maxOthers < 0 || o.retries < 0 {
		fatalf("-max-others and -retries must not be negative")
	}
	if o.dir == "" {
		o.dir = os.Getenv("EBBFLOW_BENCH_DIR")
	}
	if o.dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			fatalf("no bench folder: set $EBBFLOW_BENCH_DIR or -dir (%v)", err)
		}
		o.dir = filepath.Join(home, ".cache", "ebbflow", "bench")
	}
	var err error
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		fatalf("bench folder: %v", err)
	}
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		fatalf("binary: %v", err)
	}
	if st, err := os.Stat(o.bin); err != nil || st.IsDir() {
		fatalf("%s not found: run `make build` first (or use make bench)", o.bin)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		fatalf("create bench folder: %v", err)
	}
	// Run a private copy of the binary, so a rebuild of bin/ebbflow while
	// the benchmark runs cannot mix two builds into one report.
	bin, err := snapshotBinary(o.bin, o.dir)
	if err != nil {
		fatalf("copy %s: %v", o.bin, err)
	}
	atExit = append(atExit, func() { os.Remove(bin) })
	defer os.Remove(bin)
	revision := gitRevision()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startedAt := time.Now()
	loadBefore := loadAvg()
	corpus, size := ensureCorpus(ctx, o)

	logf("reference loop: %d runs (and %d of the tuned variant) over %s", o.runs, o.runs, corpus)
	ref := &outcome{sc: scenario{name: "reference loop"}}
	tuned := &outcome{sc: scenario{name: "tuned reference loop"}}
	// One untimed run of each first: it grows the heap, and lets the
	// write-back of the binaries just built and copied settle.
	logf("reference loop: warm-up")
	runReferenceOnce(corpus, false)
	runReferenceOnce(corpus, true)
	for i := 0; i < o.runs; i++ {
		for _, oc := range []*outcome{ref, tuned} {
			if ctx.Err() != nil {
				fatalf("interrupted")
			}
			logf("[round %d/%d] %s", i+1, o.runs, oc.sc.name)
			o.measure(oc, func() result { return runReferenceOnce(corpus, oc == tuned) })
		}
	}
	refWords := ref.runs[0].sink
	for _, oc := range []*outcome{ref, tuned} {
		for _, r := range append(oc.runs, oc.discarded...) {
			if r.sink != refWords {
				fatalf("%s counted %d words in one run, %d in another", oc.sc.name, r.sink, refWords)
			}
		}
	}
	refMedian := median(rates(ref.runs))

	scenarios := []scenario{
		{name: "wordcount, 1 TM × 2 slots, checkpoints 1s", job: "wordcount", tms: 1, slots: 2, interval: "1s", pair: "wc12", expect: refWords},
		{name: "wordcount, 1 TM × 2 slots, checkpoints off", job: "wordcount", tms: 1, slots: 2, interval: "0", pair: "wc12", expect: refWords},
		{name: "wordcount, 2 TMs × 1 slot, checkpoints 1s (TCP shuffle)", job: "wordcount", tms: 2, slots: 1, interval: "1s", expect: refWords},
		{name: fmt.Sprintf("passthrough chained (%s), 1 TM × 2 slots, checkpoints 1s", count(o.passCount)), job: "passthrough", tms: 1, slots: 2, interval: "1s",
			jobArgs: []string{"--count", strconv.FormatInt(o.passCount, 10)}, pair: "pc", expect: o.passCount},
		{name: fmt.Sprintf("passthrough chained (%s), 1 TM × 2 slots, checkpoints off", count(o.passCount)), job: "passthrough", tms: 1, slots: 2, interval: "0",
			jobArgs: []string{"--count", strconv.FormatInt(o.passCount, 10)}, pair: "pc", expect: o.passCount},
		{name: fmt.Sprintf("passthrough --rebalance (%s), 1 TM × 2 slots, checkpoints 1s", count(o.rebalanceCount)), job: "passthrough", tms: 1, slots: 2, interval: "1s",
			jobArgs: []string{"--count", strconv.FormatInt(o.rebalanceCount, 10), "--rebalance"}, pair: "pr", expect: o.rebalanceCount},
		{name: fmt.Sprintf("passthrough --rebalance (%s), 1 TM × 2 slots, checkpoints off", count(o.rebalanceCount)), job: "passthrough", tms: 1, slots: 2, interval: "0",
			jobArgs: []string{"--count", strconv.FormatInt(o.rebalanceCount, 10), "--rebalance"}, pair: "pr", expect: o.rebalanceCount},
	}

	// Runs go round-robin over the scenarios, so slow drifts in the
	// machine's background load hit every scenario alike, and the two
	// halves of each checkpointing pair run back to back.
	outcomes := make([]outcome, len(scenarios))
	for i := range scenarios {
		outcomes[i].sc = scenarios[i]
	}
	runsDir := filepath.Join(o.dir, "runs")
	for r := 0; r < o.runs; r++ {
		for i, sc := range scenarios {
			logf("[round %d/%d] %s", r+1, o.runs, sc.name)
			o.measure(&outcomes[i], func() result {
				return runEbbflow(ctx, o, bin, sc, corpus, filepath.Join(runsDir, fmt.Sprintf("s%d-r%d", i+1, r+1)))
			})
		}
	}
	os.RemoveAll(runsDir)

	report := renderReport(o, reportInput{
		revision: revision, started: startedAt, finished: time.Now(), loadBefore: loadBefore, loadAfter: loadAvg(),
		corpus: corpus, corpusSize: size, refWords: refWords, ref: *ref, tuned: *tuned,
		refMedian: refMedian, outcomes: outcomes,
	})
	os.Stdout.WriteString(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			fatalf("write %s: %v", o.out, err)
		}
		logf("report written to %s", o.out)
	}
}

// runSeq numbers the runs in the order they ran.
var runSeq int

// measure runs one counted run of oc: it repeats a run during which other
// processes used more than -max-others cores, up to -retries times; if no
// attempt was quiet it keeps the least disturbed one, marked.
func (o options) measure(oc *outcome, run func() result) {
	var attempts []result
	for attempt := 0; ; attempt++ {
		res := run()
		runSeq++
		res.seq = runSeq
		logf("  running %.2fs, %d sink records = %s records/s, %d checkpoints, %d restarts (CPU: own %.2f, others %.2f cores)",
			res.running, res.sink, human(res.rate), res.checkpoints, res.restarts, res.cpu.own, res.cpu.others)
		if o.maxOthers <= 0 || res.cpu.others <= o.maxOthers {
			oc.runs = append(oc.runs, res)
			break
		}
		attempts = append(attempts, res)
		if attempt == o.retries {
			best := 0
			for i, a := range attempts {
				if a.cpu.others < attempts[best].cpu.others {
					best = i
				}
			}
			attempts[best].disturbed = true
			oc.runs = append(oc.runs, attempts[best])
			attempts = slices.Delete(attempts, best, best+1)
			logf("  no attempt in %d without other processes above -max-others %.2g cores: keeping the least disturbed (%.2f cores)",
				attempt+1, o.maxOthers, oc.runs[len(oc.runs)-1].cpu.others)
			break
		}
		logf("  other processes used %.2f cores (> -max-others %.2g): again", res.cpu.others, o.maxOthers)
		waitQuiet(o.maxOthers, 2*time.Minute)
	}
	for _, a := range attempts {
		if !a.disturbed {
			a.discarded = true
			oc.discarded = append(oc.discarded, a)
		}
	}
}

// waitQuiet waits until the machine has been quiet for quietSeconds
// seconds in a row — other processes (this one idles meanwhile) used at most
// max cores in each — or until limit has passed.
func waitQuiet(max float64, limit time.Duration) {
	const quietSeconds = 3
	start := time.Now()
	for quiet := 0; quiet < quietSeconds; {
		if time.Since(start) > limit {
			logf("  the machine stayed busy for %v; going on", limit)
			return
		}
		b0, t0 := machineBusy(), time.Now()
		time.Sleep(time.Second)
		if busy := (machineBusy() - b0).Seconds() / time.Since(t0).Seconds(); busy <= max {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// runReferenceOnce times one run of the reference loop as a result: the
// words count as sink records.
func runReferenceOnce(corpus string, tuned bool) result {
	busy0, self0 := machineBusy(), selfCPU()
	words, d, err := runReference(corpus, tuned)
	share := newCPUShare(selfCPU()-self0, machineBusy()-busy0, d)
	if err != nil {
		fatalf("reference loop: %v", err)
	}
	return result{wall: d.Seconds(), running: d.Seconds(), sink: words, rate: float64(words) / d.Seconds(), cpu: share}
}

// ensureCorpus returns the cached corpus of o.lines lines, generating it with
// scripts/gentext when it is missing.
func ensureCorpus(ctx context.Context, o options) (string, int64) {
	path := filepath.Join(o.dir, fmt.Sprintf("corpus-%d.txt", o.lines))
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		logf("corpus: %s (cached, %s)", path, mib(st.Size()))
		return path, st.Size()
	}
	logf("corpus: generating %d lines into %s", o.lines, path)
	tmp := path + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "run", "./scripts/gentext", "-out", tmp, "-lines", strconv.Itoa(o.lines))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		fatalf("go run ./scripts/gentext (run from the repository root): %v", err)
	}
	// Rename only a complete corpus, so an interrupted generation is
	// never mistaken for a cached one.
	if err := os.Rename(tmp, path); err != nil {
		fatalf("corpus: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		fatalf("corpus: %v", err)
	}
	logf("corpus: %s", mib(st.Size()))
	return path, st.Size()
}

// runReference is the physical reference: the wordcount job's work written
// by hand as one goroutine — read, tokenize exactly like
// examples/wordcount.Tokenize, count in a map, write "word\tk" per
// occurrence — into a file in a fresh temporary folder.
//
// With tuned set it counts through an index map (map[string]int32 into a
// []int64) instead: the plain map[string]int64 converts the token to a new
// string on every word (m[string(b)] = v allocates, and replaces the stored
// key), the tuned one only on a word's first occurrence. Its output is the
// same.
func runReference(corpus string, tuned bool) (words int64, d time.Duration, err error) {
	tmp, err := os.MkdirTemp("", "ebbflow-bench-ref-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(tmp)
	runtime.GC()

	start := time.Now()
	in, err := os.Open(corpus)
	if err != nil {
		return 0, 0, err
	}
	defer in.Close()
	outF, err := os.Create(filepath.Join(tmp, "counts.txt"))
	if err != nil {
		return 0, 0, err
	}
	defer outF.Close()
	r := bufio.NewReaderSize(in, 256<<10)
	w := bufio.NewWriterSize(outF, 256<<10)

	counts := make(map[string]int64)
	index := make(map[string]int32)
	var vals []int64
	var tok []byte  // the current token, lowercased
	var long []byte // a line longer than the read buffer, put together
	var num [20]byte
	emit := func() {
		var c int64
		if tuned {
			i, ok := index[string(tok)]
			if !ok {
				i = int32(len(vals))
				index[string(tok)] = i
				vals = append(vals, 0)
			}
			vals[i]++
			c = vals[i]
		} else {
			c = counts[string(tok)] + 1
			counts[string(tok)] = c
		}
		w.Write(tok)
		w.WriteByte('\t')
		w.Write(strconv.AppendInt(num[:0], c, 10))
		w.WriteByte('\n')
		words++
		tok = tok[:0]
	}
	for {
		line, rerr := r.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			long = append(long, line...)
			continue
		}
		if len(long) > 0 {
			long = append(long, line...)
			line = long
		}
		// A token is a maximal run of letters and digits; '\n' and '\r'
		// end tokens like any other separator, so lines need no trimming.
		for i := 0; i < len(line); {
			c := line[i]
			if c < utf8.RuneSelf {
				switch {
				case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
					tok = append(tok, c)
				case c >= 'A' && c <= 'Z':
					tok = append(tok, c+('a'-'A'))
				default:
					if len(tok) > 0 {
						emit()
					}
				}
				i++
				continue
			}
			ru, size := utf8.DecodeRune(line[i:])
			if unicode.IsLetter(ru) || unicode.IsDigit(ru) {
				tok = utf8.AppendRune(tok, unicode.ToLower(ru))
			} else if len(tok) > 0 {
				emit()
			}
			i += size
		}
		// Tokens never span lines (a line ends in '\n' or at the end of
		// the file).
		if len(tok) > 0 {
			emit()
		}
		long = long[:0]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, 0, rerr
		}
	}
	if err := w.Flush(); err != nil {
		return 0, 0, err
	}
	if err := outF.Close(); err != nil {
		return 0, 0, err
	}
	return words, time.Since(start), nil
}

var summaryRE = regexp.MustCompile(`(?m)^(\S+) finished in ([0-9.]+)s \(running ([0-9.]+)s\): (\d+) source records \(([0-9.]+)/s\), (\d+) sink records \(([0-9.]+)/s\), parallelism (\d+), (\d+) checkpoints, (\d+) restarts\s*$`)

// ebbflowArgs are the arguments of one run of sc; data and out are
// substituted for its --data-dir and wordcount's --output.
func ebbflowArgs(sc scenario, corpus, data, out string) []string {
	args := []string{"local", "--taskmanagers", strconv.Itoa(sc.tms), "--slots", strconv.Itoa(sc.slots),
		"--data-dir", data, "--fresh", "--checkpoint-interval", sc.interval, "--quiet", sc.job}
	if sc.job == "wordcount" {
		args = append(args, "--input", corpus, "--output", out)
	}
	return append(args, sc.jobArgs...)
}

// runEbbflow runs sc once in a fresh folder dir and parses its summary; any
// failure ends the benchmark with the process's output.
func runEbbflow(ctx context.Context, o options, bin string, sc scenario, corpus, dir string) result {
	if err := os.RemoveAll(dir); err != nil {
		fatalf("clean %s: %v", dir, err)
	}
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("create %s: %v", dir, err)
	}
	defer os.RemoveAll(dir) // wordcount's output is as large as the corpus

	args := ebbflowArgs(sc, corpus, data, out)
	runCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	busy0, t0 := machineBusy(), time.Now()
	err := cmd.Run()
	var own time.Duration
	if cmd.ProcessState != nil {
		own = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	share := newCPUShare(own, machineBusy()-busy0, time.Since(t0))
	cmdline := bin + " " + strings.Join(args, " ")
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "bench: %s: %s\ncommand: %s\n--- stdout ---\n%s--- stderr ---\n%s", sc.name, fmt.Sprintf(format, a...), cmdline, stdout.String(), stderr.String())
		exit(1)
	}
	switch {
	case runCtx.Err() == context.DeadlineExceeded:
		fail("no result within -timeout %v", o.timeout)
	case ctx.Err() != nil:
		fail("interrupted")
	case err != nil:
		fail("run failed: %v", err)
	}
	m := summaryRE.FindStringSubmatch(stdout.String())
	if m == nil {
		fail("no summary line on stdout")
	}
	if m[1] != sc.job {
		fail("summary is for job %q, want %q", m[1], sc.job)
	}
	res := result{
		wall: atof(m[2]), running: atof(m[3]), source: atoi(m[4]), sourceRate: atof(m[5]),
		sink: atoi(m[6]), rate: atof(m[7]), parallelism: int(atoi(m[8])),
		checkpoints: int(atoi(m[9])), restarts: int(atoi(m[10])), cpu: share,
	}
	if sc.expect > 0 && res.sink != sc.expect {
		fail("%d sink records, want %d (the reference loop's word count or --count)", res.sink, sc.expect)
	}
	return res
}

type reportInput struct {
	revision              string
	started, finished     time.Time
	loadBefore, loadAfter string
	corpus                string
	corpusSize            int64
	refWords              int64
	ref, tuned            outcome
	refMedian             float64
	outcomes              []outcome
}

func renderReport(o options, in reportInput) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	gomaxprocs := strconv.Itoa(runtime.GOMAXPROCS(0))
	if env := os.Getenv("GOMAXPROCS"); env != "" {
		gomaxprocs += " (from $GOMAXPROCS)"
	}

	p("# ebbflow benchmark\n\n")
	p("## Machine\n\n")
	p("- CPU: %s\n", cpuModel())
	p("- nproc: %s\n", nproc())
	p("- GOMAXPROCS: %s\n", gomaxprocs)
	p("- Go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if mem := memTotal(); mem != "" {
		p("- Memory: %s\n", mem)
	}
	p("- Date: %s (took %s)\n", in.started.UTC().Format("2006-01-02 15:04 UTC"), in.finished.Sub(in.started).Round(time.Second))
	p("- Load average (1 min): %s at the start, %s at the end\n\n", in.loadBefore, in.loadAfter)

	p("## Command\n\n")
	cmdline := "scripts/bench.sh"
	if len(os.Args) > 1 {
		cmdline += " " + strings.Join(os.Args[1:], " ")
	}
	p("```\n%s\n```\n\n", cmdline)
	p("Source revision: `%s` (%s, copied before the first run). ", in.revision, o.bin)
	p("%d counted run(s) per scenario, round-robin over the scenarios; the median is reported. ", o.runs)
	if o.maxOthers > 0 {
		p("A run during which other processes used more than %.2g cores was discarded and repeated, up to %d times, each time once the machine had been quiet for 3 seconds in a row (waiting at most 2 minutes). ", o.maxOthers, o.retries)
	}
	p("The reference loops run in the benchmark's own process after one untimed warm-up run each. ")
	p("Corpus: `%s`, %d lines, %s, %d words (scripts/gentext). ", in.corpus, o.lines, mib(in.corpusSize), in.refWords)
	p("Every ebbflow run is `%s local --taskmanagers N --slots S --data-dir <fresh> --fresh --checkpoint-interval 1s|0 --quiet JOB ...` ", filepath.Base(o.bin))
	p("with a fresh data and output folder; throughput is sink records ÷ the \"running\" time of its summary line ")
	p("(all tasks running → output committed). For wordcount sink records are words.\n\n")

	p("## Results\n\n")
	tunedMedian := median(rates(in.tuned.runs))
	p("| Scenario | records/s (median) | runs | ratio to reference | checkpoint cost | ratio to tuned loop |\n")
	p("|---|---:|---|---:|---:|---:|\n")
	p("| reference loop (1 goroutine, no framework, map[string]int64), words/s | %s | %s | 1.00 | — | %.2f |\n",
		thousands(in.refMedian), runList(in.ref.runs), in.refMedian/tunedMedian)
	p("| tuned reference loop (index map, no allocation per word), words/s | %s | %s | %.2f | — | 1.00 |\n",
		thousands(tunedMedian), runList(in.tuned.runs), tunedMedian/in.refMedian)
	byPair := map[string]float64{} // pair → median with checkpoints off
	for _, oc := range in.outcomes {
		if oc.sc.pair != "" && oc.sc.interval == "0" {
			byPair[oc.sc.pair] = median(rates(oc.runs))
		}
	}
	type cost struct {
		name, mark string
		v          float64
	}
	var costs []cost
	short := false // some pair's checkpointed runs were too short to take periodic checkpoints
	disturbed := in.ref.disturbedRuns() + in.tuned.disturbedRuns()
	for _, oc := range in.outcomes {
		disturbed += oc.disturbedRuns()
		med := median(rates(oc.runs))
		ratio, tunedRatio := "—", "—"
		if oc.sc.job == "wordcount" {
			ratio = fmt.Sprintf("%.2f", med/in.refMedian)
			tunedRatio = fmt.Sprintf("%.2f", med/tunedMedian)
		}
		cc := "—"
		if off, ok := byPair[oc.sc.pair]; ok && oc.sc.interval != "0" {
			c := cost{name: oc.sc.name, v: 1 - med/off}
			if iv, err := time.ParseDuration(oc.sc.interval); err == nil && median(runningTimes(oc.runs)) < 3*iv.Seconds() {
				c.mark = " †"
				short = true
			}
			cc = fmt.Sprintf("%.1f%%%s", 100*c.v, c.mark)
			costs = append(costs, c)
		}
		p("| %s | %s | %s | %s | %s | %s |\n", oc.sc.name, thousands(med), runList(oc.runs), ratio, cc, tunedRatio)
	}
	p("\n\"runs\" lists every counted run's records/s")
	if disturbed > 0 {
		p(" (* = kept although other processes used more than %.2g cores in every attempt: %d run(s))", o.maxOthers, disturbed)
	}
	p("; checkpoint cost is 1 − (checkpoints 1s ÷ checkpoints off) of the medians ")
	p("(negative: the runs with checkpoints were faster). ")
	p("The reference loop is the one the targets use; the tuned loop is the same work with a faster counter, ")
	p("for how far from the machine's limit a ratio is.\n\n")
	if short {
		p("† These runs last less than 3 checkpoint intervals, so they take few or no periodic checkpoints besides the final one: ")
		p("their checkpoint cost is mostly noise. Raise -pass-count / -rebalance-count to measure it.\n\n")
	}

	p("## Targets\n\n")
	p("| Target | Measured | Met |\n|---|---|---|\n")
	for _, oc := range in.outcomes {
		if oc.sc.job == "passthrough" {
			med := median(rates(oc.runs))
			p("| stateless pass-through ≥ 2,000,000 records/s | %s: %s | %s |\n", oc.sc.name, thousands(med), yesNo(med >= targetPassthrough))
		}
	}
	for _, oc := range in.outcomes {
		if oc.sc.job == "wordcount" {
			med := median(rates(oc.runs))
			p("| wordcount ≥ 1,000,000 words/s | %s: %s | %s |\n", oc.sc.name, thousands(med), yesNo(med >= targetWordcount))
		}
	}
	for _, c := range costs {
		p("| checkpointing costs ≤ 10%% | %s: %.1f%%%s | %s |\n", c.name, 100*c.v, c.mark, yesNo(c.v <= targetCheckpointCost))
	}
	for _, oc := range in.outcomes {
		if oc.sc.job == "wordcount" {
			r := median(rates(oc.runs)) / in.refMedian
			p("| long-term aim: ratio ≥ 0.5 to the reference loop | %s: %.2f | %s |\n", oc.sc.name, r, yesNo(r >= targetRatio))
		}
	}

	p("\n## Runs\n\n")
	p("CPU columns: cores' worth of CPU time the measured process used over the run's whole duration ")
	p("(for ebbflow including start-up and shutdown), and what everything else on the machine used meanwhile ")
	p("(from /proc/stat, including kernel threads and hypervisor steal) — a run that competed with other work shows it there. ")
	p("Runs are in the order they ran within each scenario; discarded runs are listed but not counted.\n\n")
	p("| Scenario | run | running s | sink records | records/s | checkpoints | restarts | CPU, own | CPU, others | counted |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	all := append([]outcome{in.ref, in.tuned}, in.outcomes...)
	for _, oc := range all {
		n := 0
		for _, r := range oc.ordered() {
			status, ckpt, restarts := "yes", "—", "—"
			switch {
			case r.discarded:
				status = "no (others > max)"
			case r.disturbed:
				status = "yes *"
			}
			if oc.sc.job != "" {
				ckpt, restarts = strconv.Itoa(r.checkpoints), strconv.Itoa(r.restarts)
			}
			n++
			p("| %s | %d | %.2f | %d | %s | %s | %s | %.2f | %.2f | %s |\n", oc.sc.name, n, r.running, r.sink, thousands(r.rate), ckpt, restarts, r.cpu.own, r.cpu.others, status)
		}
	}
	return b.String()
}

func (oc outcome) disturbedRuns() int {
	n := 0
	for _, r := range oc.runs {
		if r.disturbed {
			n++
		}
	}
	return n
}

// ordered returns the counted and the discarded runs in the order they ran.
func (oc outcome) ordered() []result {
	all := append(slices.Clone(oc.runs), oc.discarded...)
	slices.SortStableFunc(all, func(a, b result) int { return a.seq - b.seq })
	return all
}

func rates(rs []result) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.rate
	}
	return out
}

func runningTimes(rs []result) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.running
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func runList(rs []result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = human(r.rate)
		if r.disturbed {
			parts[i] += "*"
		}
	}
	return strings.Join(parts, ", ")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// human renders a rate like "2.51M".
func human(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.0fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// count renders a record count like "50M".
func count(n int64) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return thousands(float64(n))
}

// thousands renders x rounded with thousands separators: "2,510,346".
func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// snapshotBinary copies bin into dir and returns the copy's path.
func snapshotBinary(bin, dir string) (string, error) {
	src, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst, err := os.CreateTemp(dir, "ebbflow-bin-")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		os.Remove(dst.Name())
		return "", err
	}
	if err := dst.Chmod(0o755); err != nil {
		dst.Close()
		os.Remove(dst.Name())
		return "", err
	}
	return dst.Name(), dst.Close()
}

// gitRevision describes the checked-out source: commit, and "-dirty" with
// uncommitted changes.
func gitRevision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown (not a git checkout?)"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func nproc() string {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return fmt.Sprintf("%d (runtime.NumCPU; nproc: %v)", runtime.NumCPU(), err)
	}
	return strings.TrimSpace(string(out))
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					return ""
				}
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return ""
}

// cpuShare is CPU use during one run, in cores (CPU seconds per second).
type cpuShare struct {
	own    float64 // the measured process
	others float64 // everything else on the machine
}

func newCPUShare(own, machine, wall time.Duration) cpuShare {
	if wall <= 0 {
		return cpuShare{}
	}
	others := machine - own
	if others < 0 {
		others = 0 // the two clocks tick differently; clamp the rounding
	}
	return cpuShare{own: own.Seconds() / wall.Seconds(), others: others.Seconds() / wall.Seconds()}
}

// machineBusy is the CPU time the whole machine has spent not idle, from
// the first line of /proc/stat (0 where it cannot be read).
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	// user nice system idle iowait irq softirq [steal ...]: count all but
	// idle and iowait (steal counts: the hypervisor gave the time to
	// someone else); guest time is already part of user.
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	const userHZ = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(ticks) * (time.Second / userHZ)
}

// selfCPU is the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func atof(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		fatalf("parse %q: %v", s, err)
	}
	return f
}

func atoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fatalf("parse %q: %v", s, err)
	}
	return n
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}

// atExit holds cleanups that must run even when the benchmark fails.
var atExit []func()

func exit(code int) {
	for _, f := range atExit {
		f()
	}
	os.Exit(code)
}

func fatalf(format string, a ...any) {
	logf(format, a...)
	exit(1)
}
