package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/allocate"
	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/deploy/slurm"
	"github.com/ccworker/ccworker/metrics"
)

type allocateOptions struct {
	conn      connOptions
	set       allocate.Settings
	dryRun    bool
	loglevel  string
	logFormat string
	metrics   metricsOptions
}

func newAllocateCommand() *cobra.Command {
	o := &allocateOptions{set: allocate.DefaultSettings()}
	cmd := &cobra.Command{
		Use:   "allocate [flags] [-- script options]",
		Short: "Submit Slurm jobs running ccworker while tasks wait in the queues (run on a login node)",
		Long: `allocate watches the queues (-Q; default: the worker's queues of this configuration)
and submits Slurm jobs that run ccworker (deploy/slurm/ccworker-array.sbatch, or
ccworker-nodes.sbatch with --mode nodes; both are built in) when messages wait, within
--max-jobs, --max-workers and --max-pending, at most once per --min-interval. The
workers leave after --worker-max-idle without a task, so the allocations end when the
queues run dry. Its jobs carry the job name --name and a comment of their own: it counts
them with squeue, also after a restart, and never submits more than its limits. After
--fail-limit failed sbatch calls in a row it pauses (one log line) and tries one job
every --probe-interval until sbatch works again (one log line).

Arguments after -- go to the batch script, after the allocator's own --bin, --config,
-Q and --max-idle (e.g. -- -c 16 -- --prefetch-multiplier 1). Settings:
ccworker_allocate_* in celeryconfig.py; flags win.

Exit status: 0 stopped by SIGTERM/SIGINT (or --dry-run done), 1 a failure, 2 bad usage.`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args, false) },
	}
	o.bind(cmd)
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the queues, their backlog, the allocator's jobs by state and what it would decide now",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.run(cmd, nil, true) },
	}
	o.bindShared(status)
	cmd.AddCommand(status)
	return cmd
}

// bindShared binds what status shares with allocate: how to find the queues and jobs.
func (o *allocateOptions) bindShared(cmd *cobra.Command) {
	o.conn.bind(cmd)
	f := cmd.Flags()
	f.StringSliceVarP(&o.conn.wo.queues, "queues", "Q", nil, "queues to watch, comma separated (default: the worker's: task_queues or task_default_queue)")
	f.StringVar(&o.set.Name, "name", "", "job name and tag of the allocator's jobs (default: ccworker-alloc-<queues joined by +>)")
	bindLimits(f, &o.set)
}

func bindLimits(f *pflag.FlagSet, s *allocate.Settings) {
	f.IntVar(&s.Limits.MaxJobs, "max-jobs", s.Limits.MaxJobs, "most jobs (pending + running; array elements count one each) at once")
	f.IntVar(&s.Limits.MaxWorkers, "max-workers", 0, "most workers at once (default: max-jobs x workers-per-job)")
	f.IntVar(&s.Limits.WorkersPerJob, "workers-per-job", s.Limits.WorkersPerJob, "workers (nodes) per job; more than 1 needs --mode nodes")
	f.IntVar(&s.Limits.BacklogPerWorker, "backlog-per-worker", s.Limits.BacklogPerWorker, "ready messages that justify one more worker")
	f.IntVar(&s.Limits.MaxPending, "max-pending", 0, "most jobs waiting in Slurm's queue at once (default: max-jobs)")
	f.IntVar(&s.Limits.PendingReserve, "pending-reserve", 0, "while messages wait, keep at least this many jobs pending, ahead of need (at most max-pending)")
	f.DurationVar(&s.Limits.MinInterval, "min-interval", s.Limits.MinInterval, "least time between two submissions")
	f.IntVar(&s.Limits.FailLimit, "fail-limit", s.Limits.FailLimit, "sbatch failures in a row that pause submissions (0 = never pause)")
	f.DurationVar(&s.Limits.ProbeInterval, "probe-interval", s.Limits.ProbeInterval, "while paused, try one job this often")
}

