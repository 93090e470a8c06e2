package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/node"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
	pytasks "github.com/ccworker/ccworker/tasks/python"
	"github.com/ccworker/ccworker/worker"
)

// workerOptions are the flags of the worker command; they mirror `celery worker`.
type workerOptions struct {
	register            Register
	configPath          string
	broker              string
	resultBackend       string
	queues              []string
	excludeQueues       []string
	concurrency         int
	hostname            string
	loglevel            string
	logFormat           string
	logTasks            bool
	pool                string
	prefetchMultiplier  int
	timeLimit           float64
	softTimeLimit       float64
	events              bool
	withoutGossip       bool
	withoutMingle       bool
	withoutHeartbeat    bool
	purge               bool
	earlyAck            bool
	etaHold             time.Duration
	maxIdle             time.Duration
	ackGuard            time.Duration
	maxMessageSize      int
	maxTasks            uint64
	drainTimeout        time.Duration
	resultBatchSize     int
	resultFlushInterval time.Duration
	metrics             metricsOptions // --metrics-addr (cli/metrics.go)
	python              pythonOptions  // --python, -I, --max-tasks-per-child, ... (cli/python_tasks.go)
	builtinTasks        bool           // --builtin-tasks (cli/builtin_tasks.go)
}

func (o *workerOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.configPath, "config", "", "celeryconfig.py to read (default: ./celeryconfig.py when it exists)")
	f.StringVarP(&o.broker, "broker", "b", "", "broker URL (overrides broker_url and CELERY_BROKER_URL)")
	f.StringVar(&o.resultBackend, "result-backend", "", "result backend URL (overrides result_backend and CELERY_RESULT_BACKEND)")
	f.StringSliceVarP(&o.queues, "queues", "Q", nil, "queues to consume, comma separated (default: task_default_queue)")
	f.StringSliceVarP(&o.excludeQueues, "exclude-queues", "X", nil, "queues not to consume, comma separated")
	f.IntVarP(&o.concurrency, "concurrency", "c", 0, "tasks run at once (default: worker_concurrency, else the number of CPUs)")
	f.StringVarP(&o.hostname, "hostname", "n", "", "node name; %h, %n, %d expand; celery@ is added when no @ (default celery@%h)")
	f.StringVarP(&o.loglevel, "loglevel", "l", "WARNING", "DEBUG, INFO, WARNING, ERROR, CRITICAL or FATAL")
	f.StringVar(&o.logFormat, "log-format", "console", "console (Celery-like lines) or json")
	f.BoolVar(&o.logTasks, "log-tasks", true, "log Celery's received/succeeded line per task at INFO (--log-tasks=false for throughput)")
	f.StringVarP(&o.pool, "pool", "P", "goroutine", "goroutine; prefork, gevent, eventlet, threads, processes and solo are accepted")
	f.IntVar(&o.prefetchMultiplier, "prefetch-multiplier", 0, "prefetch per consumer = concurrency x this (default: worker_prefetch_multiplier, 4)")
	f.Float64Var(&o.timeLimit, "time-limit", 0, "hard time limit in seconds (default: task_time_limit)")
	f.Float64Var(&o.softTimeLimit, "soft-time-limit", 0, "soft time limit in seconds (default: task_soft_time_limit)")
	f.BoolVarP(&o.events, "task-events", "E", false, "send task events (task-received, -started, -succeeded, ...) for Flower and celery events")
	f.BoolVar(&o.withoutGossip, "without-gossip", false, "accepted for compatibility: ccworker never subscribes to other workers' events")
	f.BoolVar(&o.withoutMingle, "without-mingle", false, "accepted for compatibility: ccworker does not synchronize at start-up (it answers others' hello)")
	f.BoolVar(&o.withoutHeartbeat, "without-heartbeat", false, "send no worker-online/heartbeat/offline events")
	f.BoolVar(&o.purge, "purge", false, "delete all waiting messages of the consumed queues before starting")
	f.BoolVar(&o.earlyAck, "early-ack", false, "ack when a task starts, as Celery does by default (task_acks_late = False): for tasks that must never run twice; default: ack once the result is durable")
	f.DurationVar(&o.maxIdle, "max-idle", 0, "exit 0 once no task has arrived for this long, none runs and none waits in the queues (batch jobs give their allocation back when the queue runs dry); 0 = never")
	f.DurationVar(&o.ackGuard, "ack-guard", 25*time.Minute, "ack a message unacked this long (a long task), before RabbitMQ's consumer_timeout (30 min by default) closes the channel; keep it below the broker's; 0 = never")
	f.IntVar(&o.maxMessageSize, "max-message-size", 64<<20, "reject (without requeue, with a log line) a message whose body is larger than this many bytes")
	f.Uint64Var(&o.maxTasks, "max-tasks", 0, "exit 0 after taking this many tasks; 0 = no limit")
	f.DurationVar(&o.etaHold, "eta-hold", 10*time.Second, "tasks due within this are held in memory; later ones wait in broker-side delay queues")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long a warm shutdown waits for running tasks")
	f.IntVar(&o.resultBatchSize, "result-batch-size", 0, "results written per batch (default: ccworker_result_batch_size, 256)")
	f.DurationVar(&o.resultFlushInterval, "result-flush-interval", 0, "longest wait before a partial batch is written (default: ccworker_result_flush_interval, 5ms)")
	// Celery spells these with one dash and aliases; accept the common ones.
	f.BoolVar(&o.events, "events", false, "alias of -E")
	f.BoolVar(&o.purge, "discard", false, "alias of --purge")
	o.metrics.bind(f) // --metrics-addr (cli/metrics.go)
	o.python.bind(f)  // Python task libraries (cli/python_tasks.go)
	bindBuiltinFlag(f, &o.builtinTasks)
}

