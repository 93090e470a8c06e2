package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
	pytasks "github.com/ccworker/ccworker/tasks/python"
)

// pythonOptions are the worker's flags for Python tasks (tasks/python): the modules of
// Celery's imports and include are imported by a pool of Python processes, and every
// task they define runs there.
type pythonOptions struct {
	interpreter       string
	processes         int
	maxTasksPerChild  int
	maxMemoryPerChild int64
	include           []string
}

// defaultInterpreter is Debian's Python when it exists (the one with python3-celery),
// else python3 from PATH.
func defaultInterpreter() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

func (o *pythonOptions) bind(f *pflag.FlagSet) {
	f.StringVar(&o.interpreter, "python", defaultInterpreter(),
		"Python interpreter for the tasks of imports/include, and to import a celeryconfig.py that needs more than literal assignments (a venv's bin/python works; it must import celery)")
	f.IntVar(&o.processes, "python-processes", 0,
		"Python processes running Python tasks (default: -c with -P prefork/processes, 1 with -P solo, else the number of CPUs)")
	f.IntVar(&o.maxTasksPerChild, "max-tasks-per-child", 0,
		"replace a Python process after this many tasks; 0 = never (worker_max_tasks_per_child)")
	f.Int64Var(&o.maxMemoryPerChild, "max-memory-per-child", 0,
		"replace a Python process after a task that left its resident memory above this many KiB; 0 = never")
	f.StringSliceVarP(&o.include, "include", "I", nil,
		"more Python task modules to import, comma separated (added to imports and include)")
}

// pythonModules are the modules to import: imports, include and -I, in order, once each.
func pythonModules(cfg *config.Config, o *pythonOptions) []string {
	var mods []string
	for _, list := range [][]string{cfg.Imports, cfg.Include, o.include} {
		for _, m := range list {
			if m = strings.TrimSpace(m); m != "" && !slices.Contains(mods, m) {
				mods = append(mods, m)
			}
		}
	}
	return mods
}

// pythonProcesses is the size of the Python pool.
func pythonProcesses(o *pythonOptions, poolName string, concurrency int) int {
	if o.processes > 0 {
		return o.processes
	}
	switch strings.ToLower(poolName) {
	case "prefork", "processes":
		return concurrency
	case "solo":
		return 1
	}
	return defaultConcurrency(os.Getenv)
}

// startPythonPool starts the Python pool when there are modules to import and registers
// every task the modules define; it returns nil, nil when there are none. The children
// run in the config file's directory (so that `import celeryconfig` finds it, as under
// `celery worker`), with the worker's environment (PYTHONPATH included). Close the pool
// once the worker has stopped.
func startPythonPool(ctx context.Context, cfg *config.Config, o *pythonOptions, poolName string, concurrency int,
	loglevel string, reg *tasks.Registry, log *zap.Logger) (*pytasks.Pool, error) {
	mods := pythonModules(cfg, o)
	if len(mods) == 0 {
		return nil, nil
	}
	if o.maxTasksPerChild < 0 || o.maxMemoryPerChild < 0 {
		return nil, fmt.Errorf("--max-tasks-per-child and --max-memory-per-child cannot be negative")
	}
	dir := ""
	if cfg.File != "" {
		abs, err := filepath.Abs(cfg.File)
		if err != nil {
			return nil, fmt.Errorf("python tasks: %w", err)
		}
		dir = filepath.Dir(abs)
	}
	plog := log.Named("python")
	p, err := pytasks.NewPool(ctx, pytasks.Config{
		Interpreter: o.interpreter, Imports: mods, Dir: dir,
		Processes:        pythonProcesses(o, poolName, concurrency),
		MaxTasksPerChild: o.maxTasksPerChild, MaxMemoryPerChild: o.maxMemoryPerChild,
		HardLimit: func(task string) time.Duration {
			if hard, _ := cfg.TaskTimeLimits(task); hard > 0 {
				return hard
			}
			return cfg.TaskTimeLimit
		},
		Env:      brokerEnv(cfg),
		LogLevel: strings.ToUpper(loglevel), Logger: plog,
	})
	if err != nil {
		return nil, fmt.Errorf("python tasks (%s): %w", strings.Join(mods, ", "), err)
	}
	var names []string
	for _, t := range p.Tasks() {
		opts, err := pythonTaskOptions(t)
		if err == nil {
			err = reg.RegisterWith(t.Name, p.Handler(t.Name), opts)
		}
		if err != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = p.Close(closeCtx)
			return nil, fmt.Errorf("python task %s: %w", t.Name, err)
		}
		names = append(names, t.Name)
	}
	plog.Info("python tasks registered", zap.Strings("modules", mods), zap.Strings("tasks", names),
		zap.String("python", o.interpreter))
	return p, nil
}

