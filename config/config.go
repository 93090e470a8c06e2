package config

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ccworker/ccworker/config/pyliteral"
)

// Config holds the Celery settings ccworker reads, with Celery's defaults
// (celery/app/defaults.py). Fields are plain so that command-line flags,
// which override everything, can be applied by the caller; call Validate
// afterwards.
type Config struct {
	// File is the path the settings were read from ("" for defaults only).
	File string
	// Allocate holds the file's ccworker_allocate_* names as read: the worker
	// ignores them, `ccworker allocate` (package allocate) applies them.
	Allocate map[string]any
	// Settings are the file's settings as read, by their Celery (lowercase) names,
	// secrets included: what Celery's `inspect conf` reports (redact before showing).
	Settings map[string]any

	BrokerURLs                 []string // failover alternatives, in order
	BrokerUseSSL               any      // nil/false, true or map[string]any; see BrokerTLSConfig
	BrokerHeartbeat            time.Duration
	BrokerConnectionTimeout    time.Duration
	BrokerConnectionRetry      bool
	BrokerConnectionMaxRetries int // 0 = retry forever, as Celery treats None/0
	// BrokerFailoverStrategy is how the BrokerURLs are cycled: "round-robin" (kombu's
	// default, also for None) or "shuffle"; anything else is an error.
	BrokerFailoverStrategy string

	ResultBackend          string         // "" = results are not stored
	MongoDBBackendSettings map[string]any // nil when unset
	ResultExtended         bool
	ResultSerializer       string        // always "json" after validation
	ResultExpires          time.Duration // 0 = never
	ResultAcceptContent    []string      // nil = AcceptContent
	AcceptContent          []string

	TaskSerializer               string
	TaskAcksLate                 *bool // nil = not set (False)
	TaskAcksOnFailureOrTimeout   bool
	TaskRejectOnWorkerLost       *bool // nil = not set (None)
	TaskIgnoreResult             bool
	TaskStoreErrorsEvenIfIgnored bool
	TaskTrackStarted             bool
	TaskTimeLimit                time.Duration // 0 = none
	TaskSoftTimeLimit            time.Duration // 0 = none
	TaskQueueMaxPriority         *int
	TaskDefaultQueue             string
	TaskDefaultExchange          string // defaults to TaskDefaultQueue
	TaskDefaultExchangeType      string
	TaskDefaultRoutingKey        string // defaults to TaskDefaultQueue
	TaskCreateMissingQueues      bool
	TaskQueues                   []Queue
	QueueTypes                   QueueTypes // Celery 5.5+: quorum queues, native delayed delivery

	WorkerConcurrency         int // 0 = unset (CPU count)
	WorkerPrefetchMultiplier  int
	WorkerSendTaskEvents      bool
	WorkerEnableRemoteControl bool

	EnableUTC bool
	Timezone  string
	Imports   []string
	Include   []string

	// TaskRoutes is task_routes as written (a dict or a list of dicts of glob
	// pattern -> route); the canvas router interprets it.
	TaskRoutes any
	// TaskAnnotations is task_annotations: task name (or "*") -> attributes such as
	// time_limit, soft_time_limit, rate_limit.
	TaskAnnotations map[string]map[string]any
	// TaskDefaultRateLimit is task_default_rate_limit in tasks per second (0 = none).
	TaskDefaultRateLimit float64
	// WorkerDisableRateLimits turns every rate limit off.
	WorkerDisableRateLimits bool

	// Commands are the command tasks of ccworker_commands, by task name.
	Commands map[string]CommandSpec

	// TaskAliases maps Celery task names to ccworker handler names
	// (ccworker_task_aliases).
	TaskAliases map[string]string
	// BuiltinTasks is ccworker_builtin_tasks: whether the built-in ccworker.* tasks are
	// registered; nil = not set (only when the worker has no tasks of its own).
	BuiltinTasks *bool
	// ResultBatchSize and ResultFlushInterval bound result batching
	// (ccworker_result_batch_size, ccworker_result_flush_interval).
	ResultBatchSize     int
	ResultFlushInterval time.Duration

	// Ignored lists the settings in the file that ccworker does not use,
	// sorted, so the worker can log them once.
	Ignored []string
}

// Queue is one entry of task_queues.
type Queue struct {
	Name, Exchange, ExchangeType, RoutingKey string
	QueueArguments                           map[string]any
	Durable                                  bool
}

