// Package python runs Celery tasks written in Python: a pool of persistent Python
// processes ("children") imports the task modules (Celery's `imports`) and runs any task
// they define with @shared_task or @app.task, unchanged, as Celery's prefork pool would.
//
// Each child runs the embedded bridge (bridge.py) with `<interpreter> -u -c <source>
// MODULE...`. ccworker and the bridge talk in JSON lines over two dedicated pipes, the
// child's fd 3 (requests) and fd 4 (replies), so whatever a task prints cannot corrupt the
// protocol; the child's stdout and stderr are forwarded to the log a line at a time with
// its pid. The bridge pushes a Celery request (id, retries, args, kwargs, hostname, ...)
// with is_eager=True, so self.retry() raises celery.exceptions.Retry instead of
// publishing, calls the task the way celery.app.trace does (bind=True and autoretry_for
// work), and answers with the result (kombu's JSON), the retry, or the exception encoded
// as Celery's result backend encodes it, with the traceback text.
//
// Time limits follow prefork: at the soft limit the child gets SIGUSR1 and the bridge
// raises billiard's SoftTimeLimitExceeded inside the task; at the hard limit, or when the
// task is revoked with terminate=True, the child is killed and replaced. A child that dies
// mid-task yields a *WorkerLostError. Children are recycled after MaxTasksPerChild tasks
// or once their peak RSS passes MaxMemoryPerChild KiB, as Celery's
// --max-tasks-per-child and --max-memory-per-child do.
package python

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/tasks"
)

//go:embed bridge.py
var bridgeSource string

// BridgeSource returns the bridge script the children run.
func BridgeSource() string { return bridgeSource }

// The environment variables that carry the worker's broker TLS settings (broker_use_ssl
// as JSON) and failover strategy to the children, which set them on every Celery app so
// that a task publishes (Task.replace, apply_async) as the worker consumes. The broker
// URL itself goes in CELERY_BROKER_URL, which Celery reads.
const (
	EnvBrokerUseSSL           = "CCWORKER_BROKER_USE_SSL"
	EnvBrokerFailoverStrategy = "CCWORKER_BROKER_FAILOVER_STRATEGY"
)

// ErrClosed is returned by a handler once the pool is closed.
var ErrClosed = errors.New("python: pool closed")

// Config configures a Pool.
type Config struct {
	// Interpreter is the Python to run (a path or a name looked up in PATH; a venv's
	// bin/python works). It must be able to import celery. Default "python3".
	Interpreter string
	// Imports are the modules to import (Celery's imports and include).
	Imports []string
	// Dir is the children's working directory (and so the first entry of sys.path,
	// where celeryconfig.py is found); "" = the current directory.
	Dir string
	// Env is added to the worker's environment for the children ("KEY=value", e.g.
	// PYTHONPATH=/path/to/lib).
	Env []string
	// Processes is the number of children, at least 1.
	Processes int
	// MaxTasksPerChild recycles a child after that many tasks; 0 = never.
	MaxTasksPerChild int
	// MaxMemoryPerChild recycles a child after a task that left its peak resident
	// memory above this many KiB; 0 = never.
	MaxMemoryPerChild int64
	// HardLimit, when set, returns the hard time limit of a task (without the message's
	// own); it is needed only after a soft limit has passed, when the handler's context
	// can no longer tell the hard limit.
	HardLimit func(task string) time.Duration
	// StartTimeout bounds a child's start (imports included); default 2 minutes.
	StartTimeout time.Duration
	// LogLevel is the level of the children's Python logging (DEBUG, INFO, WARNING,
	// ...); default WARNING.
	LogLevel string
	// Logger receives the children's output and the pool's events; nil = none.
	Logger *zap.Logger
}