// brokerEnv tells the children the worker's broker, so that what a task publishes
// (Task.replace, apply_async) goes where the worker consumes, whatever file or flag
// named it: CELERY_BROKER_URL (the failover list joined with ';', as kombu reads it),
// which Celery prefers to any broker_url, and broker_use_ssl and
// broker_failover_strategy, which the bridge sets on every app.
func brokerEnv(cfg *config.Config) []string {
	var env []string
	if len(cfg.BrokerURLs) > 0 {
		env = append(env, config.EnvBrokerURL+"="+strings.Join(cfg.BrokerURLs, ";"))
	}
	if cfg.BrokerUseSSL != nil {
		if b, err := json.Marshal(cfg.BrokerUseSSL); err == nil {
			env = append(env, pytasks.EnvBrokerUseSSL+"="+string(b))
		}
	}
	if cfg.BrokerFailoverStrategy != "" {
		env = append(env, pytasks.EnvBrokerFailoverStrategy+"="+cfg.BrokerFailoverStrategy)
	}
	return env
}

// pythonTaskOptions are a Python task's own options, as Celery's pool applies them.
func pythonTaskOptions(t pytasks.TaskInfo) (tasks.Options, error) {
	o := tasks.Options{Doc: t.Doc, IgnoreResult: t.IgnoreResult,
		AcksLate: t.AcksLate, TrackStarted: t.TrackStarted, RejectOnWorkerLost: t.RejectOnWorkerLost, Attrs: t.Attrs}
	if o.Attrs == nil {
		o.Attrs = map[string]string{} // a Python task reports its own: no Go defaults
	}
	if t.TimeLimit != nil && *t.TimeLimit > 0 {
		o.TimeLimit = time.Duration(*t.TimeLimit * float64(time.Second))
	}
	if t.SoftTimeLimit != nil && *t.SoftTimeLimit > 0 {
		o.SoftTimeLimit = time.Duration(*t.SoftTimeLimit * float64(time.Second))
	}
	r, err := config.ParseRate(t.RateLimit)
	if err != nil {
		return o, fmt.Errorf("rate_limit: %w", err)
	}
	o.RateLimit = r
	return o, nil
}

// annotateAcks applies task_annotations' acks_late, track_started and
// reject_on_worker_lost to task name: as in Celery, an annotation overrides the task's
// own attribute.
func annotateAcks(reg *tasks.Registry, cfg *config.Config, name string) {
	acks, track, lost := cfg.TaskAnnotationBool(name, "acks_late"), cfg.TaskAnnotationBool(name, "track_started"),
		cfg.TaskAnnotationBool(name, "reject_on_worker_lost")
	if acks == nil && track == nil && lost == nil {
		return
	}
	reg.Annotate(name, func(o *tasks.Options) {
		o.AcksLate, o.TrackStarted, o.RejectOnWorkerLost = cmp.Or(acks, o.AcksLate), cmp.Or(track, o.TrackStarted),
			cmp.Or(lost, o.RejectOnWorkerLost)
	})
}