// Default returns Celery's defaults plus ccworker's own.
func Default() *Config {
	return &Config{
		BrokerURLs:                 []string{DefaultBrokerURL},
		BrokerHeartbeat:            120 * time.Second,
		BrokerConnectionTimeout:    4 * time.Second,
		BrokerConnectionRetry:      true,
		BrokerConnectionMaxRetries: 100,
		BrokerFailoverStrategy:     "round-robin",
		ResultSerializer:           "json",
		ResultExpires:              24 * time.Hour,
		AcceptContent:              []string{"json"},
		TaskSerializer:             "json",
		TaskAcksOnFailureOrTimeout: true,
		TaskDefaultQueue:           "celery",
		TaskDefaultExchange:        "celery",
		TaskDefaultExchangeType:    "direct",
		TaskDefaultRoutingKey:      "celery",
		TaskCreateMissingQueues:    true,
		QueueTypes:                 DefaultQueueTypes(),
		WorkerPrefetchMultiplier:   4,
		WorkerEnableRemoteControl:  true,
		EnableUTC:                  true,
		ResultBatchSize:            256,
		ResultFlushInterval:        5 * time.Millisecond,
	}
}

// Environment variables that override the file, as in Celery.
const (
	EnvBrokerURL     = "CELERY_BROKER_URL"
	EnvResultBackend = "CELERY_RESULT_BACKEND"
)

// Load reads a celeryconfig.py (path "" means defaults only) with the
// literal reader alone; see LoadFile.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	return LoadFile(context.Background(), path, LoadOptions{Env: env})
}

// LoadOptions say how LoadFile reads a file.
type LoadOptions struct {
	// Env is what os.environ lookups in the file see and where the
	// CELERY_BROKER_URL / CELERY_RESULT_BACKEND overrides come from; nil
	// means an empty environment (pass os.LookupEnv for the real one).
	Env func(string) (string, bool)
	// Python is the interpreter (a path, or a name looked up in PATH) that
	// imports a file the literal reader cannot read, as Celery would; ""
	// or an interpreter that cannot be found means none. It runs with this
	// process's environment.
	Python string
}

