// Package worker runs Celery tasks: deliveries handed to Handle are decoded, checked
// (registered? expired? due?), run on the pool, their outcomes turned into result
// documents for the results writer, and acknowledged once their document is durable.
// A task's life is one state machine (settle.go); finished tasks are ended on the
// worker's own completion goroutine (completer.go). The broker and the result writer
// are its owner's (node.Node) to start and stop.
package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
)

// ResultWriter is what the worker needs of the results writer. Its owner (node.Node)
// starts it before the worker and stops it after.
type ResultWriter interface {
	// Write queues rec; done reports, once, whether it became durable.
	Write(ctx context.Context, rec *results.Record, done func(error)) error
}

// Broker is what the worker needs of the AMQP consumer. Its owner (node.Node) starts it,
// delivering to Worker.Handle, and closes it after the worker has stopped.
type Broker interface {
	// StopConsuming stops new deliveries; the connection stays open for the acks.
	StopConsuming()
	// Publish sends a message and returns once the broker has confirmed it.
	Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error
	// Park moves a delivery to a broker-side delay queue that returns it by until.
	Park(ctx context.Context, d *prefetch.Delivery, until time.Time) error
	// Ensure declares a queue before the worker first publishes to it.
	Ensure(q prefetch.Queue) error
	// Waiting reports how many messages wait undelivered in the consumed queues.
	Waiting(ctx context.Context) (int, error)
}

// TaskEvents receives the task lifecycle, for Celery's task events (control.Events).
type TaskEvents interface {
	TaskReceived(uuid, name, argsRepr, kwargsRepr, rootID, parentID string, retries int, eta, expires time.Time)
	TaskStarted(uuid string)
	TaskSucceeded(uuid, resultRepr string, runtime time.Duration)
	TaskFailed(uuid, exceptionRepr, traceback string)
	TaskRetried(uuid, exceptionRepr, traceback string)
	TaskRejected(uuid string, requeue bool)
	TaskRevoked(uuid string, terminated bool, signum int, expired bool)
}

// RevokedSet holds the ids of revoked tasks (Celery's LimitedSet); control.Revoked is
// the one remote control fills.
type RevokedSet interface {
	Add(ids ...string)
	Contains(id string) bool
}

