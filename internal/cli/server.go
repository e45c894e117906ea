package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ebbflow/ebbflow/checkpoint"
	"github.com/ebbflow/ebbflow/jobcluster"
	"github.com/ebbflow/ebbflow/taskmanager"
)

func serverLogger(s *settings, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(s.str("log.level"))
	if err != nil {
		return nil, usageError("config key log.level: %v", err)
	}
	var enc zapcore.Encoder
	switch s.str("log.format") {
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, usageError("config key log.format (EBBFLOW_LOG_FORMAT, --log-format): %q is not json or console", s.str("log.format"))
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// openStorage opens checkpoint.dir (file:// or s3://).
func openStorage(ctx context.Context, s *settings) (checkpoint.Storage, error) {
	dir := s.str("checkpoint.dir")
	if dir == "" {
		return nil, usageError("config key checkpoint.dir (EBBFLOW_CHECKPOINT_DIR, --checkpoint-dir) is required: file:///path or s3://bucket/prefix")
	}
	if strings.HasPrefix(dir, "s3://") {
		return openS3(ctx, s, dir)
	}
	st, err := checkpoint.Open(dir)
	if err != nil {
		return nil, usageError("config key checkpoint.dir: %v", err)
	}
	return st, nil
}

func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// serveHTTP serves h on addr until ctx ends.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log *zap.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on http address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", zap.Error(err))
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}
	log.Info("serving http", zap.String("addr", ln.Addr().String()))
	return ln.Addr().String(), stop, nil
}

// advertiseHost is a bound address as others dial it: an unspecified IP
// (":8081" in a container) becomes this host's name.
func advertiseHost(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return bound
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return bound
	}
	return net.JoinHostPort(h, port)
}

func jobmanagerCommand(jobs Jobs, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobmanager [flags] JOB [job flags]",
		Short: "Run the JobManager of one job (standalone job cluster); a second one is a hot standby",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadSettings(cmd.Flags(), 'j')
			if err != nil {
				return err
			}
			name, jobArgs, err := splitJob(jobs, args)
			if err != nil {
				return err
			}
			g, err := jobs.Build(name, jobArgs)
			if err != nil {
				return usageError("%v%s", err, misplacedFlagHint(err, "jobmanager"))
			}
			log, err := serverLogger(s, stderr)
			if err != nil {
				return err
			}
			defer log.Sync()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			storage, err := openStorage(ctx, s)
			if err != nil {
				return err
			}
			cli, err := connectEtcd(ctx, s, log)
			if err != nil {
				return err
			}
			defer cli.Close()
			id := s.str("jobmanager.id")
			if id == "" {
				id = defaultID()
			}
			jm, err := jobcluster.New(jobcluster.Config{
				Cluster: s.str("cluster.id"), ID: id, Job: name, Args: jobArgs, Graph: g, Etcd: cli, Storage: storage,
				CheckpointInterval: s.dur("checkpoint.interval"), CheckpointTimeout: s.dur("checkpoint.timeout"), Retain: s.num("checkpoint.retained"),
				Parallelism: s.num("jobmanager.parallelism"), MinParallelism: s.num("jobmanager.min-parallelism"),
				SlotsStable: s.dur("jobmanager.stabilization"), Cooldown: s.dur("jobmanager.cooldown"), DrainTimeout: s.dur("jobmanager.drain-timeout"), SessionTTL: s.dur("jobmanager.session-ttl"), MaxRestarts: s.num("jobmanager.max-restarts"),
				TolerableCheckpointFailures: s.num("checkpoint.tolerable-failures"),
				FromSavepoint:               s.str("jobmanager.from-savepoint"), AllowDropState: s.flag("jobmanager.allow-dropped-state"), Logger: log,
			})
			if err != nil {
				return usageError("%v", err)
			}
			addr, stopHTTP, err := serveHTTP(ctx, s.str("jobmanager.http"), jm.Handler(), log)
			if err != nil {
				return err
			}
			defer stopHTTP()
			adv := s.str("jobmanager.http-advertise")
			if adv == "" {
				adv = advertiseHost(addr)
			} else if _, _, err := net.SplitHostPort(adv); err != nil {
				return usageError("config key jobmanager.http-advertise (--http-advertise) must be host:port, got %q", adv)
			}
			jm.SetHTTPAdvertise(adv)
			log.Info("jobmanager starting", zap.String("id", id), zap.String("cluster", s.str("cluster.id")), zap.String("job", name),
				zap.String("checkpoints", storage.URL()), zap.String("http", addr))
			err = jm.Run(ctx)
			switch {
			case err == nil:
				st := jm.Status()
				ran := st.FinishedAt.Sub(st.RunningSince).Seconds()
				fmt.Fprintf(stdout, "%s finished (running %.2fs): %d source records (%.0f/s), %d sink records (%.0f/s), parallelism %d, %d restarts\n",
					name, ran, st.SourceRecords, float64(st.SourceRecords)/ran, st.SinkRecords, float64(st.SinkRecords)/ran, st.Parallelism, st.Restarts)
				return nil
			case errors.Is(err, jobcluster.ErrAlreadyFinished):
				fmt.Fprintf(stdout, "%s already finished in cluster %q\n", name, s.str("cluster.id"))
				return nil
			case ctx.Err() != nil:
				log.Info("jobmanager stopped by signal")
				return nil
			}
			return err
		},
	}
	cmd.Flags().SetInterspersed(false)
	addConfigFlags(cmd.Flags(), 'j')
	return cmd
}