// LoadFile reads a celeryconfig.py (path "" means defaults only), applies
// the environment overrides CELERY_BROKER_URL and CELERY_RESULT_BACKEND,
// and validates the result.
//
// The file is read without Python when it holds only what config/pyliteral
// evaluates. When it uses more (functions, f-strings, other modules...),
// o.Python imports it instead and its module-level settings are read back;
// the same mapping, validation and redaction apply. Without an
// interpreter, the error (matching ErrUnsupported) names the construct's
// file:line:col and says what to install.
func LoadFile(ctx context.Context, path string, o LoadOptions) (*Config, error) {
	env := o.Env
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	if path == "" {
		return build("", nil, nil, env)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	m, err := pyliteral.Parse(path, src, env)
	if errors.Is(err, pyliteral.ErrUnsupported) {
		python := findPython(o.Python)
		if python == "" {
			return nil, fmt.Errorf("%w\n(%s)", err, needPython(o.Python))
		}
		m, err = importPython(ctx, python, path)
	}
	if err != nil {
		return nil, err
	}
	return build(path, m.Values, m.Lines, env)
}

// needPython says what to install when a file needs Python and there is none.
func needPython(python string) string {
	if python == "" {
		python = "python3"
	}
	return fmt.Sprintf("without Python, ccworker reads only literal assignments; no interpreter %q was found: "+
		"install python3 (Debian: apt-get install python3) or pass --python /path/to/python, and ccworker imports the file as Celery does", python)
}

// FromValues builds a Config from already-parsed settings (as
// pyliteral.Parse returns them), applying the same mapping, defaults, environment overrides
// and validation as Load. Errors carry no file position.
func FromValues(values map[string]any, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	return build("", values, nil, env)
}

// oldToNew maps Celery's pre-4.0 upper-case setting names to the new ones
// (celery/app/defaults.py "old" names).
var oldToNew = map[string]string{
	"BROKER_URL":                          "broker_url",
	"BROKER_USE_SSL":                      "broker_use_ssl",
	"BROKER_HEARTBEAT":                    "broker_heartbeat",
	"BROKER_HEARTBEAT_CHECKRATE":          "broker_heartbeat_checkrate",
	"BROKER_CONNECTION_TIMEOUT":           "broker_connection_timeout",
	"BROKER_CONNECTION_RETRY":             "broker_connection_retry",
	"BROKER_CONNECTION_MAX_RETRIES":       "broker_connection_max_retries",
	"BROKER_POOL_LIMIT":                   "broker_pool_limit",
	"BROKER_TRANSPORT_OPTIONS":            "broker_transport_options",
	"BROKER_FAILOVER_STRATEGY":            "broker_failover_strategy",
	"BROKER_LOGIN_METHOD":                 "broker_login_method",
	"CELERY_RESULT_BACKEND":               "result_backend",
	"CELERY_MONGODB_BACKEND_SETTINGS":     "mongodb_backend_settings",
	"CELERY_RESULT_SERIALIZER":            "result_serializer",
	"CELERY_RESULT_EXTENDED":              "result_extended",
	"CELERY_TASK_RESULT_EXPIRES":          "result_expires",
	"CELERY_RESULT_PERSISTENT":            "result_persistent",
	"CELERY_RESULT_EXCHANGE":              "result_exchange",
	"CELERY_RESULT_EXCHANGE_TYPE":         "result_exchange_type",
	"CELERY_RESULT_COMPRESSION":           "result_compression",
	"CELERY_MAX_CACHED_RESULTS":           "result_cache_max",
	"CELERY_ACCEPT_CONTENT":               "accept_content",
	"CELERY_ENABLE_UTC":                   "enable_utc",
	"CELERY_TIMEZONE":                     "timezone",
	"CELERY_IMPORTS":                      "imports",
	"CELERY_INCLUDE":                      "include",
	"CELERY_TASK_SERIALIZER":              "task_serializer",
	"CELERY_ACKS_LATE":                    "task_acks_late",
	"CELERY_ACKS_ON_FAILURE_OR_TIMEOUT":   "task_acks_on_failure_or_timeout",
	"CELERY_REJECT_ON_WORKER_LOST":        "task_reject_on_worker_lost",
	"CELERY_IGNORE_RESULT":                "task_ignore_result",
	"CELERY_STORE_ERRORS_EVEN_IF_IGNORED": "task_store_errors_even_if_ignored",
	"CELERY_TRACK_STARTED":                "task_track_started",
	"CELERYD_TASK_TIME_LIMIT":             "task_time_limit",
	"CELERYD_TASK_SOFT_TIME_LIMIT":        "task_soft_time_limit",
	"CELERY_QUEUE_MAX_PRIORITY":           "task_queue_max_priority",
	"CELERY_DEFAULT_QUEUE":                "task_default_queue",
	"CELERY_DEFAULT_EXCHANGE":             "task_default_exchange",
	"CELERY_DEFAULT_EXCHANGE_TYPE":        "task_default_exchange_type",
	"CELERY_DEFAULT_ROUTING_KEY":          "task_default_routing_key",
	"CELERY_DEFAULT_DELIVERY_MODE":        "task_default_delivery_mode",
	"CELERY_DEFAULT_RATE_LIMIT":           "task_default_rate_limit",
	"CELERY_CREATE_MISSING_QUEUES":        "task_create_missing_queues",
	"CELERY_QUEUES":                       "task_queues",
	"CELERY_ROUTES":                       "task_routes",
	"CELERY_ALWAYS_EAGER":                 "task_always_eager",
	"CELERY_ANNOTATIONS":                  "task_annotations",
	"CELERY_MESSAGE_COMPRESSION":          "task_compression",
	"CELERY_TASK_PROTOCOL":                "task_protocol",
	"CELERY_SEND_TASK_SENT_EVENT":         "task_send_sent_event",
	"CELERYD_CONCURRENCY":                 "worker_concurrency",
	"CELERYD_PREFETCH_MULTIPLIER":         "worker_prefetch_multiplier",
	"CELERY_SEND_EVENTS":                  "worker_send_task_events",
	"CELERY_ENABLE_REMOTE_CONTROL":        "worker_enable_remote_control",
	"CELERYD_POOL":                        "worker_pool",
	"CELERYD_MAX_TASKS_PER_CHILD":         "worker_max_tasks_per_child",
	"CELERYD_MAX_MEMORY_PER_CHILD":        "worker_max_memory_per_child",
	"CELERYD_HIJACK_ROOT_LOGGER":          "worker_hijack_root_logger",
	"CELERYD_LOG_FORMAT":                  "worker_log_format",
	"CELERYD_TASK_LOG_FORMAT":             "worker_task_log_format",
	"CELERY_REDIRECT_STDOUTS":             "worker_redirect_stdouts",
	"CELERY_REDIRECT_STDOUTS_LEVEL":       "worker_redirect_stdouts_level",
	"CELERY_DISABLE_RATE_LIMITS":          "worker_disable_rate_limits",
	"CELERY_WORKER_DIRECT":                "worker_direct",
	"CELERYD_STATE_DB":                    "worker_state_db",
	"CELERYD_TIMER_PRECISION":             "worker_timer_precision",
	"CELERYD_WORKER_LOST_WAIT":            "worker_lost_wait",
	"CELERY_EVENT_QUEUE_TTL":              "event_queue_ttl",
	"CELERY_EVENT_QUEUE_EXPIRES":          "event_queue_expires",
	"CELERY_EVENT_SERIALIZER":             "event_serializer",
	"CELERYBEAT_SCHEDULE":                 "beat_schedule",
}

// newNames is the set of new-style names that have an old spelling; a
// file using them counts as new-style for the mixing check.
var newNames = func() map[string]string {
	m := make(map[string]string, len(oldToNew))
	for o, n := range oldToNew {
		m[n] = o
	}
	return m
}()

// normalize renames old settings to new ones, refusing files that mix both
// the way Celery's detect_settings does: the majority style wins, and every
// minority key must have its counterpart set as well.
func normalize(file string, vals map[string]any, posm map[string]int) (map[string]any, map[string]int, error) {
	var olds, news []string
	for k := range vals {
		if _, ok := oldToNew[k]; ok {
			olds = append(olds, k)
		} else if _, ok := newNames[k]; ok {
			news = append(news, k)
		}
	}
	if len(olds) > 0 && len(news) > 0 {
		oldMajority := len(olds) > len(news)
		var bad []string
		if oldMajority {
			for _, k := range news {
				if _, ok := vals[newNames[k]]; !ok {
					bad = append(bad, fmt.Sprintf("%s -> %s", k, newNames[k]))
				}
			}
		} else {
			for _, k := range olds {
				if _, ok := vals[oldToNew[k]]; !ok {
					bad = append(bad, fmt.Sprintf("%s -> %s", k, oldToNew[k]))
				}
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			style := "new lower-case"
			if oldMajority {
				style = "old upper-case"
			}
			msg := fmt.Errorf("%w: the file mostly uses %s names; rename: %s", ErrMixedSettings, style, strings.Join(bad, ", "))
			if file != "" {
				return nil, nil, fmt.Errorf("%s: %w", file, msg)
			}
			return nil, nil, msg
		}
		// Both spellings of the same setting: the majority style's wins.
		out, outPos := map[string]any{}, map[string]int{}
		for k, v := range vals {
			n, isOld := oldToNew[k]
			switch {
			case isOld && oldMajority, !isOld:
				if !isOld {
					n = k
				}
				if _, isNew := newNames[k]; isNew && oldMajority {
					if _, both := vals[newNames[k]]; both {
						continue
					}
				}
				out[n], outPos[n] = v, posm[k]
			default: // old key, new majority: dropped if the new one is set
				if _, both := vals[n]; !both {
					out[n], outPos[n] = v, posm[k]
				}
			}
		}
		return out, outPos, nil
	}
	out, outPos := make(map[string]any, len(vals)), make(map[string]int, len(vals))
	for k, v := range vals {
		n := k
		if nn, ok := oldToNew[k]; ok {
			n = nn
		}
		out[n], outPos[n] = v, posm[k]
	}
	return out, outPos, nil
}

// reader converts one setting at a time, remembering where it came from.
type reader struct {
	file string
	vals map[string]any
	line map[string]int
	used map[string]bool
	err  error
}

func (r *reader) fail(key string, err error) {
	if r.err == nil {
		r.err = &KeyError{File: r.file, Line: r.line[key], Key: key, Err: err}
	}
}

func (r *reader) get(key string) (any, bool) {
	r.used[key] = true
	v, ok := r.vals[key]
	return v, ok
}

func wrongType(want string, v any) error {
	return fmt.Errorf("%w: want %s, got %s", ErrWrongType, want, typeName(v))
}

func (r *reader) boolean(key string, dst *bool) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	switch v := v.(type) {
	case bool:
		*dst = v
	case nil:
		*dst = false // None is falsy, as in Python
	default:
		r.fail(key, wrongType("True or False", v))
	}
}

func (r *reader) optBool(key string, dst **bool) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	switch v := v.(type) {
	case bool:
		*dst = &v
	case nil:
		*dst = nil
	default:
		r.fail(key, wrongType("True, False or None", v))
	}
}