// Config configures a Worker.
type Config struct {
	NodeName    string // celery@host: stored as the result's worker
	Concurrency int
	Accept      protocol.Accept
	// TimeLimit and SoftTimeLimit apply when neither the message nor TaskLimits sets one.
	TimeLimit, SoftTimeLimit time.Duration
	TaskLimits               map[string]Limits // per-task annotations
	// IgnoreResult (task_ignore_result) stores nothing for any task, errors included
	// unless StoreErrorsEvenIfIgnored; the per-message ignore_result header only
	// suppresses SUCCESS, as in Celery.
	IgnoreResult             bool
	StoreErrorsEvenIfIgnored bool
	// LogTasks writes Celery's "received" and "succeeded in" lines at INFO.
	LogTasks     bool
	DrainTimeout time.Duration // how long a warm shutdown waits for running tasks

	// EarlyAck acks a message when its task starts, as Celery does by default
	// (task_acks_late = False set explicitly): for tasks that must not run twice. By
	// default ccworker acks once the result is durable (at-least-once).
	EarlyAck bool
	// RejectOnFailure rejects (without requeue) a failed or timed-out task's message
	// instead of acking it: task_acks_on_failure_or_timeout = False.
	RejectOnFailure bool
	// RejectOnWorkerLost requeues a task whose process died under it instead of storing
	// FAILURE WorkerLostError (task_reject_on_worker_lost).
	RejectOnWorkerLost bool
	// TrackStarted stores STARTED before a task runs (task_track_started).
	TrackStarted bool
	// ETAHold is how far ahead of its ETA a task is held in memory (unacked);
	// later ones are parked in broker-side delay queues and acked. Default 10 s.
	ETAHold time.Duration
	// MaxHeld bounds the tasks held in memory for their ETA; beyond it they are
	// parked even when due soon. Default 1000.
	MaxHeld int
	// ParkRetry is how often a task held because it could not be parked tries to park
	// again. Default 15 s.
	ParkRetry time.Duration
	// Revoked is the set of revoked task ids, shared with remote control; nil makes a
	// private control.Revoked with Celery's defaults.
	Revoked RevokedSet
	// RateLimits are per-task rate limits in tasks per second; DefaultRateLimit
	// applies to the others (0 = none).
	RateLimits       map[string]float64
	DefaultRateLimit float64

	// MaxMessageSize refuses (rejects without requeue) a message whose body is larger,
	// before decoding it; 0 = protocol.MaxBodySize.
	MaxMessageSize int
	// AckGuard acks a message that has stayed unacked this long (a long task, a long
	// wait for its rate limit) before RabbitMQ's consumer_timeout (30 min by default)
	// closes the channel, which would put every unacked message back and run them again.
	// Such a task is then no longer redelivered if the worker dies. 0 = never.
	AckGuard time.Duration
	// MaxIdle stops the worker (warm, exit 0) once no task has arrived for this long
	// and none is in flight: a batch allocation is given back when the queue runs dry.
	MaxIdle time.Duration
	// MaxTasks stops the worker after it has taken this many tasks (0 = no limit);
	// later deliveries go back to the queue.
	MaxTasks uint64

	// Events receives task events; nil sends none.
	Events TaskEvents
	// Canvas sends callbacks, chain steps and errbacks; nil leaves them unsent (and
	// says so in the log).
	Canvas *canvas.Sender
	// QueueFor describes a queue the worker publishes to, to declare it first as Celery
	// does (task_queues, task_queue_max_priority); nil declares Celery's missing queue.
	QueueFor func(name string) prefetch.Queue

	// For remote control: what `stats` and `conf` report.
	BrokerStats   control.BrokerStats
	PrefetchCount int
	Conf          map[string]any
}

// Limits are a task's time limits; zero means not set.
type Limits struct{ Hard, Soft time.Duration }

// Worker runs tasks from a Broker and stores their results.
type Worker struct {
	cfg     Config
	reg     *tasks.Registry
	log     *zap.Logger
	broker  Broker
	results ResultWriter // nil: no result backend
	pool    *pool.Pool
	// completer ends finished tasks on the worker's own goroutine: the result writer
	// hands its reports over instead of doing the worker's bookkeeping.
	completer *completer

	// retryPublishLog keeps "cannot publish the retry" to a line per broker fault.
	retryPublishLog quietLog

	etaWait sync.WaitGroup // goroutines holding tasks until their ETA
	bg      sync.WaitGroup // publishes of retries and parked tasks in flight
	held    atomic.Int64   // tasks held in memory for their ETA
	stats   Stats

	mu       sync.Mutex
	running  map[string]*task // by task id, for revoke(terminate=True) and inspection
	inflight map[*task]bool   // received and not yet settled, for inspection
	emptied  chan struct{}    // closed when inflight becomes empty while stopping
	totals   map[string]int64 // tasks accepted, by name (stats)
	byTask   map[string]*TaskCounters
	limits   map[string]Limits // per-task time limits, changed by the time_limit command

	life lifecycle // Start, Stop, Done (lifecycle.go)

	rates    *rateLimiter
	started  time.Time
	lastSeen atomic.Int64 // unix nanos of the last delivery, for MaxIdle
	// arrived wakes the ack guard parked while nothing was in flight (capacity 1: Handle
	// never blocks on it). guardParked, set by tests only, hears each time it parks.
	arrived     chan struct{}
	guardParked chan struct{}
	taken       atomic.Uint64
}

// Stats counts what the worker did.
type Stats struct {
	Received, Succeeded, Failed, Rejected, Revoked, Retried atomic.Uint64
	// Runtime is the tasks' run time; AckLatency the time from receipt to ack.
	Runtime, AckLatency Histogram
}

