package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/internal/etcdlocal"
	"github.com/ebbflow/ebbflow/jobcluster"
	"github.com/ebbflow/ebbflow/taskmanager"
)

type localFlags struct {
	taskManagers int
	slots        int
	dataDir      string
	fresh        bool
	interval     time.Duration
	retain       int
	parallelism  int
	logLevel     string
	quiet        bool
	scenario     string
	stabilize    time.Duration
	cooldown     time.Duration
}

func localCommand(jobs Jobs, stdout, stderr io.Writer) *cobra.Command {
	var f localFlags
	cmd := &cobra.Command{
		Use:   "local [flags] JOB [job flags]",
		Short: "Run a job on a whole cluster in one process: embedded etcd, a JobManager, N TaskManagers, checkpoints in a local folder",
		Long: `Run a job on a whole cluster in one process: an embedded etcd on loopback, one
JobManager and N TaskManagers talking over the same TCP protocols the distributed
cluster uses, and checkpoints in a local folder. etcd data and checkpoints are kept
in --data-dir: running the same command again after a crash resumes the unfinished
job from its latest checkpoint; --fresh starts over.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLocal(cmd.Context(), jobs, f, args, stdout, stderr)
		},
	}
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.IntVar(&f.taskManagers, "taskmanagers", 2, "number of TaskManagers")
	fl.IntVar(&f.slots, "slots", 2, "slots per TaskManager")
	fl.StringVar(&f.dataDir, "data-dir", ".ebbflow-local", "folder for the embedded etcd's data and the checkpoints")
	fl.BoolVar(&f.fresh, "fresh", false, "discard the state of an earlier run in --data-dir and start over")
	fl.DurationVar(&f.interval, "checkpoint-interval", time.Second, "time between checkpoints (0 = only the final one)")
	fl.IntVar(&f.retain, "checkpoints-retained", 3, "completed checkpoints to keep")
	fl.IntVar(&f.parallelism, "parallelism", 0, "cap on the job's parallelism (0 = every slot, up to max parallelism)")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	fl.BoolVar(&f.quiet, "quiet", false, "print only the summary")
	fl.StringVar(&f.scenario, "scenario", "", "membership changes while the job runs, e.g. \"3s:add:2,7s:drain,11s:kill\" (add a TaskManager with N slots; drain = SIGTERM the newest TaskManager; kill = crash the newest, like kill -9)")
	fl.DurationVar(&f.stabilize, "stabilization", time.Second, "the slot count must be stable this long before a rescale")
	fl.DurationVar(&f.cooldown, "cooldown", 2*time.Second, "least time between two planned rescales")
	return cmd
}

func (f *localFlags) validate() error {
	switch {
	case f.taskManagers < 1:
		return usageError("--taskmanagers must be at least 1, got %d", f.taskManagers)
	case f.slots < 1:
		return usageError("--slots must be at least 1, got %d", f.slots)
	case f.interval < 0:
		return usageError("--checkpoint-interval must not be negative, got %v", f.interval)
	case f.retain < 1:
		return usageError("--checkpoints-retained must be at least 1, got %d", f.retain)
	case f.parallelism < 0:
		return usageError("--parallelism must not be negative, got %d", f.parallelism)
	case f.dataDir == "":
		return usageError("--data-dir is empty")
	}
	if _, err := zapcore.ParseLevel(f.logLevel); err != nil {
		return usageError("--log-level: %v", err)
	}
	if _, err := parseScenario(f.scenario); err != nil {
		return err
	}
	if f.stabilize < 0 || f.cooldown < 0 {
		return usageError("--stabilization and --cooldown must not be negative")
	}
	return nil
}

type scenarioStep struct {
	at     time.Duration
	action string // add, drain, kill
	slots  int
}

func parseScenario(s string) ([]scenarioStep, error) {
	var out []scenarioStep
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(strings.TrimSpace(part), ":")
		if len(f) < 2 {
			return nil, usageError("--scenario step %q: want AT:add[:SLOTS], AT:drain or AT:kill", part)
		}
		at, err := time.ParseDuration(f[0])
		if err != nil || at < 0 {
			return nil, usageError("--scenario step %q: bad time %q", part, f[0])
		}
		st := scenarioStep{at: at, action: f[1], slots: 1}
		switch f[1] {
		case "add":
			if len(f) == 3 {
				if st.slots, err = strconv.Atoi(f[2]); err != nil || st.slots < 1 {
					return nil, usageError("--scenario step %q: bad slot count %q", part, f[2])
				}
			}
		case "drain", "kill":
		default:
			return nil, usageError("--scenario step %q: unknown action %q (add, drain, kill)", part, f[1])
		}
		out = append(out, st)
	}
	return out, nil
}

func consoleLogger(level string, w io.Writer) *zap.Logger {
	lvl, _ := zapcore.ParseLevel(level)
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), lvl)
	return zap.New(core)
}

func runLocal(ctx context.Context, jobs Jobs, f localFlags, args []string, stdout, stderr io.Writer) error {
	if err := f.validate(); err != nil {
		return err
	}
	name, jobArgs, err := splitJob(jobs, args)
	if err != nil {
		return err
	}
	g, err := jobs.Build(name, jobArgs)
	if err != nil {
		return usageError("%v%s", err, misplacedFlagHint(err, "local"))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := consoleLogger(f.logLevel, stderr)
	defer log.Sync()

	dataDir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return usageError("--data-dir %q: %v", f.dataDir, err)
	}
	etcdDir := filepath.Join(dataDir, "etcd")
	chkDir := filepath.Join(dataDir, "checkpoints")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return usageError("--data-dir %s cannot be created: %v", dataDir, err)
	}
	release, err := lockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer release()
	if f.fresh {
		for _, d := range []string{etcdDir, chkDir} {
			if err := os.RemoveAll(d); err != nil {
				return fmt.Errorf("--fresh: remove %s: %w", d, err)
			}
		}
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return usageError("--data-dir %s cannot be created: %v", dataDir, err)
	}
	storage, err := checkpoint.NewLocal(chkDir)
	if err != nil {
		return err
	}
	etcd, err := etcdlocal.Start(etcdDir)
	if err != nil {
		return err
	}
	defer etcd.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("connect to embedded etcd at %s: %w", etcd.Endpoint, err)
	}
	defer cli.Close()
	// Nothing but this process uses the embedded etcd: leases left by an
	// earlier run that was killed (its JobManager's election key, its
	// TaskManagers' registrations) are stale, so revoke them instead of
	// waiting for them to expire.
	if err := revokeStaleLeases(ctx, cli); err != nil {
		return err
	}

	const clusterID = "local"
	jm, err := jobcluster.New(jobcluster.Config{
		Cluster: clusterID, ID: "jobmanager", Job: name, Args: jobArgs, Graph: g, Etcd: cli, Storage: storage,
		CheckpointInterval: f.interval, Retain: f.retain, Parallelism: f.parallelism,
		WaitForSlots: f.taskManagers * f.slots, SessionTTL: 5 * time.Second, Logger: log,
		SlotsStable: f.stabilize, Cooldown: f.cooldown, DrainTimeout: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	steps, _ := parseScenario(f.scenario)
	start := time.Now()
	tmCtx, stopTMs := context.WithCancel(context.Background())
	defer stopTMs()
	var tmGroup errgroup.Group
	var tms []*taskmanager.TaskManager
	nextTM := 0
	addTM := func(slots int) (*taskmanager.TaskManager, error) {
		nextTM++
		tm, err := taskmanager.New(taskmanager.Config{
			ID: fmt.Sprintf("tm-%d", nextTM), Cluster: clusterID, Slots: slots,
			ControlBind: "127.0.0.1:0", DataBind: "127.0.0.1:0", LeaseTTL: 3 * time.Second,
			Etcd: cli, Jobs: jobs, Logger: log,
			OpenStorage: func(string) (checkpoint.Storage, error) { return storage, nil },
		})
		if err != nil {
			return nil, err
		}
		tms = append(tms, tm)
		tmGroup.Go(func() error {
			err := tm.Run(tmCtx)
			if err != nil && tmCtx.Err() == nil && !strings.Contains(err.Error(), "crashed on purpose") {
				log.Warn("taskmanager stopped", zap.String("taskmanager", tm.ID()), zap.Error(err))
			}
			return nil
		})
		return tm, nil
	}
	for i := 0; i < f.taskManagers; i++ {
		if _, err := addTM(f.slots); err != nil {
			return err
		}
	}
	scenarioDone := make(chan struct{})
	go func() {
		defer close(scenarioDone)
		runScenario(ctx, steps, start, stdout, f.quiet, addTM, func() []*taskmanager.TaskManager { return tms })
	}()
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go func() {
		defer close(progressStopped)
		progress(jm, f.quiet, stdout, start, progressDone)
	}()
	runErr := jm.Run(ctx)
	close(progressDone)
	<-progressStopped
	<-scenarioDone
	stopTMs()
	tmErr := tmGroup.Wait()

	st := jm.Status()
	switch {
	case errors.Is(runErr, jobcluster.ErrAlreadyFinished):
		fmt.Fprintf(stdout, "%s already finished in %s; nothing to do (run with --fresh to start it over)\n", name, dataDir)
		return nil
	case runErr != nil && ctx.Err() != nil:
		fmt.Fprintf(stdout, "interrupted; the job stays unfinished in %s — run the same command again to resume it from checkpoint %d\n", dataDir, lastCompleted(st))
		return &exitError{code: 130, err: errors.New("interrupted")}
	case runErr != nil:
		return runErr
	}
	if tmErr != nil {
		log.Warn("taskmanager", zap.Error(tmErr))
	}
	elapsed := time.Since(start)
	ran := elapsed
	if !st.RunningSince.IsZero() && st.FinishedAt.After(st.RunningSince) {
		ran = st.FinishedAt.Sub(st.RunningSince)
	}
	fmt.Fprintf(stdout, "%s finished in %.1fs (running %.2fs): %d source records (%.0f/s), %d sink records (%.0f/s), parallelism %d, %d checkpoints, %d restarts\n",
		name, elapsed.Seconds(), ran.Seconds(), st.SourceRecords, float64(st.SourceRecords)/ran.Seconds(),
		st.SinkRecords, float64(st.SinkRecords)/ran.Seconds(), st.Parallelism, completedCount(st), st.Restarts)
	return nil
}

func revokeStaleLeases(ctx context.Context, cli *clientv3.Client) error {
	leases, err := cli.Leases(ctx)
	if err != nil {
		return fmt.Errorf("list leases of the embedded etcd: %w", err)
	}
	for _, l := range leases.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			return fmt.Errorf("revoke stale lease %x: %w", l.ID, err)
		}
	}
	return nil
}

func lastCompleted(st jobcluster.Status) int64 {
	if st.LastCompleted != nil {
		return st.LastCompleted.ID
	}
	return 0
}

func completedCount(st jobcluster.Status) int {
	n := 0
	for _, c := range st.Checkpoints {
		if c.Status == "completed" {
			n++
		}
	}
	return n
}

// progress prints a line per second while the job runs.
func progress(jm *jobcluster.JobManager, quiet bool, w io.Writer, start time.Time, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	lastAt := start
	announced := false
	printed := 0
	began := time.Now() // records before this are an earlier run's (the history outlives the process)
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			st := jm.Status()
			if !announced && st.ResumedFrom > 0 {
				announced = true
				fmt.Fprintf(w, "resuming the unfinished job from checkpoint %d\n", st.ResumedFrom)
			}
			for ; printed < len(st.Rescales); printed++ {
				r := st.Rescales[printed]
				if r.StartedAt.Before(began) {
					continue
				}
				if !r.Complete {
					fmt.Fprintf(w, "rescale %d -> %d (%s) did not complete: %s\n", r.From, r.To, r.Trigger, r.Note)
					continue
				}
				how := fmt.Sprintf("from checkpoint %d", r.Snapshot)
				if r.Savepoint {
					how = fmt.Sprintf("stop-with-savepoint %d (%.0f ms, %s)", r.Snapshot, r.SnapshotMs, humanBytes(r.StateBytes))
				}
				fmt.Fprintf(w, "rescaled %d -> %d (%s) %s: paused %.0f ms (deploy+restore %.0f ms, first record %.0f ms)\n",
					r.From, r.To, r.Trigger, how, r.PauseMs, r.DeployMs, r.FirstOutMs)
			}
			if quiet {
				continue
			}
			rate := float64(st.SourceRecords-last) / now.Sub(lastAt).Seconds()
			if rate < 0 {
				rate = 0
			}
			last, lastAt = st.SourceRecords, now
			chk := "no checkpoint yet"
			if c := st.LastCompleted; c != nil {
				chk = fmt.Sprintf("checkpoint %d (%s, %dms)", c.ID, humanBytes(c.Bytes), c.Duration.Milliseconds())
			}
			var b strings.Builder
			fmt.Fprintf(&b, "[%5.1fs] %-10s p=%d  records %d (%.0f/s)  sink %d  %s", now.Sub(start).Seconds(), st.Phase, st.Parallelism, st.SourceRecords, rate, st.SinkRecords, chk)
			if st.Restarts > 0 {
				fmt.Fprintf(&b, "  restarts %d", st.Restarts)
			}
			fmt.Fprintln(w, b.String())
		}
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// runScenario carries out --scenario steps at their times. drain and kill
// act on the newest TaskManager that is still running.
func runScenario(ctx context.Context, steps []scenarioStep, start time.Time, w io.Writer, quiet bool,
	add func(int) (*taskmanager.TaskManager, error), list func() []*taskmanager.TaskManager) {
	gone := map[*taskmanager.TaskManager]bool{}
	for _, st := range steps {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(st.at))):
		}
		switch st.action {
		case "add":
			tm, err := add(st.slots)
			if err == nil {
				fmt.Fprintf(w, "scenario: added %s with %d slots\n", tm.ID(), st.slots)
			}
		case "drain", "kill":
			tms := list()
			var tm *taskmanager.TaskManager
			for i := len(tms) - 1; i >= 0; i-- {
				if !gone[tms[i]] {
					tm = tms[i]
					break
				}
			}
			if tm == nil {
				continue
			}
			gone[tm] = true
			if st.action == "kill" {
				fmt.Fprintf(w, "scenario: killing %s (like kill -9)\n", tm.ID())
				tm.Crash()
				continue
			}
			fmt.Fprintf(w, "scenario: draining %s (like SIGTERM)\n", tm.ID())
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = tm.SetDraining(dctx)
			cancel()
		}
	}
}