func (r *reader) str(key string, dst *string) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	switch v := v.(type) {
	case string:
		*dst = v
	case nil:
		*dst = ""
	default:
		r.fail(key, wrongType("a string", v))
	}
}

// integer reads a non-negative int; None gives noneVal.
func (r *reader) integer(key string, dst *int, noneVal int) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	switch v := v.(type) {
	case int64:
		if v < 0 || v > math.MaxInt32 {
			r.fail(key, fmt.Errorf("%w: %d is out of range", ErrInvalidValue, v))
			return
		}
		*dst = int(v)
	case nil:
		*dst = noneVal
	default:
		r.fail(key, wrongType("an int", v))
	}
}

// seconds reads a non-negative number of seconds; None gives 0.
func (r *reader) seconds(key string, dst *time.Duration) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	var f float64
	switch v := v.(type) {
	case int64:
		f = float64(v)
	case float64:
		f = v
	case nil:
		*dst = 0
		return
	default:
		r.fail(key, wrongType("a number of seconds", v))
		return
	}
	if f < 0 || math.IsNaN(f) || f > float64(math.MaxInt64)/float64(time.Second) {
		r.fail(key, fmt.Errorf("%w: %v seconds is out of range", ErrInvalidValue, f))
		return
	}
	*dst = time.Duration(f * float64(time.Second))
}