// settings is everything the worker needs, resolved from flags, env and the config file.
type settings struct {
	cfg         *config.Config
	nodeName    string
	brokerURLs  []config.BrokerURL
	queues      []prefetch.Queue
	concurrency int
	prefetch    int
	poolNote    string
	mongo       *config.MongoBackend
}

func runWorker(cmd *cobra.Command, o *workerOptions) error {
	tuneGC(os.Getenv)
	log, err := newLogger(o.loglevel, o.logFormat, cmd.ErrOrStderr())
	if err != nil {
		return usageError{err}
	}
	defer func() { _ = log.Sync() }()

	s, err := resolve(cmd, o)
	if err != nil {
		return usageError{err}
	}
	reg := tasks.NewRegistry()
	if err := registerTasks(reg, o.register, s.cfg, cmd.Flags(), o.builtinTasks,
		len(pythonModules(s.cfg, &o.python)) > 0, log); err != nil {
		return err
	}
	pyPool, err := startPythonPool(cmd.Context(), s.cfg, &o.python, o.pool, s.concurrency, o.loglevel, reg, log)
	if err != nil {
		return usageError{err}
	}
	warm, cold, stopSignals := signalContexts()
	defer stopSignals()
	n, err := newNode(warm, s, o, reg, pyPool, log)
	if err != nil {
		if pyPool != nil {
			ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
			defer cancel()
			_ = pyPool.Close(ctx)
		}
		return err
	}
	printBanner(cmd.ErrOrStderr(), s, reg)
	logIgnored(log, s, o)
	warnKeyPermissions(log, keyFiles(s.cfg, s.mongo))
	if err := n.Run(warm, cold); err != nil {
		if errors.Is(err, prefetch.ErrPermanent) || errors.Is(err, node.ErrConfig) {
			return usageError{err}
		}
		return err
	}
	st := n.Worker().Counters()
	log.Info("worker stopped", zap.Uint64("received", st.Received.Load()), zap.Uint64("succeeded", st.Succeeded.Load()),
		zap.Uint64("failed", st.Failed.Load()), zap.Uint64("rejected", st.Rejected.Load()), zap.Uint64("revoked", st.Revoked.Load()))
	return nil
}