func taskmanagerCommand(jobs Jobs, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "taskmanager [flags]",
		Short: "Run a TaskManager: register in etcd, offer slots, run the tasks the JobManager deploys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd.Flags(), 't')
			if err != nil {
				return err
			}
			if n := s.num("taskmanager.slots"); n < 1 {
				return usageError("config key taskmanager.slots (--slots) must be at least 1, got %d", n)
			}
			if s.dur("taskmanager.lease-ttl") < time.Second {
				return usageError("config key taskmanager.lease-ttl must be at least 1s, got %v", s.dur("taskmanager.lease-ttl"))
			}
			log, err := serverLogger(s, stderr)
			if err != nil {
				return err
			}
			defer log.Sync()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			watcher, early, err := startTerminationWatch(ctx, s, log)
			if err != nil {
				return err
			}
			if early != nil {
				log.Info("termination notice at start: " + early.Reason + "; not registering")
				return nil
			}
			// Check the storage settings at start so a typo fails here, not at
			// the first checkpoint.
			storage, err := openStorage(ctx, s)
			if err != nil {
				return err
			}
			cli, err := connectEtcd(ctx, s, log)
			if err != nil {
				return err
			}
			defer cli.Close()
			id := s.str("taskmanager.id")
			if id == "" {
				id = defaultID()
			}
			tm, err := taskmanager.New(taskmanager.Config{
				ID: id, Cluster: s.str("cluster.id"), Slots: s.num("taskmanager.slots"),
				ControlBind: s.str("taskmanager.bind"), ControlAdvertise: s.str("taskmanager.advertise"),
				DataBind: s.str("taskmanager.data-bind"), DataAdvertise: s.str("taskmanager.data-advertise"),
				LeaseTTL: s.dur("taskmanager.lease-ttl"), Etcd: cli, Jobs: jobs, Logger: log,
				OpenStorage: func(url string) (checkpoint.Storage, error) {
					if url != storage.URL() {
						return nil, fmt.Errorf("the JobManager uses checkpoint storage %s but this TaskManager is configured with %s (checkpoint.dir)", url, storage.URL())
					}
					return storage, nil
				},
			})
			if err != nil {
				return usageError("%v", err)
			}
			_, stopHTTP, err := serveHTTP(ctx, s.str("taskmanager.http"), tm.Handler(), log)
			if err != nil {
				return err
			}
			defer stopHTTP()
			// SIGTERM drains: mark draining in etcd and keep running until the
			// JobManager has moved the work and releases us, or the drain
			// timeout passes. A second signal stops at once. A termination
			// notice from the instance metadata starts the same drain.
			runCtx, cancelRun := context.WithCancel(context.Background())
			defer cancelRun()
			runErr := make(chan error, 1)
			go func() { runErr <- tm.Run(runCtx) }()
			wctx, cancelWatch := context.WithCancel(context.Background())
			defer cancelWatch()
			notices := watchTermination(wctx, watcher)
			drain := s.dur("taskmanager.drain-timeout")
			var stopNow <-chan struct{}
			select {
			case err := <-runErr:
				return err
			case <-ctx.Done():
				again, stopAgain := afterSignals(1, nil) // before stop(): no gap without a handler
				defer stopAgain()
				stop()
				stopNow = again
				log.Info("signal received; draining", zap.Duration("drainTimeout", drain))
			case n := <-notices:
				// The shutdown that follows a notice (GCP's ACPI soft-off,
				// systemd stopping the unit) sends SIGTERM: that one does not
				// cut the drain short; a second signal does.
				again, stopAgain := afterSignals(2, func() {
					log.Info("signal received; already draining on a termination notice (a second signal stops at once)")
				})
				defer stopAgain()
				stop()
				stopNow = again
				log.Info("termination notice: "+n.Reason+"; draining", zap.String("reason", n.Reason), zap.Duration("drainTimeout", drain))
			}
			cancelWatch()
			return drainTaskManager(tm, runErr, cancelRun, drain, stopNow, log)
		},
	}
	addConfigFlags(cmd.Flags(), 't')
	return cmd
}