// TaskInfo is a task the children found.
type TaskInfo struct {
	Name         string `json:"name"`
	Doc          string `json:"doc"`
	IgnoreResult bool   `json:"ignore_result"`
	// The task's own limits, from its decorator or the app's task_annotations: seconds
	// (nil = none) and a Celery rate ('10/m', a number per second, nil = none).
	TimeLimit     *float64 `json:"time_limit"`
	SoftTimeLimit *float64 `json:"soft_time_limit"`
	RateLimit     any      `json:"rate_limit"`
	// The task's own acks_late, track_started and reject_on_worker_lost (decorator or
	// task_annotations); nil = the worker's setting.
	AcksLate           *bool `json:"acks_late"`
	TrackStarted       *bool `json:"track_started"`
	RejectOnWorkerLost *bool `json:"reject_on_worker_lost"`
	// Attrs are the task's plain attributes as Python's str() writes them (max_retries,
	// serializer, ...; None left out), for `inspect registered`.
	Attrs map[string]string `json:"attrs"`
}

// WorkerLostError is the error of a task whose child process died while running it: the
// client sees billiard.exceptions.WorkerLostError, as with Celery's prefork pool.
type WorkerLostError struct {
	Status string // billiard's human_status: "signal 9 (SIGKILL)", "exitcode 1"
	Job    uint64 // the pool's job number
	PID    int
}

func (e *WorkerLostError) Error() string {
	return fmt.Sprintf("Worker exited prematurely: %s Job: %d.", e.Status, e.Job)
}

// Exception returns the error as the Python exception Celery stores.
func (e *WorkerLostError) Exception() *tasks.Exception {
	return &tasks.Exception{Module: "billiard.exceptions", Type: "WorkerLostError", Args: []any{e.Error()},
		Traceback: "Traceback (most recent call last):\n" +
			"  File \"/usr/lib/python3/dist-packages/billiard/pool.py\", line 1265, in mark_as_worker_lost\n" +
			"    raise WorkerLostError(\n" +
			"billiard.exceptions.WorkerLostError: " + e.Error() + "\n"}
}

// As lets errors.As find the error as a *tasks.Exception, so that a worker that knows
// nothing of this package stores FAILURE WorkerLostError.
// Is makes a lost child match tasks.ErrWorkerLost, so the worker can requeue the task
// under task_reject_on_worker_lost.
func (e *WorkerLostError) Is(target error) bool { return target == tasks.ErrWorkerLost }

func (e *WorkerLostError) As(target any) bool {
	if t, ok := target.(**tasks.Exception); ok {
		*t = e.Exception()
		return true
	}
	return false
}

// Pool is a set of Python children. Its handlers may be called from many goroutines.
type Pool struct {
	cfg   Config
	log   *zap.Logger
	tasks []TaskInfo
	idle  chan *child

	base   context.Context // cancelled by Close: stops replacements
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the pool and its children
	jobs   atomic.Uint64

	mu       sync.Mutex
	closed   bool
	children map[*child]struct{} // every live child, idle or busy
}

// NewPool starts cfg.Processes children and waits until they have imported the task
// modules; ctx bounds the start only. The pool runs until Close.
func NewPool(ctx context.Context, cfg Config) (*Pool, error) {
	if cfg.Processes < 1 {
		return nil, fmt.Errorf("python: Processes must be at least 1, got %d", cfg.Processes)
	}
	if cfg.Interpreter == "" {
		cfg.Interpreter = "python3"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "WARNING"
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	base, cancel := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, log: log, idle: make(chan *child, cfg.Processes), base: base, cancel: cancel,
		children: map[*child]struct{}{}}

	type started struct {
		c     *child
		tasks []TaskInfo
		err   error
	}
	results := make(chan started, cfg.Processes)
	for range cfg.Processes {
		go func() {
			c, t, err := p.startChild(ctx)
			results <- started{c, t, err}
		}()
	}
	var errs []error
	for range cfg.Processes {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		p.children[r.c] = struct{}{}
		p.idle <- r.c
		if p.tasks == nil {
			p.tasks = r.tasks
		}
	}
	if len(errs) > 0 {
		closeCtx, cancelClose := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelClose()
		_ = p.Close(closeCtx)
		return nil, errs[0]
	}
	if p.tasks == nil {
		p.tasks = []TaskInfo{}
	}
	return p, nil
}