// newNode translates the settings into a node.Config, purges the queues when asked (ctx
// ends the purge's wait for the broker), and builds the node.
func newNode(ctx context.Context, s *settings, o *workerOptions, reg *tasks.Registry, pyPool *pytasks.Pool,
	log *zap.Logger) (*node.Node, error) {
	pcfg, err := brokerConfig(s, log)
	if err != nil {
		return nil, usageError{err}
	}
	wcfg, err := workerConfig(s, o, reg, pyPool)
	if err != nil {
		return nil, usageError{err}
	}
	ncfg := node.Config{NodeName: s.nodeName, Version: version, Logger: log, Broker: pcfg, Worker: wcfg,
		RemoteControl: s.cfg.WorkerEnableRemoteControl, MetricsAddr: o.metrics.addr}
	if s.mongo != nil {
		ncfg.Results = &node.Results{Mongo: *s.mongo, Writer: results.Config{
			BatchSize: s.cfg.ResultBatchSize, FlushInterval: s.cfg.ResultFlushInterval}}
	}
	if !(o.withoutHeartbeat && !s.cfg.WorkerSendTaskEvents) {
		ncfg.Events = &control.EventsConfig{TaskEvents: s.cfg.WorkerSendTaskEvents, WithoutHeartbeat: o.withoutHeartbeat}
	}
	if pyPool != nil {
		ncfg.Python = pyPool
	}
	if o.purge {
		n, err := prefetch.Purge(ctx, pcfg)
		if err != nil {
			return nil, fmt.Errorf("purge: %w", err)
		}
		log.Warn(fmt.Sprintf("discarded %d messages from %d queue(s)", n, len(s.queues)))
	}
	n, err := node.New(ncfg, reg)
	if err != nil {
		return nil, usageError{err}
	}
	return n, nil
}

// brokerConfig is the consumer's configuration: URLs, TLS (broker_use_ssl), queues.
func brokerConfig(s *settings, log *zap.Logger) (prefetch.Config, error) {
	tlsCfg, err := s.cfg.BrokerTLS(s.brokerURLs[0])
	if err != nil {
		return prefetch.Config{}, fmt.Errorf("broker_use_ssl: %w", err)
	}
	pcfg := prefetch.Config{
		TLS: tlsCfg, Heartbeat: s.cfg.BrokerHeartbeat, ConnectTimeout: s.cfg.BrokerConnectionTimeout,
		Queues: s.queues, Prefetch: s.prefetch, ConnectionName: "ccworker " + s.nodeName, Logger: log.Named("broker"),
		NativeDelay:          s.cfg.UsesQuorumQueues(queueNames(s.queues)),
		NativeDelayQueueType: s.cfg.QueueTypes.NativeDelayedDeliveryQueueType,
		FailoverStrategy:     s.cfg.BrokerFailoverStrategy,
	}
	for _, u := range s.brokerURLs {
		pcfg.URLs = append(pcfg.URLs, u.AMQPURI())
	}
	return pcfg, nil
}