func (o *allocateOptions) bind(cmd *cobra.Command) {
	o.bindShared(cmd)
	f := cmd.Flags()
	s := &o.set
	f.StringVar(&s.Mode, "mode", s.Mode, "array (one worker per job-array element) or nodes (--workers-per-job nodes per job, srun)")
	f.StringVar(&s.Script, "script", "", "batch script to submit (default: the built-in deploy/slurm script of --mode)")
	f.StringVar(&s.Bin, "bin", "", "ccworker binary the jobs run (default: this executable)")
	f.DurationVar(&s.WorkerMaxIdle, "worker-max-idle", s.WorkerMaxIdle, "the workers' --max-idle: a worker leaves, freeing its node, after this without a task")
	f.StringVar(&s.Partition, "partition", "", "sbatch --partition")
	f.StringVar(&s.Account, "account", "", "sbatch --account")
	f.StringVar(&s.TimeLimit, "time-limit", "", "sbatch --time (default: the script's, 4 hours)")
	f.StringArrayVar(&s.SbatchArgs, "sbatch-arg", nil, "another sbatch option, e.g. --sbatch-arg=--qos=low (repeatable)")
	f.DurationVar(&s.Poll, "poll-interval", s.Poll, "how often the queues and jobs are read")
	f.BoolVar(&o.dryRun, "dry-run", false, "read the queues and jobs once, print what would be submitted and why, submit nothing")
	f.StringVarP(&o.loglevel, "loglevel", "l", "INFO", "DEBUG, INFO, WARNING, ERROR, CRITICAL or FATAL")
	f.StringVar(&o.logFormat, "log-format", "console", "console (Celery-like lines) or json")
	o.metrics.bind(f)
}

// settings resolves the connection, the queues and the allocator's settings: defaults,
// then ccworker_allocate_* from celeryconfig.py, then flags.
func (o *allocateOptions) settings(cmd *cobra.Command, scriptArgs []string) (*settings, error) {
	s, err := o.conn.settings(cmd)
	if err != nil {
		return nil, err
	}
	if s.cfg.File != "" {
		changed := func(key string) bool { return cmd.Flags().Changed(allocate.FlagName(key)) }
		if err := o.set.Apply(s.cfg.Allocate, changed); err != nil {
			return nil, usageError{fmt.Errorf("%s: %w", s.cfg.File, err)}
		}
	}
	if len(scriptArgs) > 0 {
		o.set.ScriptArgs = scriptArgs
	}
	if o.set.Name == "" {
		var names []string
		for _, q := range s.queues {
			names = append(names, q.Name)
		}
		o.set.Name = "ccworker-alloc-" + strings.Join(names, "+")
	}
	if err := o.set.Check(); err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

// scheduler builds the Slurm adapter: the script, and the arguments that make the jobs'
// workers read this configuration and consume these queues.
func (o *allocateOptions) scheduler(cmd *cobra.Command, s *settings) (*allocate.Slurm, error) {
	set := o.set
	sl := &allocate.Slurm{Name: set.Name, Nodes: set.Mode == "nodes", WorkersPerJob: set.Limits.WorkersPerJob,
		Partition: set.Partition, Account: set.Account, TimeLimit: set.TimeLimit, SbatchArgs: set.SbatchArgs}
	if u, err := user.Current(); err == nil {
		sl.User = u.Username
	}
	switch {
	case set.Script != "":
		b, err := os.ReadFile(set.Script)
		if err != nil {
			return nil, usageError{fmt.Errorf("--script: %w", err)}
		}
		sl.Script, sl.ScriptName = b, set.Script
	case sl.Nodes:
		sl.Script, sl.ScriptName = slurm.NodesScript, "(built-in ccworker-nodes.sbatch)"
	default:
		sl.Script, sl.ScriptName = slurm.ArrayScript, "(built-in ccworker-array.sbatch)"
	}
	bin := set.Bin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, runError{fmt.Errorf("this executable's path (set --bin): %w", err)}
		}
		bin = exe
	}
	var queues []string
	for _, q := range s.queues {
		queues = append(queues, q.Name)
	}
	args := []string{"--bin", bin, "-Q", strings.Join(queues, ","), "--max-idle", set.WorkerMaxIdle.String()}
	if s.cfg.File != "" {
		abs, err := filepath.Abs(s.cfg.File)
		if err != nil {
			return nil, usageError{err}
		}
		args = append(args, "--config", abs)
	}
	sl.ScriptArgs = append(args, set.ScriptArgs...)
	// -b and --result-backend reach the jobs through the environment sbatch exports, not
	// the command line (where squeue and ps would show passwords).
	if f := cmd.Flags(); f.Changed("broker") {
		sl.Env = append(sl.Env, config.EnvBrokerURL+"="+o.conn.wo.broker)
	}
	if f := cmd.Flags(); f.Changed("result-backend") {
		sl.Env = append(sl.Env, config.EnvResultBackend+"="+o.conn.wo.resultBackend)
	}
	return sl, nil
}