// Processes is the number of Python children the pool keeps.
func (p *Pool) Processes() int { return p.cfg.Processes }

// Tasks returns the tasks the children found (Celery's own celery.* tasks left out).
func (p *Pool) Tasks() []TaskInfo { return append([]TaskInfo(nil), p.tasks...) }

// Handler returns the handler that runs the Python task name on a child.
//
// It waits for a free child (or ctx), sends the request and waits for the reply. The
// result is a json.RawMessage; self.retry() gives a *tasks.Retry (MaxRetries -1: Python
// has already checked max_retries); an exception gives a *tasks.Exception of the same
// class with Celery's traceback text; a child that dies gives a *WorkerLostError. A
// cancelled ctx kills the child, except at the soft time limit, which raises
// SoftTimeLimitExceeded inside the task.
func (p *Pool) Handler(name string) tasks.Handler {
	return func(ctx context.Context, call *tasks.Call) (any, error) { return p.run(ctx, name, call) }
}

func (p *Pool) run(ctx context.Context, name string, call *tasks.Call) (any, error) {
	line, err := encodeRequest(name, call)
	if err != nil {
		return nil, &tasks.Exception{Module: "kombu.exceptions", Type: "EncodeError", Args: []any{err.Error()}}
	}
	var c *child
	select {
	case c = <-p.idle:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-p.base.Done():
		return nil, ErrClosed
	}
	// As under Celery's prefork pool, revocation and expiry are checked when a child
	// takes the task, not only when it arrived.
	if call.Ready != nil {
		if err := call.Ready(); err != nil {
			p.release(c)
			return nil, err
		}
	}
	job := p.jobs.Add(1)
	c.busy.Store(true)
	hard := time.Duration(0)
	if call.Request != nil {
		hard = call.Request.TimeLimit
	}
	if hard == 0 && p.cfg.HardLimit != nil {
		hard = p.cfg.HardLimit(name)
	}
	o := c.call(ctx, line, time.Now(), hard)
	c.busy.Store(false)
	if !o.usable {
		p.retire(c, true)
		if o.lost {
			p.log.Error("python child exited prematurely", zap.Int("pid", c.pid), zap.String("task", name),
				zap.String("status", o.err.Error()))
			return nil, &WorkerLostError{Status: o.err.Error(), Job: job, PID: c.pid}
		}
		return nil, o.err
	}
	v, rss, err := decodeReply(o.line)
	c.tasks++
	c.rss = rss
	switch {
	case p.cfg.MaxTasksPerChild > 0 && c.tasks >= p.cfg.MaxTasksPerChild:
		p.log.Debug("python child recycled after max tasks", zap.Int("pid", c.pid), zap.Int("tasks", c.tasks))
		p.retire(c, false)
	case p.cfg.MaxMemoryPerChild > 0 && rss > p.cfg.MaxMemoryPerChild:
		p.log.Warn(fmt.Sprintf("child process exiting due to memory limit (%dKiB/%dKiB)", rss, p.cfg.MaxMemoryPerChild),
			zap.Int("pid", c.pid))
		p.retire(c, false)
	default:
		p.release(c)
	}
	return v, err
}

// release gives a healthy child back.
func (p *Pool) release(c *child) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.retire(c, false)
		return
	}
	p.idle <- c // never blocks: the channel holds every child
}