// workerConfig is the worker's configuration: Celery's task settings and the flags.
func workerConfig(s *settings, o *workerOptions, reg *tasks.Registry, pyPool *pytasks.Pool) (worker.Config, error) {
	accept, err := protocol.NewAccept(s.cfg.AcceptContent)
	if err != nil {
		return worker.Config{}, fmt.Errorf("accept_content: %w", err)
	}
	router, err := canvas.NewRouter(s.cfg, s.cfg.TaskRoutes)
	if err != nil {
		return worker.Config{}, fmt.Errorf("task_routes: %w", err)
	}
	// Per-task annotations (task_annotations) for every name this worker runs.
	limits, rates := map[string]worker.Limits{}, map[string]float64{}
	for _, name := range reg.Names() {
		annotateAcks(reg, s.cfg, name)
		hard, soft := s.cfg.TaskTimeLimits(name)
		// A task's own options (a Python task's decorator) come first, as in Celery.
		own := reg.Options(name)
		hard, soft = cmp.Or(own.TimeLimit, hard), cmp.Or(own.SoftTimeLimit, soft)
		if hard > 0 || soft > 0 {
			limits[name] = worker.Limits{Hard: hard, Soft: soft}
		}
		rates[name] = s.cfg.TaskRateLimit(name)
		if own.RateLimit > 0 && !s.cfg.WorkerDisableRateLimits {
			rates[name] = own.RateLimit
		}
	}
	concurrency := s.concurrency
	if pyPool != nil {
		// Python tasks wait for a child while holding a goroutine slot: with as many
		// spare slots as children, the next task is already waiting when a child frees
		// up, so the children never idle on the Go side. The children bound Python work.
		concurrency += pyPool.Processes()
	}
	return worker.Config{
		NodeName: s.nodeName, Concurrency: concurrency, Accept: accept,
		TimeLimit: s.cfg.TaskTimeLimit, SoftTimeLimit: s.cfg.TaskSoftTimeLimit,
		IgnoreResult: s.cfg.TaskIgnoreResult, StoreErrorsEvenIfIgnored: s.cfg.TaskStoreErrorsEvenIfIgnored,
		LogTasks: o.logTasks, DrainTimeout: o.drainTimeout,
		// ccworker acks late by default; Celery's early ack only when asked for explicitly.
		EarlyAck:           o.earlyAck || (s.cfg.TaskAcksLate != nil && !*s.cfg.TaskAcksLate),
		RejectOnFailure:    !s.cfg.TaskAcksOnFailureOrTimeout,
		TrackStarted:       s.cfg.TaskTrackStarted,
		RejectOnWorkerLost: s.cfg.TaskRejectOnWorkerLost != nil && *s.cfg.TaskRejectOnWorkerLost,
		ETAHold:            o.etaHold,
		MaxIdle:            o.maxIdle,
		AckGuard:           o.ackGuard,
		MaxMessageSize:     o.maxMessageSize,
		MaxTasks:           o.maxTasks,
		TaskLimits:         limits,
		RateLimits:         rates,
		Canvas:             &canvas.Sender{Router: router, Origin: s.nodeName},
		QueueFor:           func(name string) prefetch.Queue { return queueFor(s.cfg, name) },
		BrokerStats:        brokerStats(s),
		PrefetchCount:      s.prefetch,
		Conf:               confReport(s),
	}, nil
}

// brokerStats is stats()["broker"], without the password.
func brokerStats(s *settings) control.BrokerStats {
	u := s.brokerURLs[0]
	b := control.BrokerStats{Hostname: u.Host, UserID: u.User, VirtualHost: u.VHost, Port: u.Port, SSL: u.TLS,
		ConnectTimeout: s.cfg.BrokerConnectionTimeout.Seconds(), Heartbeat: s.cfg.BrokerHeartbeat.Seconds(),
		LoginMethod: "PLAIN", URIPrefix: "", FailoverStrategy: s.cfg.BrokerFailoverStrategy, TransportOptions: map[string]any{}}
	for _, alt := range s.brokerURLs[1:] {
		b.Alternates = append(b.Alternates, alt.Redacted())
	}
	return b
}

// confReport is what `celery inspect conf` shows: the settings in force, secrets masked.
func confReport(s *settings) map[string]any {
	var brokers []any
	for _, u := range s.brokerURLs {
		brokers = append(brokers, u.Redacted())
	}
	backend := any(nil)
	if s.mongo != nil {
		backend = s.mongo.Redacted()
	}
	var queues []any
	for _, q := range s.queues {
		queues = append(queues, q.Name)
	}
	// As Celery: every setting of the file (the changes from the defaults), then what
	// the worker resolved from env and flags.
	out := maps.Clone(s.cfg.Settings)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, map[string]any{
		"broker_url": brokers, "result_backend": backend, "accept_content": toAny(s.cfg.AcceptContent),
		"worker_concurrency": s.concurrency, "worker_prefetch_multiplier": s.cfg.WorkerPrefetchMultiplier,
		"task_time_limit": nullSeconds(s.cfg.TaskTimeLimit), "task_soft_time_limit": nullSeconds(s.cfg.TaskSoftTimeLimit),
		"task_acks_late": s.cfg.TaskAcksLate == nil || *s.cfg.TaskAcksLate, "task_track_started": s.cfg.TaskTrackStarted,
		"task_ignore_result": s.cfg.TaskIgnoreResult, "worker_send_task_events": s.cfg.WorkerSendTaskEvents,
		"task_default_queue": s.cfg.TaskDefaultQueue, "ccworker_queues": queues,
	})
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func nullSeconds(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return d.Seconds()
}