// New returns a Worker. results may be nil when no result backend is configured.
func New(cfg Config, reg *tasks.Registry, broker Broker, rw ResultWriter, log *zap.Logger) (*Worker, error) {
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("worker: concurrency must be at least 1, got %d", cfg.Concurrency)
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	p, err := pool.New(cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = protocol.MaxBodySize
	}
	if cfg.ETAHold == 0 {
		cfg.ETAHold = 10 * time.Second
	}
	if cfg.ParkRetry == 0 {
		cfg.ParkRetry = 15 * time.Second
	}
	if cfg.MaxHeld == 0 {
		cfg.MaxHeld = 1000
	}
	if cfg.Revoked == nil {
		cfg.Revoked = control.NewRevoked(control.DefaultRevokesMax, control.DefaultRevokeExpires)
	}
	limits := make(map[string]Limits, len(cfg.TaskLimits))
	for k, v := range cfg.TaskLimits {
		limits[k] = v
	}
	return &Worker{cfg: cfg, reg: reg, log: log, broker: broker, results: rw, pool: p, completer: newCompleter(),
		running: map[string]*task{}, inflight: map[*task]bool{}, totals: map[string]int64{},
		byTask: map[string]*TaskCounters{}, limits: limits,
		rates: newRateLimiter(cfg.DefaultRateLimit, cfg.RateLimits), arrived: make(chan struct{}, 1),
		retryPublishLog: quietLog{window: 30 * time.Second}, life: newLifecycle()}, nil
}

// Counters returns the worker's counters.
func (w *Worker) Counters() *Stats { return &w.stats }

// Handle is the broker's prefetch.Handler: it is called for each delivery, one goroutine
// per queue. It blocks while the pool is full: that is the back-pressure that keeps the
// prefetch bounded. ctx ends when consuming stops; a task not yet running is then left
// for redelivery.
func (w *Worker) Handle(ctx context.Context, d *prefetch.Delivery) {
	w.lastSeen.Store(time.Now().UnixNano())
	if max := w.cfg.MaxTasks; max > 0 {
		n := w.taken.Add(1)
		if n > max {
			return // over --max-tasks: left unacked, it goes back to the queue
		}
		if n == max {
			w.log.Info(fmt.Sprintf("took %d tasks (--max-tasks): stopping after them", max))
			defer w.life.askToStop()
		}
	}
	w.stats.Received.Add(1)
	if max := w.cfg.MaxMessageSize; len(d.Body) > max {
		id, name := protocol.PeekHeaders(d.Headers)
		w.refuse(d, &protocol.DecodeError{ID: id, Task: name, ContentType: d.ContentType,
			Err: fmt.Errorf("%w: body of %d bytes is over the %d-byte limit (--max-message-size)",
				protocol.ErrInvalidTask, len(d.Body), max)})
		return
	}
	req, err := protocol.Decode(protocol.Message{
		ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, Headers: d.Headers,
		Body: d.Body, CorrelationID: d.CorrelationID, ReplyTo: d.ReplyTo, Priority: d.Priority,
		Properties: protocol.Properties{DeliveryMode: d.DeliveryMode, Expiration: d.Expiration,
			MessageID: d.MessageID, Timestamp: d.Timestamp, Type: d.Type, UserID: d.UserID, AppID: d.AppID},
	}, w.cfg.Accept)
	if err != nil {
		w.refuse(d, err)
		return
	}
	t := &task{w: w, d: d, req: req, received: time.Now()}
	w.mu.Lock()
	w.inflight[t] = true
	w.totals[req.Task]++
	select {
	case w.arrived <- struct{}{}:
	default:
	}
	tc := w.byTask[req.Task]
	if tc == nil {
		tc = &TaskCounters{}
		w.byTask[req.Task] = tc
	}
	w.mu.Unlock()
	t.counters = tc
	tc.Received.Add(1)
	if w.cfg.LogTasks {
		w.log.Info(fmt.Sprintf("Task %s[%s] received", req.Name(), req.ID))
	}
	if ev := w.cfg.Events; ev != nil {
		ev.TaskReceived(req.ID, req.Name(), req.ArgsRepr, req.KwargsRepr, req.RootID, req.ParentID,
			req.Retries, req.ETA, req.Expires)
	}
	h, ok := w.reg.Lookup(req.Task)
	if !ok {
		t.complete(t.unknown())
		return
	}
	if reason := t.discarded(); reason != "" {
		t.complete(t.revoked(reason))
		return
	}
	if !req.ETA.IsZero() {
		if wait := time.Until(req.ETA); wait > 0 {
			if wait <= w.cfg.ETAHold && w.held.Load() < int64(w.cfg.MaxHeld) {
				t.mu.Lock()
				t.eta = req.ETA
				t.mu.Unlock()
				w.hold(ctx, t, h, wait, true)
			} else {
				w.park(ctx, t, h)
			}
			return
		}
	}
	if wait := w.rates.reserve(req.Task, time.Now()); wait > 0 {
		w.hold(ctx, t, h, wait, false)
		return
	}
	t.run(ctx, h)
}