// strings reads a list/tuple of strings; a single string counts as a
// one-element list (a common slip for imports = 'tasks').
func (r *reader) strList(key string, dst *[]string) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	switch v := v.(type) {
	case nil:
		*dst = nil
	case string:
		*dst = []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				r.fail(key, wrongType("a list of strings", e))
				return
			}
			out = append(out, s)
		}
		*dst = out
	default:
		r.fail(key, wrongType("a list of strings", v))
	}
}

// build turns the settings of a file (or FromValues) into a Config: rename
// old names, read each group of settings, note the unused ones, apply the
// environment, validate.
func build(file string, raw map[string]any, rawLines map[string]int, env func(string) (string, bool)) (*Config, error) {
	vals, lines, err := normalize(file, raw, rawLines)
	if err != nil {
		return nil, err
	}
	c := Default()
	c.File = file
	c.Settings = reportable(vals)
	r := &reader{file: file, vals: vals, line: lines, used: map[string]bool{}}
	// The order is the order of the first error reported.
	r.broker(c)
	r.results(c)
	r.tasks(c)
	r.worker(c)
	r.routing(c)
	r.queueTypes(c)
	r.ccworker(c)
	if r.err != nil {
		return nil, r.err
	}
	c.Ignored = r.unused()
	for k, v := range vals {
		if strings.HasPrefix(k, "ccworker_allocate_") {
			if c.Allocate == nil {
				c.Allocate = map[string]any{}
			}
			c.Allocate[k] = v
		}
	}
	applyEnv(c, lines, env)
	if err := c.validate(lines); err != nil {
		return nil, err
	}
	return c, nil
}

// unused lists, sorted, the settings nothing read. Names starting with '_'
// are private helpers, never settings; so are the modules, classes and
// functions of a file imported by Python. ccworker_allocate_* are read by
// `ccworker allocate` (package allocate), not by the worker.
func (r *reader) unused() []string {
	var out []string
	for k, v := range r.vals {
		if o, ok := v.(pyObject); (ok && o.Helper) || r.used[k] || strings.HasPrefix(k, "_") || strings.HasPrefix(k, "ccworker_allocate_") {
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// applyEnv applies CELERY_BROKER_URL and CELERY_RESULT_BACKEND: as in
// Celery, a non-empty environment variable wins over the file (and errors
// then no longer point at the file's line).
func applyEnv(c *Config, lines map[string]int, env func(string) (string, bool)) {
	if v, ok := env(EnvBrokerURL); ok && v != "" {
		c.BrokerURLs = SplitBrokerURLs(v)
		delete(lines, "broker_url")
	}
	if v, ok := env(EnvResultBackend); ok && v != "" {
		c.ResultBackend = v
		delete(lines, "result_backend")
	}
}

// broker reads the broker_* settings.
func (r *reader) broker(c *Config) {
	if v, ok := r.get("broker_url"); ok {
		switch v := v.(type) {
		case nil:
		case string:
			c.BrokerURLs = SplitBrokerURLs(v)
		case []any:
			c.BrokerURLs = nil
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					r.fail("broker_url", wrongType("a string or a list of strings", e))
					break
				}
				c.BrokerURLs = append(c.BrokerURLs, SplitBrokerURLs(s)...)
			}
		default:
			r.fail("broker_url", wrongType("a string or a list of strings", v))
		}
	}
	if v, ok := r.get("broker_use_ssl"); ok {
		switch v.(type) {
		case nil, bool, map[string]any:
			c.BrokerUseSSL = v
		default:
			r.fail("broker_use_ssl", wrongType("True, False or a dict", v))
		}
	}
	r.seconds("broker_heartbeat", &c.BrokerHeartbeat)
	r.seconds("broker_connection_timeout", &c.BrokerConnectionTimeout)
	r.boolean("broker_connection_retry", &c.BrokerConnectionRetry)
	r.integer("broker_connection_max_retries", &c.BrokerConnectionMaxRetries, 0)
	r.str("broker_failover_strategy", &c.BrokerFailoverStrategy)
	switch c.BrokerFailoverStrategy {
	case "":
		c.BrokerFailoverStrategy = "round-robin" // None: kombu's default
	case "round-robin", "shuffle":
	default:
		r.fail("broker_failover_strategy", fmt.Errorf("%w: %q is not a failover strategy ccworker knows (kombu's are 'round-robin' and 'shuffle'; a Python callable cannot be used)", ErrInvalidValue, c.BrokerFailoverStrategy))
	}
}

// results reads the result backend settings and accept_content.
func (r *reader) results(c *Config) {
	r.str("result_backend", &c.ResultBackend)
	if v, ok := r.get("mongodb_backend_settings"); ok {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			c.MongoDBBackendSettings = v
		default:
			r.fail("mongodb_backend_settings", wrongType("a dict", v))
		}
	}
	r.boolean("result_extended", &c.ResultExtended)
	r.str("result_serializer", &c.ResultSerializer)
	r.seconds("result_expires", &c.ResultExpires)
	r.strList("result_accept_content", &c.ResultAcceptContent)
	r.strList("accept_content", &c.AcceptContent)
}