// retire ends a child (killing it when dead is true or it does not exit) and starts its
// replacement.
func (p *Pool) retire(c *child, dead bool) {
	end := func() {
		if dead {
			c.kill()
		}
		c.stop(10 * time.Second)
		c.discardReplies()
		p.mu.Lock()
		delete(p.children, c)
		p.mu.Unlock()
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if closed {
		// Close is waiting for this child: let it exit (or be killed) there.
		if dead {
			c.kill()
		}
		c.close()
		c.discardReplies()
		return
	}
	go func() {
		defer p.wg.Done()
		end()
	}()
	p.replace()
}

// replace starts a child in the background and puts it in the idle set, retrying with a
// back-off until it starts or the pool is closed.
func (p *Pool) replace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		// A child that cannot start (a broken library, no memory) is retried slowly.
		b := backoff.New(backoff.Policy{Min: time.Second, Max: time.Minute})
		for {
			c, _, err := p.startChild(p.base)
			if err == nil {
				p.mu.Lock()
				if p.closed {
					p.mu.Unlock()
					c.stop(time.Second)
					c.discardReplies()
					return
				}
				p.children[c] = struct{}{}
				p.mu.Unlock()
				p.idle <- c
				return
			}
			if p.base.Err() != nil {
				return
			}
			delay := b.Next()
			p.log.Error("cannot start a python child; retrying", zap.Error(err), zap.Duration("in", delay))
			if backoff.Sleep(p.base, delay) != nil {
				return
			}
		}
	}()
}

// Close stops the children: idle ones at once; busy ones when their task is done, or
// killed when ctx is done first. It waits for every goroutine of the pool and returns
// ctx's error if it had to kill.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	all := make([]*child, 0, len(p.children))
	for c := range p.children {
		all = append(all, c)
	}
	p.mu.Unlock()
	p.cancel()
	for _, c := range all {
		c.close() // EOF: each bridge exits once its current task is done
	}
	var err error
	for _, c := range all {
		select {
		case <-c.exited:
		case <-ctx.Done():
			err = ctx.Err()
			c.kill()
		}
	}
	// Idle children are nobody's: stop their readers. Busy ones are stopped by their
	// handler when it has the reply (release → retire).
	for {
		select {
		case c := <-p.idle:
			c.discardReplies()
			continue
		default:
		}
		break
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// A grandchild of a task may hold the children's stdout or stderr open.
		if err == nil {
			err = ctx.Err()
		}
		for _, c := range all {
			for _, f := range c.streams {
				_ = f.Close()
			}
		}
		<-done
	}
	return err
}

// request is what the bridge reads: the fields of Celery's task Context.
type request struct {
	ID            string         `json:"id"`
	Task          string         `json:"task"`
	Args          []any          `json:"args"`
	Kwargs        map[string]any `json:"kwargs"`
	Retries       int            `json:"retries"`
	ETA           *string        `json:"eta"`
	Expires       *string        `json:"expires"`
	RootID        *string        `json:"root_id"`
	ParentID      *string        `json:"parent_id"`
	Group         *string        `json:"group"`
	GroupIndex    *int           `json:"group_index"`
	Hostname      string         `json:"hostname"`
	DeliveryInfo  map[string]any `json:"delivery_info"`
	ReplyTo       *string        `json:"reply_to"`
	CorrelationID *string        `json:"correlation_id"`
	Origin        *string        `json:"origin"`
	TimeLimit     [2]*float64    `json:"timelimit"`
	IgnoreResult  bool           `json:"ignore_result"`
	// Fields are the message's headers for a protocol 2 message: Celery makes each of
	// them an attribute of the request (self.request.authenticated_user).
	Fields map[string]any `json:"fields,omitempty"`
	// Headers is request.headers: the message's headers for a protocol 1 message (whose
	// fields are in the body), None for protocol 2, as in Celery.
	Headers    map[string]any `json:"headers"`
	Properties map[string]any `json:"properties"`
	// The canvas the message carries, which Task.replace hands on to the replacement.
	Callbacks []any `json:"callbacks"`
	Errbacks  []any `json:"errbacks"`
	Chain     []any `json:"chain"`
	Chord     any   `json:"chord"`
}