func (o *allocateOptions) run(cmd *cobra.Command, args []string, statusOnly bool) error {
	level, format := o.loglevel, o.logFormat
	if statusOnly || o.dryRun {
		level = "WARNING" // the printed report is the output
	}
	log, err := newLogger(level, format, cmd.ErrOrStderr())
	if err != nil {
		return usageError{err}
	}
	defer func() { _ = log.Sync() }()
	if dash := cmd.ArgsLenAtDash(); len(args) > 0 && dash != 0 {
		return usageError{fmt.Errorf("unexpected argument %q: script options go after --", args[0])}
	}
	s, err := o.settings(cmd, args)
	if err != nil {
		return err
	}
	sched, err := o.scheduler(cmd, s)
	if err != nil {
		return err
	}
	var names []string
	for _, q := range s.queues {
		names = append(names, q.Name)
	}
	broker := &allocate.AMQPBroker{Names: names, Dial: func() (*amqp.Connection, error) { return dialBroker(s, "ccworker-allocate") }}
	defer func() { _ = broker.Close() }()
	a, err := allocate.New(broker, sched, allocate.Config{Limits: o.set.Limits, Poll: o.set.Poll, Logger: log})
	if err != nil {
		return usageError{err}
	}
	if statusOnly || o.dryRun {
		return o.report(cmd.Context(), cmd.OutOrStdout(), a, sched, o.dryRun)
	}
	return o.loop(a, sched, log)
}

func (o *allocateOptions) loop(a *allocate.Allocator, sched *allocate.Slurm, log *zap.Logger) error {
	warm, _, stopSignals := signalContexts()
	defer stopSignals()
	if o.metrics.addr != "" {
		reg, err := metrics.NewRegistry(allocate.NewCollector(a))
		if err != nil {
			return err
		}
		srv, err := metrics.Start(o.metrics.addr, reg)
		if err != nil {
			return usageError{fmt.Errorf("--metrics-addr %s: %w", o.metrics.addr, err)}
		}
		log.Info("serving metrics", zap.String("url", "http://"+srv.Addr()+"/metrics"))
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Stop(ctx)
		}()
	}
	l := o.set.Limits
	log.Info("allocating", zap.String("name", o.set.Name), zap.String("script", sched.ScriptName),
		zap.Strings("script_args", sched.ScriptArgs), zap.Int("max_jobs", l.MaxJobs), zap.Int("workers_per_job", l.WorkersPerJob),
		zap.Int("backlog_per_worker", l.BacklogPerWorker), zap.Int("max_pending", l.MaxPending),
		zap.Duration("min_interval", l.MinInterval), zap.Duration("poll", o.set.Poll),
		zap.Duration("worker_max_idle", o.set.WorkerMaxIdle))
	err := a.Run(warm)
	st := a.Status()
	log.Info("allocator stopped (its jobs keep running and leave by --max-idle)", zap.Uint64("jobs_submitted", st.Submitted),
		zap.Uint64("sbatch_calls", st.SbatchCalls), zap.Uint64("sbatch_failures", st.SbatchFailures))
	return err
}

// report prints one observation: queues, jobs by state, the decision (and for --dry-run
// the sbatch command it would run).
func (o *allocateOptions) report(ctx context.Context, w io.Writer, a *allocate.Allocator, sched *allocate.Slurm, dry bool) error {
	st, err := a.Observe(ctx)
	if err != nil {
		return runError{err}
	}
	fmt.Fprintf(w, "allocator %s\nqueues:\n", o.set.Name)
	for _, q := range st.Queues {
		if q.Missing {
			fmt.Fprintf(w, "  %-24s missing (nothing waits)\n", q.Name)
			continue
		}
		fmt.Fprintf(w, "  %-24s %d ready, %d consumers\n", q.Name, q.Ready, q.Consumers)
	}
	fmt.Fprintf(w, "backlog: %d ready\njobs: %d pending, %d running", st.Ready, st.Pending, st.Running)
	for _, state := range slices.Sorted(maps.Keys(st.Jobs)) {
		fmt.Fprintf(w, "; %s %d", state, st.Jobs[state])
	}
	if !st.LastAttempt.IsZero() {
		fmt.Fprintf(w, "\nlast submission: %s", st.LastAttempt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\ndecision: %s\n", st.Decision.Reason)
	if dry {
		if n := st.Decision.Submit; n > 0 {
			fmt.Fprintf(w, "would run: %s\n", strings.Join(sched.Command(n), " "))
		} else {
			fmt.Fprintln(w, "would submit nothing")
		}
	}
	return nil
}