// tasks reads the task_* execution settings and the default queue.
func (r *reader) tasks(c *Config) {
	r.str("task_serializer", &c.TaskSerializer)
	r.optBool("task_acks_late", &c.TaskAcksLate)
	r.optBool("ccworker_builtin_tasks", &c.BuiltinTasks)
	r.boolean("task_acks_on_failure_or_timeout", &c.TaskAcksOnFailureOrTimeout)
	r.optBool("task_reject_on_worker_lost", &c.TaskRejectOnWorkerLost)
	r.boolean("task_ignore_result", &c.TaskIgnoreResult)
	r.boolean("task_store_errors_even_if_ignored", &c.TaskStoreErrorsEvenIfIgnored)
	r.boolean("task_track_started", &c.TaskTrackStarted)
	r.seconds("task_time_limit", &c.TaskTimeLimit)
	r.seconds("task_soft_time_limit", &c.TaskSoftTimeLimit)
	if v, ok := r.get("task_queue_max_priority"); ok {
		switch v := v.(type) {
		case nil:
		case int64:
			if v < 0 || v > 255 {
				r.fail("task_queue_max_priority", fmt.Errorf("%w: %d is not in 0..255", ErrInvalidValue, v))
			} else {
				n := int(v)
				c.TaskQueueMaxPriority = &n
			}
		default:
			r.fail("task_queue_max_priority", wrongType("an int or None", v))
		}
	}
	r.defaultQueue(c)
	r.boolean("task_create_missing_queues", &c.TaskCreateMissingQueues)
	if v, ok := r.get("task_queues"); ok {
		qs, err := parseQueues(v)
		if err != nil {
			r.fail("task_queues", err)
		}
		c.TaskQueues = qs
	}
}

// defaultQueue reads task_default_*: exchange and routing key default to
// the queue's name, as in Celery.
func (r *reader) defaultQueue(c *Config) {
	r.str("task_default_queue", &c.TaskDefaultQueue)
	c.TaskDefaultExchange, c.TaskDefaultRoutingKey = "", ""
	r.str("task_default_exchange", &c.TaskDefaultExchange)
	r.str("task_default_exchange_type", &c.TaskDefaultExchangeType)
	r.str("task_default_routing_key", &c.TaskDefaultRoutingKey)
	if c.TaskDefaultQueue == "" {
		c.TaskDefaultQueue = "celery"
	}
	if c.TaskDefaultExchange == "" {
		c.TaskDefaultExchange = c.TaskDefaultQueue
	}
	if c.TaskDefaultRoutingKey == "" {
		c.TaskDefaultRoutingKey = c.TaskDefaultQueue
	}
	if c.TaskDefaultExchangeType == "" {
		c.TaskDefaultExchangeType = "direct"
	}
}

// worker reads the worker_* settings, time zone and task modules.
func (r *reader) worker(c *Config) {
	r.integer("worker_concurrency", &c.WorkerConcurrency, 0)
	r.integer("worker_prefetch_multiplier", &c.WorkerPrefetchMultiplier, 4)
	r.boolean("worker_send_task_events", &c.WorkerSendTaskEvents)
	r.boolean("worker_enable_remote_control", &c.WorkerEnableRemoteControl)
	r.boolean("enable_utc", &c.EnableUTC)
	r.str("timezone", &c.Timezone)
	r.strList("imports", &c.Imports)
	r.strList("include", &c.Include)
}