func encodeRequest(name string, call *tasks.Call) ([]byte, error) {
	r := request{Task: name, Args: call.Args, Kwargs: call.Kwargs, Hostname: call.Hostname,
		DeliveryInfo: call.DeliveryInfo(), Properties: call.Properties()}
	if r.Args == nil {
		r.Args = []any{}
	}
	if r.Kwargs == nil {
		r.Kwargs = map[string]any{}
	}
	if q := call.Request; q != nil {
		r.ID, r.Retries, r.GroupIndex, r.IgnoreResult = q.ID, q.Retries, q.GroupIndex, q.IgnoreResult
		r.ETA, r.Expires = isoTime(q.ETA), isoTime(q.Expires)
		r.RootID, r.ParentID, r.Group = nonEmpty(q.RootID), nonEmpty(q.ParentID), nonEmpty(q.GroupID)
		r.ReplyTo, r.CorrelationID, r.Origin = nonEmpty(q.ReplyTo), nonEmpty(q.CorrelationID), nonEmpty(q.Origin)
		r.Callbacks, r.Errbacks, r.Chain, r.Chord = q.Callbacks, q.Errbacks, q.Chain, q.Chord
		if q.Protocol == 1 {
			r.Headers = q.MessageHeaders()
		} else {
			r.Fields = q.MessageHeaders()
		}
		r.TimeLimit = [2]*float64{seconds(q.TimeLimit), seconds(q.SoftTimeLimit)}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("python: encoding the request: %w", err)
	}
	return append(b, '\n'), nil
}

func isoTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.999999+00:00")
	return &s
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func seconds(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	f := d.Seconds()
	return &f
}

// excInfo is an exception as Celery's Backend.prepare_exception encodes it.
type excInfo struct {
	Type    string          `json:"exc_type"`
	Message json.RawMessage `json:"exc_message"`
	Module  string          `json:"exc_module"`
}

func (e *excInfo) exception(tb string) *tasks.Exception {
	var args []any
	if err := json.Unmarshal(e.Message, &args); err != nil {
		var one any
		if json.Unmarshal(e.Message, &one) == nil && one != nil {
			args = []any{one}
		}
	}
	if args == nil {
		args = []any{}
	}
	return &tasks.Exception{Module: e.Module, Type: e.Type, Args: args, Traceback: tb}
}

// decodeReply turns a reply line into the handler's value and error.
func decodeReply(line []byte) (v any, rss int64, err error) {
	var r struct {
		OK    json.RawMessage `json:"ok"`
		Retry *struct {
			Countdown *float64 `json:"countdown"`
			ETA       string   `json:"eta"`
			Exc       *excInfo `json:"exc"`
		} `json:"retry"`
		Error     *excInfo `json:"error"`
		Traceback string   `json:"traceback"`
		RSS       int64    `json:"rss"`
		Ignored   bool     `json:"ignored"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, 0, fmt.Errorf("python: bad reply %q: %w", truncate(line, 200), err)
	}
	switch {
	case r.Ignored:
		return nil, r.RSS, tasks.ErrIgnore
	case r.Retry != nil:
		retry := &tasks.Retry{MaxRetries: -1}
		switch {
		case r.Retry.ETA != "":
			eta, perr := parseISO(r.Retry.ETA)
			if perr != nil {
				return nil, r.RSS, fmt.Errorf("python: retry eta %q: %w", r.Retry.ETA, perr)
			}
			retry.ETA = eta
		case r.Retry.Countdown != nil && *r.Retry.Countdown > 0:
			retry.Countdown = time.Duration(*r.Retry.Countdown * float64(time.Second))
		default:
			retry.Countdown = -1 // countdown=0: at once
		}
		if r.Retry.Exc != nil {
			retry.Exc = r.Retry.Exc.exception(r.Traceback)
		}
		return nil, r.RSS, retry
	case r.Error != nil:
		return nil, r.RSS, r.Error.exception(r.Traceback)
	case len(r.OK) == 0 || string(r.OK) == "null":
		return nil, r.RSS, nil
	}
	return r.OK, r.RSS, nil
}

// parseISO reads Python's datetime.isoformat(); a naive time is taken as UTC.
func parseISO(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not an ISO 8601 time")
}

func truncate(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