func savepointCommand(stdout io.Writer) *cobra.Command {
	var addr string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "savepoint --jobmanager URL",
		Short: "Take a savepoint of the running job and print its folder (restore with jobmanager --from-savepoint)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				return usageError("--jobmanager is required (e.g. http://jobmanager:8081)")
			}
			base := jobManagerURL(addr)
			sp, err := postSavepoint(cmd.Context(), base)
			if err != nil {
				return err
			}
			deadline := time.Now().Add(wait)
			for sp.Status == "pending" {
				if time.Now().After(deadline) {
					return fmt.Errorf("savepoint %d not complete after %v", sp.ID, wait)
				}
				time.Sleep(100 * time.Millisecond)
				if sp, err = getSavepoint(cmd.Context(), base, sp.ID); err != nil {
					return err
				}
			}
			if sp.Status != "completed" {
				return fmt.Errorf("savepoint %d %s: %s", sp.ID, sp.Status, sp.Error)
			}
			fmt.Fprintf(stdout, "savepoint %d completed: %s\n", sp.ID, sp.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "jobmanager", "", "JobManager REST address (http://host:port)")
	cmd.Flags().DurationVar(&wait, "timeout", 2*time.Minute, "how long to wait for the savepoint to complete")
	return cmd
}

func rescalesCommand(stdout io.Writer) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "rescales --jobmanager URL",
		Short: "Print the job's rescale history: trigger, old -> new parallelism, snapshot, time per phase",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				return usageError("--jobmanager is required (e.g. http://jobmanager:8081)")
			}
			base := jobManagerURL(addr)
			recs, err := getRescales(cmd.Context(), base)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%-24s %-15s %9s %10s %10s %10s %10s %10s\n", "started", "trigger", "p", "snapshot", "snap ms", "deploy ms", "first ms", "pause ms")
			for _, r := range recs {
				snap := strconv.FormatInt(r.Snapshot, 10)
				if r.Savepoint {
					snap = "sp " + snap
				}
				fmt.Fprintf(stdout, "%-24s %-15s %4d->%-4d %10s %10.0f %10.0f %10.0f %10.0f\n", r.StartedAt.Format(time.RFC3339), r.Trigger, r.From, r.To, snap,
					r.SnapshotMs, r.DeployMs, r.FirstOutMs, r.PauseMs)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "jobmanager", "", "JobManager REST address (http://host:port)")
	return cmd
}

// jobManagerURL turns --jobmanager (host:port or a URL) into a base URL.
func jobManagerURL(addr string) string {
	base := strings.TrimSuffix(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return base
}