// resolve merges defaults, the config file, env and flags (flags win) and checks them.
func resolve(cmd *cobra.Command, o *workerOptions) (*settings, error) {
	cfg, err := readConfig(cmd, o)
	if err != nil {
		return nil, err
	}
	s := &settings{cfg: cfg}
	for _, raw := range cfg.BrokerURLs {
		u, err := config.ParseBrokerURL(raw)
		if err != nil {
			return nil, fmt.Errorf("broker URL %s: %w", config.Redact(raw), err)
		}
		s.brokerURLs = append(s.brokerURLs, u)
	}
	if len(s.brokerURLs) == 0 {
		return nil, errors.New("no broker URL")
	}
	host, _ := os.Hostname()
	s.nodeName = config.NodeName(o.hostname, host)
	if err := s.resolvePool(o.pool); err != nil {
		return nil, err
	}
	s.queues, err = queues(cfg, o.queues, o.excludeQueues)
	if err != nil {
		return nil, err
	}
	if cfg.ResultBackend != "" {
		m, err := cfg.Mongo()
		if err != nil {
			return nil, fmt.Errorf("result_backend %s: %w", config.Redact(cfg.ResultBackend), err)
		}
		s.mongo = &m
	}
	return s, nil
}

// readConfig reads the config file and env, then applies the flags that override
// settings.
func readConfig(cmd *cobra.Command, o *workerOptions) (*config.Config, error) {
	cfg, err := readConfigFile(cmd.Context(), o)
	if err != nil {
		return nil, err
	}
	flags := cmd.Flags()
	if flags.Changed("broker") {
		cfg.BrokerURLs = config.SplitBrokerURLs(o.broker)
	}
	if flags.Changed("result-backend") {
		cfg.ResultBackend = o.resultBackend
	}
	if flags.Changed("time-limit") {
		cfg.TaskTimeLimit = seconds(o.timeLimit)
	}
	if flags.Changed("soft-time-limit") {
		cfg.TaskSoftTimeLimit = seconds(o.softTimeLimit)
	}
	if flags.Changed("prefetch-multiplier") && o.prefetchMultiplier > 0 {
		cfg.WorkerPrefetchMultiplier = o.prefetchMultiplier // Celery: `value or config`, so 0 keeps the config
	}
	if flags.Changed("concurrency") {
		cfg.WorkerConcurrency = o.concurrency
	}
	if o.events || flags.Changed("task-events") {
		cfg.WorkerSendTaskEvents = true
	}
	if flags.Changed("result-batch-size") {
		cfg.ResultBatchSize = o.resultBatchSize
	}
	if flags.Changed("result-flush-interval") {
		cfg.ResultFlushInterval = o.resultFlushInterval
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// resolvePool sets the concurrency, the pool's description and the prefetch count.
func (s *settings) resolvePool(pool string) error {
	cfg := s.cfg
	s.concurrency = cfg.WorkerConcurrency
	if s.concurrency <= 0 {
		s.concurrency = defaultConcurrency(os.Getenv)
	}
	switch p := strings.ToLower(pool); p {
	case "goroutine", "":
		s.poolNote = "goroutines"
	case "prefork", "processes", "gevent", "eventlet", "threads":
		s.poolNote = fmt.Sprintf("goroutines (-P %s: Go tasks run on a bounded goroutine pool; -c bounds it)", p)
	case "solo":
		s.concurrency = 1
		s.poolNote = "goroutines (-P solo: one task at a time)"
	default:
		return fmt.Errorf("-P %q: not a pool (goroutine, prefork, processes, gevent, eventlet, threads, solo)", pool)
	}
	if s.concurrency > 100000 {
		return fmt.Errorf("-c %d: too large", s.concurrency)
	}
	s.prefetch = s.concurrency * cfg.WorkerPrefetchMultiplier
	if s.prefetch > 65535 {
		s.prefetch = 65535 // AMQP's prefetch_count is 16 bits; Celery would silently send 0 (unlimited)
	}
	return nil
}

// readConfigFile reads --config, else ./celeryconfig.py when it exists (Celery's default loader
// reads it from the working directory); a file the literal reader cannot read is imported
// by --python, as Celery would.
func readConfigFile(ctx context.Context, o *workerOptions) (*config.Config, error) {
	path := o.configPath
	if path == "" {
		if _, err := os.Stat("celeryconfig.py"); err == nil {
			path = "celeryconfig.py"
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	return config.LoadFile(ctx, path, config.LoadOptions{Env: os.LookupEnv, Python: o.python.interpreter})
}

// defaultConcurrency is what -c defaults to: the CPUs Slurm gave the job when run under
// Slurm (SLURM_CPUS_PER_TASK, else SLURM_CPUS_ON_NODE), else the machine's CPUs, as
// Celery does.
func defaultConcurrency(getenv func(string) string) int {
	for _, v := range []string{"SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"} {
		if n, err := strconv.Atoi(strings.TrimSpace(getenv(v))); err == nil && n > 0 {
			return n
		}
	}
	return runtime.NumCPU()
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// queues builds the queue list as `celery worker -Q/-X` does: named queues come from
// task_queues when listed there, else are created as Celery's missing queues.
func queues(cfg *config.Config, include, exclude []string) ([]prefetch.Queue, error) {
	known := map[string]config.Queue{}
	var order []string
	for _, q := range cfg.TaskQueues {
		known[q.Name] = q
		order = append(order, q.Name)
	}
	if _, ok := known[cfg.TaskDefaultQueue]; !ok && len(cfg.TaskQueues) == 0 {
		known[cfg.TaskDefaultQueue] = config.Queue{
			Name: cfg.TaskDefaultQueue, Exchange: cfg.TaskDefaultExchange,
			ExchangeType: cfg.TaskDefaultExchangeType, RoutingKey: cfg.TaskDefaultRoutingKey, Durable: true,
		}
		order = append(order, cfg.TaskDefaultQueue)
	}
	names := include
	if len(names) == 0 {
		names = order
	}
	var out []prefetch.Queue
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" || seen[n] || slices.Contains(exclude, n) {
			continue
		}
		seen[n] = true
		q, ok := known[n]
		if !ok {
			if !cfg.TaskCreateMissingQueues {
				return nil, fmt.Errorf("queue %q is not in task_queues and task_create_missing_queues is False", n)
			}
			out = append(out, missingQueue(cfg, n))
			continue
		}
		out = append(out, listedQueue(cfg, q))
	}
	if len(out) == 0 {
		return nil, errors.New("no queue left to consume (check -Q and -X)")
	}
	return out, nil
}

func maxPriority(cfg *config.Config) int {
	if cfg.TaskQueueMaxPriority != nil {
		return *cfg.TaskQueueMaxPriority
	}
	return 0
}

// missingQueue is the queue Celery 5.6 creates for a name task_queues does not list:
// task_create_missing_queue_type and _exchange_type, task_queue_max_priority. Its type
// is a default: an existing queue of another type is used as it is.
func missingQueue(cfg *config.Config, name string) prefetch.Queue {
	q := prefetch.CeleryQueue(name, maxPriority(cfg))
	if t := cfg.QueueTypes.CreateMissingQueueExchangeType; t != "" {
		q.ExchangeType = t
	}
	if cfg.QueueTypes.CreateMissingQueueType == prefetch.QueueQuorum {
		if q.Args == nil {
			q.Args = amqp.Table{}
		}
		q.Args["x-queue-type"] = prefetch.QueueQuorum
	}
	return q
}

// listedQueue is a task_queues entry (or the default queue when task_queues is empty,
// whose type is task_default_queue_type: a default, like a missing queue's).
func listedQueue(cfg *config.Config, q config.Queue) prefetch.Queue {
	pq := prefetch.Queue{Name: q.Name, Exchange: q.Exchange, ExchangeType: q.ExchangeType,
		RoutingKey: q.RoutingKey, Durable: q.Durable}
	if pq.Exchange == "" && q.Exchange == "" {
		pq.Exchange, pq.RoutingKey = q.Name, q.Name
	}
	mp := maxPriority(cfg)
	if len(q.QueueArguments) > 0 || mp > 0 {
		pq.Args = amqp.Table{}
		for k, v := range q.QueueArguments {
			pq.Args[k] = amqpValue(v)
		}
		pq.ArgsSetting = "task_queues"
		if _, set := pq.Args["x-max-priority"]; !set && mp > 0 {
			pq.Args["x-max-priority"] = int32(mp)
			if len(q.QueueArguments) == 0 {
				pq.ArgsSetting = "task_queue_max_priority"
			}
		}
	}
	if len(cfg.TaskQueues) == 0 && cfg.QueueTypes.DefaultQueueType == prefetch.QueueQuorum {
		if pq.Args == nil {
			pq.Args = amqp.Table{}
		}
		pq.Args["x-queue-type"] = prefetch.QueueQuorum
	}
	return pq
}

func queueNames(qs []prefetch.Queue) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = q.Name
	}
	return out
}

// queueFor describes a queue the worker publishes to (a callback's, a chain step's),
// declared as Celery would: its task_queues entry, else Celery's missing queue, with
// task_queue_max_priority.
func queueFor(cfg *config.Config, name string) prefetch.Queue {
	qs, err := queues(cfg, []string{name}, nil)
	if err != nil || len(qs) == 0 {
		return missingQueue(cfg, name)
	}
	return qs[0]
}

// amqpValue converts a config value to what py-amqp would put on the wire, so queue
// arguments compare equal on the broker: small ints as signed 32-bit.
func amqpValue(v any) any {
	switch x := v.(type) {
	case int64:
		if x >= -1<<31 && x < 1<<31 {
			return int32(x)
		}
		return x
	case map[string]any:
		t := amqp.Table{}
		for k, e := range x {
			t[k] = amqpValue(e)
		}
		return t
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = amqpValue(e)
		}
		return out
	}
	return v
}