func (w *Worker) taskLimits(task string) Limits {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limits[task]
}

// guardAcks acks the messages that have stayed unacked for AckGuard. It runs until
// Stop returns (it must go on during a warm shutdown's drain, when long tasks are still
// running).
func (w *Worker) guardAcks(ended <-chan struct{}) {
	// A tenth of the guard, at most 10 s: a guard ack is at most 10 s late. The ticker runs
	// only while tasks are in flight: an idle worker does not wake for it.
	period := min(max(w.cfg.AckGuard/10, 10*time.Millisecond), 10*time.Second)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		w.mu.Lock()
		idle := len(w.inflight) == 0
		w.mu.Unlock()
		if idle {
			tick.Stop()
			if w.guardParked != nil {
				w.guardParked <- struct{}{}
			}
			select {
			case <-ended:
				return
			case <-w.arrived:
			}
			tick.Reset(period)
			continue
		}
		select {
		case <-ended:
			return
		case <-tick.C:
			limit := time.Now().Add(-w.cfg.AckGuard)
			for _, t := range w.snapshot() {
				if t.received.Before(limit) && !t.isAcked() {
					t.guardAck()
				}
			}
		}
	}
}

// watchIdle asks to stop once no task has arrived for MaxIdle and none is in flight,
// unless messages still wait in the queues: RabbitMQ can take a few hundred
// milliseconds to start or resume delivering from a long queue, and a worker must not
// give its allocation back with work waiting. Waiting messages that never come (another
// consumer is the single active one) delay the stop by at most idleWaitLimit.
func (w *Worker) watchIdle(stopping <-chan struct{}) {
	tick := time.NewTicker(min(max(w.cfg.MaxIdle/4, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	limit := w.cfg.MaxIdle + max(w.cfg.MaxIdle, idleWaitLimit)
	for {
		select {
		case <-stopping:
			return
		case <-tick.C:
			idle := time.Since(time.Unix(0, w.lastSeen.Load()))
			w.mu.Lock()
			busy := len(w.inflight) > 0
			w.mu.Unlock()
			if busy {
				w.lastSeen.Store(time.Now().UnixNano()) // idle counts from the last task's end
				continue
			}
			if idle < w.cfg.MaxIdle {
				continue
			}
			waiting := w.waiting()
			if waiting > 0 && idle < limit {
				continue
			}
			if waiting > 0 {
				w.log.Warn(fmt.Sprintf("%d messages wait in the queues but none came for %s (another consumer active?): stopping (--max-idle)",
					waiting, idle.Round(time.Second)))
			} else {
				w.log.Info(fmt.Sprintf("no task for %s (--max-idle): stopping", w.cfg.MaxIdle))
			}
			w.life.askToStop()
			return
		}
	}
}

// idleWaitLimit bounds how long waiting messages that are not delivered hold off
// --max-idle (at least MaxIdle more).
const idleWaitLimit = 30 * time.Second

// waiting asks the broker how many messages wait; 0 when it cannot tell (a worker cut
// off from its broker with nothing to do is idle too).
func (w *Worker) waiting() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := w.broker.Waiting(ctx)
	if err != nil {
		w.log.Debug("cannot count the messages waiting in the queues", zap.Error(err))
		return 0
	}
	return n
}

// publishAll publishes canvas messages and waits for the broker's confirms.
func (w *Worker) publishAll(msgs []canvas.Outgoing) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range msgs {
		if err := w.Publish(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// Publish sends one canvas message (a callback, a chain step, a chord's callback),
// declaring its queue first as Celery does, and waits for the broker's confirm. It makes
// the worker a canvas.Publisher, for celery.chord_unlock.
func (w *Worker) Publish(ctx context.Context, o canvas.Outgoing) error {
	if o.Queue != "" {
		q := prefetch.CeleryQueue(o.Queue, 0)
		if w.cfg.QueueFor != nil {
			q = w.cfg.QueueFor(o.Queue)
		}
		if err := w.broker.Ensure(q); err != nil {
			return fmt.Errorf("declare queue %q for %s: %w", o.Queue, o.TaskID, err)
		}
	}
	m := o.Message
	err := w.broker.Publish(ctx, o.Exchange, o.RoutingKey, amqp.Publishing{
		Headers: prefetch.Table(m.Headers), ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: o.Priority, CorrelationId: m.CorrelationID,
		ReplyTo: m.ReplyTo, Expiration: o.Expiration, Body: m.Body,
	})
	if err != nil {
		return fmt.Errorf("publish %s to %q/%q: %w", o.TaskID, o.Exchange, o.RoutingKey, err)
	}
	return nil
}

// TaskCounters returns the outcomes by task name (for metrics).
func (w *Worker) TaskCounters() map[string]*TaskCounters {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]*TaskCounters, len(w.byTask))
	for k, v := range w.byTask {
		out[k] = v
	}
	return out
}

// Gauges are the worker's current sizes (for metrics).
type Gauges struct {
	InFlight int // received and not yet settled (running, prefetched, held)
	Running  int
	Held     int // held in memory for their ETA
}

// Gauges returns the worker's current sizes.
func (w *Worker) Gauges() Gauges {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Gauges{InFlight: len(w.inflight), Running: len(w.running), Held: int(w.held.Load())}
}

// Running returns the ids of the tasks running now, sorted.
func (w *Worker) Running() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.running))
	for id := range w.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// park sends a task due later to a broker-side delay queue, then acks it. A park that