// routing reads task_routes, task_annotations and the rate limits.
func (r *reader) routing(c *Config) {
	if v, ok := r.get("task_routes"); ok {
		switch v.(type) {
		case nil:
		case map[string]any, []any, string:
			c.TaskRoutes = v
		default:
			r.fail("task_routes", wrongType("a dict or a list of dicts", v))
		}
	}
	if v, ok := r.get("task_annotations"); ok {
		r.annotations(v, c)
	}
	if v, ok := r.get("task_default_rate_limit"); ok {
		rate, err := ParseRate(v)
		if err != nil {
			r.fail("task_default_rate_limit", err)
		}
		c.TaskDefaultRateLimit = rate
	}
	r.boolean("worker_disable_rate_limits", &c.WorkerDisableRateLimits)
}

func (r *reader) annotations(v any, c *Config) {
	switch v := v.(type) {
	case nil:
	case map[string]any:
		c.TaskAnnotations = make(map[string]map[string]any, len(v))
		for name, a := range v {
			attrs, ok := a.(map[string]any)
			if !ok {
				r.fail("task_annotations", fmt.Errorf("%w: annotations of %q: want a dict, got %s", ErrWrongType, name, typeName(a)))
				break
			}
			if rv, ok := attrs["rate_limit"]; ok {
				if _, err := ParseRate(rv); err != nil {
					r.fail("task_annotations", fmt.Errorf("%q %s: %w", name, "rate_limit", err))
				}
			}
			c.TaskAnnotations[name] = attrs
		}
	default:
		r.fail("task_annotations", wrongType("a dict of task name -> dict of attributes", v))
	}
}

// ccworker reads ccworker's own settings.
func (r *reader) ccworker(c *Config) {
	r.commands(CommandsKey, &c.Commands)
	if v, ok := r.get("ccworker_task_aliases"); ok {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			c.TaskAliases = make(map[string]string, len(v))
			for k, e := range v {
				s, ok := e.(string)
				if !ok {
					r.fail("ccworker_task_aliases", fmt.Errorf("%w: value for %q: want a handler name string, got %s", ErrWrongType, k, typeName(e)))
					break
				}
				c.TaskAliases[k] = s
			}
		default:
			r.fail("ccworker_task_aliases", wrongType("a dict of task name -> handler name", v))
		}
	}
	r.integer("ccworker_result_batch_size", &c.ResultBatchSize, 256)
	r.seconds("ccworker_result_flush_interval", &c.ResultFlushInterval)
}

func parseQueues(v any) ([]Queue, error) {
	one := func(name string, d map[string]any) (Queue, error) {
		q := Queue{Name: name, Durable: true, ExchangeType: "direct"}
		for k, e := range d {
			var err error
			switch k {
			case "name":
				err = setStr(&q.Name, e)
			case "exchange":
				err = setStr(&q.Exchange, e)
			case "exchange_type":
				err = setStr(&q.ExchangeType, e)
			case "routing_key":
				err = setStr(&q.RoutingKey, e)
			case "queue_arguments":
				switch a := e.(type) {
				case nil:
				case map[string]any:
					q.QueueArguments = a
				default:
					err = wrongType("a dict", e)
				}
			case "durable":
				b, ok := e.(bool)
				if !ok {
					err = wrongType("True or False", e)
				}
				q.Durable = b
			default:
				err = fmt.Errorf("%w: queue key %q is not supported (name, exchange, exchange_type, routing_key, queue_arguments, durable)", ErrInvalidValue, k)
			}
			if err != nil {
				return Queue{}, fmt.Errorf("queue %q: %s: %w", q.Name, k, err)
			}
		}
		if q.Name == "" {
			return Queue{}, fmt.Errorf("%w: queue without a name", ErrInvalidValue)
		}
		if q.Exchange == "" {
			q.Exchange = q.Name
		}
		if q.RoutingKey == "" {
			q.RoutingKey = q.Name
		}
		return q, nil
	}
	var out []Queue
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		for _, e := range v {
			d, ok := e.(map[string]any)
			if !ok {
				return nil, wrongType("a list of dicts (kombu Queue objects cannot be read)", e)
			}
			q, err := one("", d)
			if err != nil {
				return nil, err
			}
			out = append(out, q)
		}
	case map[string]any:
		// Celery's compat form: {name: {exchange: ..., routing_key: ...}}.
		for _, name := range slices.Sorted(maps.Keys(v)) {
			d, ok := v[name].(map[string]any)
			if !ok {
				return nil, wrongType("a dict of queue name -> dict", v[name])
			}
			q, err := one(name, d)
			if err != nil {
				return nil, err
			}
			out = append(out, q)
		}
	default:
		return nil, wrongType("a list of dicts or a dict of dicts", v)
	}
	return out, nil
}