func printBanner(w io.Writer, s *settings, reg *tasks.Registry) {
	var qs []string
	for _, q := range s.queues {
		desc := q.Name
		if q.Exchange != "" {
			desc += fmt.Sprintf(" (exchange %s type %s key %s)", q.Exchange, orDefault(q.ExchangeType, "direct"), q.RoutingKey)
		}
		qs = append(qs, desc)
	}
	results := "disabled (no result_backend)"
	if s.mongo != nil {
		results = fmt.Sprintf("%s database %s collection %s", s.mongo.Redacted(), s.mongo.Database, s.mongo.Collection)
	}
	var brokers []string
	for _, u := range s.brokerURLs {
		brokers = append(brokers, u.Redacted())
	}
	fmt.Fprintf(w, `
 ccworker %s  [%s]
 - config:      %s
 - broker:      %s
 - results:     %s
 - queues:      %s
 - concurrency: %d on %s
 - prefetch:    %d per consumer (%d x %d)
 - tasks:       %s

`, version, s.nodeName, orDefault(s.cfg.File, "(none: defaults and environment)"), strings.Join(brokers, " ; "), results,
		strings.Join(qs, ", "), s.concurrency, s.poolNote, s.prefetch, s.concurrency, s.cfg.WorkerPrefetchMultiplier,
		strings.Join(reg.Names(), ", "))
}

// logIgnored says once, at start-up, what was asked for that ccworker does not do.
func logIgnored(log *zap.Logger, s *settings, o *workerOptions) {
	log.Info("pool: " + s.poolNote)
	if len(s.cfg.Ignored) > 0 {
		log.Info("settings ccworker does not use", zap.Strings("keys", s.cfg.Ignored))
	}
	if s.mongo != nil && len(s.mongo.Dropped) > 0 {
		log.Warn("result backend options not passed to the MongoDB driver", zap.Strings("options", s.mongo.Dropped))
	}
	if o.withoutGossip || o.withoutMingle {
		log.Debug("--without-gossip and --without-mingle accepted: ccworker never gossips, and only answers other workers' hello")
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// workerGCPercent is the worker's GOGC unless the environment sets one: at 200 the noop
// loads cost 15-18 % less worker CPU per task than at Go's 100, for 5-12 MiB more peak RSS
// at -c 512 (bench/README.md, "GC").
const workerGCPercent = 200

// tuneGC sets the worker's GC target, leaving an explicit GOGC alone.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(workerGCPercent)
	}
}