// fails (returned, nacked, refused, timed out) never leaves the message unacked and
// forgotten: the task is held in memory (unacked) and parking is tried again until its
// ETA, or, when MaxHeld tasks are held already, it is rejected with requeue after a
// pause. A delivery whose channel is gone is left alone: the broker has put it back.
func (w *Worker) park(ctx context.Context, t *task, h tasks.Handler) {
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		err := w.parkOnce(t)
		if err == nil {
			t.settleLater(verdictAck)
			return
		}
		if errors.Is(err, prefetch.ErrStale) || t.d.Stale() {
			w.log.Info("parking abandoned: the connection was lost and the broker has requeued the task",
				zap.String("task_id", t.req.ID), zap.Error(err))
			t.end(verdictLeave)
			return
		}
		if w.held.Load() < int64(w.cfg.MaxHeld) {
			w.log.Warn("cannot park a task until its ETA; held in memory (unacked) and parking retried",
				zap.String("task_id", t.req.ID), zap.Time("eta", t.req.ETA), zap.Duration("retry_every", w.cfg.ParkRetry), zap.Error(err))
			t.mu.Lock()
			t.eta = t.req.ETA
			t.mu.Unlock()
			w.holdParking(ctx, t, h)
			return
		}
		w.log.Warn("cannot park a task until its ETA and too many are held; rejected with requeue",
			zap.String("task_id", t.req.ID), zap.Int("held", int(w.held.Load())), zap.Error(err))
		select {
		case <-time.After(time.Second): // not a tight redelivery loop while the broker refuses parks
		case <-ctx.Done():
		}
		t.settleLater(verdictRequeue)
	}()
}