func setStr(dst *string, v any) error {
	switch v := v.(type) {
	case string:
		*dst = v
	case nil:
	default:
		return wrongType("a string", v)
	}
	return nil
}

// Validate checks the fields for what ccworker cannot work with. Load and
// FromValues call it; call it again after applying command-line flags.
func (c *Config) Validate() error { return c.validate(nil) }

func (c *Config) validate(posm map[string]int) error {
	fail := func(key string, err error) error {
		return &KeyError{File: c.File, Line: posm[key], Key: key, Err: err}
	}
	if len(c.BrokerURLs) == 0 {
		return fail("broker_url", fmt.Errorf("%w: no broker URL", ErrBrokerURL))
	}
	for _, u := range c.BrokerURLs {
		if _, err := ParseBrokerURL(u); err != nil {
			return fail("broker_url", err)
		}
	}
	if _, err := BrokerTLSConfig(c.BrokerUseSSL, "localhost"); err != nil {
		return fail("broker_use_ssl", err)
	}
	if c.ResultSerializer != "json" {
		return fail("result_serializer", fmt.Errorf("%w: %q (ccworker writes json results only)", ErrUnsupportedSerializer, c.ResultSerializer))
	}
	switch c.TaskSerializer {
	case "json", "msgpack", "yaml":
	default:
		return fail("task_serializer", fmt.Errorf("%w: %q (json, msgpack or yaml)", ErrUnsupportedSerializer, c.TaskSerializer))
	}
	if c.ResultBackend != "" {
		if _, err := c.Mongo(); err != nil {
			key := "result_backend"
			if _, ok := posm[key]; !ok && c.MongoDBBackendSettings != nil {
				key = "mongodb_backend_settings"
			}
			return fail(key, err)
		}
	}
	if c.TaskSoftTimeLimit > 0 && c.TaskTimeLimit > 0 && c.TaskSoftTimeLimit > c.TaskTimeLimit {
		return fail("task_soft_time_limit", fmt.Errorf("%w: soft limit %v exceeds hard limit %v", ErrInvalidValue, c.TaskSoftTimeLimit, c.TaskTimeLimit))
	}
	if c.ResultBatchSize < 1 {
		return fail("ccworker_result_batch_size", fmt.Errorf("%w: must be at least 1", ErrInvalidValue))
	}
	if c.ResultFlushInterval <= 0 {
		return fail("ccworker_result_flush_interval", fmt.Errorf("%w: must be positive", ErrInvalidValue))
	}
	return nil
}

// errNoMongo is returned by Mongo when no result backend is configured.
var errNoMongo = errors.New("no result_backend configured")

// Mongo translates ResultBackend and MongoDBBackendSettings; see
// ParseMongoBackend. Only mongodb:// and mongodb+srv:// backends are
// supported (Celery passes "mongodb+srv://" to the backend as "srv://").
func (c *Config) Mongo() (MongoBackend, error) {
	if c.ResultBackend == "" {
		return MongoBackend{}, fmt.Errorf("%w: %w", ErrMongoURL, errNoMongo)
	}
	scheme, _, _ := strings.Cut(c.ResultBackend, "://")
	if scheme != "mongodb" && scheme != "mongodb+srv" && scheme != "srv" {
		return MongoBackend{}, fmt.Errorf("%w: result backend %q is not supported (ccworker stores results in MongoDB only)", ErrMongoURL, scheme)
	}
	return ParseMongoBackend(c.ResultBackend, c.MongoDBBackendSettings)
}

// BrokerTLS returns the TLS configuration for connecting to u: from
// broker_use_ssl when set, else, for amqps URLs, py-amqp's default (verify
// the chain against system roots, no hostname check). It returns nil when
// the connection is plain.
func (c *Config) BrokerTLS(u BrokerURL) (*tls.Config, error) {
	v := c.BrokerUseSSL
	if b, ok := v.(bool); (v == nil || ok && !b) && u.TLS {
		v = true
	}
	return BrokerTLSConfig(v, u.Host)
}

// reportable is vals as `inspect conf` shows them: no private names, no modules, classes
// or functions of a config imported by Python, other Python objects (a kombu Queue in
// task_queues) as a repr-like string: Celery's conf reply uses safe_repr for what JSON
// cannot carry.
func reportable(vals map[string]any) map[string]any {
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		if o, ok := v.(pyObject); strings.HasPrefix(k, "_") || ok && o.Helper {
			continue
		}
		out[k] = reportableValue(v)
	}
	return out
}

func reportableValue(v any) any {
	switch x := v.(type) {
	case pyObject:
		return "<" + x.Type + " object>"
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = reportableValue(e)
		}
		return l
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = reportableValue(e)
		}
		return m
	}
	return v
}