func (w *Worker) parkOnce(t *task) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return w.broker.Park(ctx, t.d, t.req.ETA)
}

// holdParking holds a task that could not be parked: it runs at its ETA unless a later
// attempt to park it succeeds first (then it is acked and let go).
func (w *Worker) holdParking(ctx context.Context, t *task, h tasks.Handler) {
	w.etaWait.Add(1)
	w.held.Add(1)
	go func() {
		defer w.etaWait.Done()
		defer w.held.Add(-1)
		for {
			wait := time.Until(t.req.ETA)
			if wait <= w.cfg.ETAHold {
				w.hold(ctx, t, h, wait, true) // counted as held by hold from now on
				return
			}
			select {
			case <-time.After(min(w.cfg.ParkRetry, wait-w.cfg.ETAHold)):
			case <-ctx.Done():
				t.end(verdictLeave) // shutting down: unacked, the message goes back to the queue
				return
			}
			if time.Until(t.req.ETA) <= w.cfg.ETAHold {
				continue
			}
			err := w.parkOnce(t)
			if err == nil {
				t.settleLater(verdictAck)
				return
			}
			if t.d.Stale() {
				t.end(verdictLeave)
				return
			}
			w.log.Debug("parking retried and failed", zap.String("task_id", t.req.ID), zap.Error(err))
		}
	}()
}

// hold keeps the (unacked) message until wait has passed (its ETA, or its turn under
// a rate limit), then runs it. Held ETA tasks are bounded by MaxHeld; rate-limited
// ones by the broker's prefetch limit.
func (w *Worker) hold(ctx context.Context, t *task, h tasks.Handler, wait time.Duration, eta bool) {
	w.etaWait.Add(1)
	if eta {
		w.held.Add(1)
	}
	go func() {
		defer w.etaWait.Done()
		if eta {
			defer w.held.Add(-1)
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-timer.C:
			if reason := t.discarded(); reason != "" {
				t.complete(t.revoked(reason))
				return
			}
			if eta {
				if wait := w.rates.reserve(t.req.Task, time.Now()); wait > 0 {
					w.hold(ctx, t, h, wait, false)
					return
				}
			}
			t.run(ctx, h)
		case <-ctx.Done():
			// Shutting down: left unacked, the message goes back to the queue.
			t.end(verdictLeave)
		}
	}()
}

// refuse settles a message that cannot become a task, as Celery does (spec 1.5).
func (w *Worker) refuse(d *prefetch.Delivery, err error) {
	var de *protocol.DecodeError
	id, name := "", ""
	if errors.As(err, &de) {
		id, name = de.ID, de.Task
	}
	fields := []zap.Field{zap.String("task_id", id), zap.String("task", name),
		zap.String("content_type", d.ContentType), zap.String("queue", d.Queue), zap.Error(err)}
	switch {
	case errors.Is(err, protocol.ErrDecode):
		// Celery acks what it cannot decode: requeueing would loop for ever.
		w.log.Error("cannot decode message body; acknowledged and dropped (as Celery does)", fields...)
		d.Ack()
	case errors.Is(err, protocol.ErrContentDisallowed):
		w.log.Error("refused content type (not in accept_content); rejected without requeue", fields...)
		d.Reject(false)
	default:
		w.log.Error("invalid task message; rejected without requeue", fields...)
		d.Reject(false)
	}
	w.stats.Rejected.Add(1)
}
