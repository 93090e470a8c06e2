package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
)

// errTerminated is the cancellation cause of a task revoked with terminate=True.
var errTerminated = errors.New("task terminated by revoke")

// discardedError is returned by a job that found its task revoked or expired just
// before it started.
type discardedError struct{ reason string }

func (e discardedError) Error() string { return "task " + e.reason }

// task is one delivery on its way through the worker.
type task struct {
	w        *Worker
	d        *prefetch.Delivery
	req      *protocol.Request
	received time.Time

	settleOnce sync.Once
	acked      atomic.Bool
	counters   *TaskCounters // this task name's outcomes; nil until received

	mu      sync.Mutex
	eta     time.Time // set while held in memory for its ETA
	started time.Time
	cancel  context.CancelCauseFunc // set while running
}

type phase int

const (
	phaseReserved phase = iota
	phaseScheduled
	phaseActive
)

func (t *task) phase() phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !t.started.IsZero():
		return phaseActive
	case !t.eta.IsZero() && time.Now().Before(t.eta):
		return phaseScheduled
	}
	return phaseReserved
}

// settle acks or rejects the message once; later calls do nothing (early ack).
func (t *task) settle(f func()) {
	t.settleOnce.Do(func() {
		t.acked.Store(true)
		f()
		t.w.stats.AckLatency.Observe(time.Since(t.received))
		t.forget()
	})
}

// count adds one outcome to the task name's counters.
func (t *task) count(f func(*TaskCounters) *atomic.Uint64) {
	if t.counters != nil {
		f(t.counters).Add(1)
	}
}

// guardAck acks a message held too long (see Config.AckGuard); the task goes on and its
// result is still stored.
func (t *task) guardAck() {
	t.settleOnce.Do(func() {
		t.acked.Store(true)
		t.d.Ack()
		t.w.log.Warn(fmt.Sprintf("Task %s[%s] unacked for %s (--ack-guard): acked now, before RabbitMQ's "+
			"consumer_timeout closes the channel; it will not be redelivered if this worker dies",
			t.req.Name(), t.req.ID, t.w.cfg.AckGuard))
	})
}

// forget drops the task from the worker's in-flight list (settled, or left for
// redelivery).
func (t *task) forget() {
	t.w.mu.Lock()
	delete(t.w.inflight, t)
	t.w.mu.Unlock()
}

func (t *task) ack() { t.settle(t.d.Ack) }

func (t *task) reject(requeue bool) { t.settle(func() { t.d.Reject(requeue) }) }

// discarded says why the task must not run: "revoked", "expired" or "" (run it).
func (t *task) discarded() string {
	if t.w.cfg.Revoked.Contains(t.req.ID) {
		return "revoked"
	}
	if !t.req.Expires.IsZero() && time.Now().After(t.req.Expires) {
		return "expired"
	}
	return ""
}

// ready is tasks.Call.Ready: a handler that waited checks again before it starts.
func (t *task) ready() error {
	if reason := t.discarded(); reason != "" {
		return discardedError{reason}
	}
	return nil
}

func (t *task) terminate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cancel != nil {
		t.cancel(errTerminated)
	}
}

func (t *task) limits() (hard, soft time.Duration) {
	cfg := t.w.cfg
	hard, soft = t.req.TimeLimit, t.req.SoftTimeLimit
	a := t.w.taskLimits(t.req.Task)
	if hard == 0 {
		hard = a.Hard
	}
	if soft == 0 {
		soft = a.Soft
	}
	if hard == 0 {
		hard = cfg.TimeLimit
	}
	if soft == 0 {
		soft = cfg.SoftTimeLimit
	}
	return hard, soft
}

// run waits for a pool slot and runs the task. If the worker stops consuming before a
// slot frees up, the message stays unacked and goes back to the queue.
func (t *task) run(ctx context.Context, h tasks.Handler) {
	hard, soft := t.limits()
	call := &tasks.Call{Args: t.req.Args, Kwargs: t.req.Kwargs, Request: t.req, Hostname: t.w.cfg.NodeName,
		Delivery: tasks.Delivery{Exchange: t.d.Exchange, RoutingKey: t.d.RoutingKey, Redelivered: t.d.Redelivered},
		Ready:    t.ready}
	err := t.w.pool.Submit(ctx, pool.Job{
		Run:       func(ctx context.Context) (any, error) { return t.execute(ctx, h, call) },
		HardLimit: hard,
		SoftLimit: soft,
		Done:      t.finish,
	})
	if err != nil && ctx.Err() == nil {
		t.w.log.Error("cannot start task; left for redelivery", zap.String("task_id", t.req.ID), zap.Error(err))
	}
}

// execute runs on the pool: the last checks before the handler, then the handler.
func (t *task) execute(ctx context.Context, h tasks.Handler, call *tasks.Call) (any, error) {
	if reason := t.discarded(); reason != "" {
		return nil, discardedError{reason}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t.mu.Lock()
	t.started, t.cancel = time.Now(), cancel
	t.mu.Unlock()
	t.w.mu.Lock()
	t.w.running[t.req.ID] = t
	t.w.mu.Unlock()
	defer func() {
		t.w.mu.Lock()
		if t.w.running[t.req.ID] == t {
			delete(t.w.running, t.req.ID)
		}
		t.w.mu.Unlock()
		t.mu.Lock()
		t.cancel = nil
		t.mu.Unlock()
	}()
	if t.w.cfg.EarlyAck {
		t.settleOnce.Do(func() { t.acked.Store(true); t.d.Ack() }) // Celery's default: acked when the pool accepts the task
	}
	if ev := t.w.cfg.Events; ev != nil {
		ev.TaskStarted(t.req.ID)
	}
	if t.w.cfg.TrackStarted && t.storesResults() {
		payload := fmt.Sprintf(`{"pid": %d, "hostname": %q}`, os.Getpid(), t.w.cfg.NodeName)
		if err := t.w.results.Write(ctx, t.record(results.StatusStarted, payload, ""), func(error) {}); err != nil {
			t.w.log.Warn("STARTED not stored", zap.String("task_id", t.req.ID), zap.Error(err))
		}
	}
	v, err := h(ctx, call)
	if err != nil && errors.Is(context.Cause(ctx), errTerminated) {
		return nil, errTerminated
	}
	return v, err
}

func (t *task) storesResults() bool {
	return t.w.results != nil && !t.w.cfg.IgnoreResult && !t.req.IgnoreResult &&
		!t.w.reg.Options(t.req.Task).IgnoreResult
}

func (t *task) finish(o pool.Outcome) {
	if !errors.Is(o.Err, pool.ErrKilled) {
		t.w.stats.Runtime.Observe(o.Runtime)
	}
	var retry *tasks.Retry
	var retryAfter *canvas.RetryAfter
	var chordErr *canvas.ChordError
	var discarded discardedError
	switch {
	case errors.Is(o.Err, pool.ErrKilled):
		// Cut short by a cold shutdown: not the task's failure. Left unacked, the
		// message goes back to the queue when the connection closes.
		t.w.log.Warn("task interrupted by shutdown; left for redelivery", zap.String("task_id", t.req.ID))
		t.forget()
	case o.Err == nil:
		t.succeeded(o)
	case errors.Is(o.Err, tasks.ErrIgnore):
		// Celery's Ignore (Task.replace): no result, no callbacks; the replacement has them.
		t.w.log.Info(fmt.Sprintf("Task %s[%s] ignored", t.req.Name(), t.req.ID))
		t.ack()
	case errors.As(o.Err, &discarded):
		t.revoked(discarded.reason)
	case errors.Is(o.Err, errTerminated):
		t.revoked("terminated")
	case errors.As(o.Err, &retry):
		t.retry(o, retry)
	case errors.As(o.Err, &retryAfter):
		r := &tasks.Retry{Countdown: retryAfter.Countdown, MaxRetries: -1}
		if retryAfter.Countdown <= 0 {
			r.Countdown = -1
		}
		t.retry(o, r)
	case errors.As(o.Err, &chordErr):
		t.chordFailed(o, chordErr)
	case errors.Is(o.Err, tasks.ErrWorkerLost) && t.w.cfg.RejectOnWorkerLost:
		t.w.log.Warn("the process running the task died; requeued (task_reject_on_worker_lost)",
			zap.String("task_id", t.req.ID), zap.Error(o.Err))
		if ev := t.w.cfg.Events; ev != nil {
			ev.TaskRejected(t.req.ID, true)
		}
		t.reject(true)
	default:
		t.failed(o, exceptionOf(o.Err))
	}
}

func (t *task) succeeded(o pool.Outcome) {
	t.w.stats.Succeeded.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Succeeded })
	payload, err := protocol.AppendJSON(nil, o.Value)
	if err != nil {
		t.failed(o, &tasks.Exception{Module: "kombu.exceptions", Type: "EncodeError",
			Args: []any{fmt.Sprintf("cannot encode the result as JSON: %v", err)}})
		return
	}
	// Celery sends callbacks and the next chain step before storing SUCCESS, so the
	// document can list them as children.
	var children []any
	if t.hasCanvas() {
		var err error
		children, err = t.dispatch(o.Value)
		if err != nil {
			t.failed(o, &tasks.Exception{Module: "celery.exceptions", Type: "ChordError",
				Args: []any{fmt.Sprintf("cannot send the callbacks of %s: %v", t.req.ID, err)}})
			return
		}
	}
	if t.w.cfg.LogTasks {
		t.w.log.Info(fmt.Sprintf("Task %s[%s] succeeded in %.6fs: %s", t.req.Name(), t.req.ID,
			o.Runtime.Seconds(), truncate(string(payload), 1024)))
	}
	if ev := t.w.cfg.Events; ev != nil {
		ev.TaskSucceeded(t.req.ID, truncate(string(payload), 1024), o.Runtime)
	}
	if !t.storesResults() {
		t.ack()
		return
	}
	rec := t.record(results.StatusSuccess, string(payload), "")
	rec.Children = children
	t.store(rec, t.ack)
}

func (t *task) hasCanvas() bool {
	return len(t.req.Callbacks) > 0 || len(t.req.Chain) > 0
}

// dispatch publishes the callbacks and the next chain step, and returns the children
// tuples for the result document.
func (t *task) dispatch(retval any) ([]any, error) {
	if t.w.cfg.Canvas == nil {
		t.w.log.Warn("task has callbacks or a chain, but this worker sends none", zap.String("task_id", t.req.ID))
		return nil, nil
	}
	d, err := t.w.cfg.Canvas.OnSuccess(t.req, retval)
	if err != nil {
		return nil, err
	}
	if err := t.w.publishAll(d.Messages); err != nil {
		return nil, err
	}
	return d.Children, nil
}

// chordFailed stores FAILURE ChordError for the chord's callback: chord_unlock found a
// failed header task. chord_unlock itself ends normally.
func (t *task) chordFailed(o pool.Outcome, ce *canvas.ChordError) {
	t.w.log.Error(fmt.Sprintf("Chord callback %s failed: %s", ce.CallbackID, ce.Reason))
	if t.w.results == nil {
		t.ack()
		return
	}
	info := ce.Info()
	exc := &tasks.Exception{Module: info.Module, Type: info.Type, Args: info.Args}
	rec := t.exceptionRecord(results.StatusFailure, exc, traceback(t.req, exc, nil))
	rec.TaskID, rec.Name, rec.Args, rec.Kwargs, rec.ParentID, rec.GroupID = ce.CallbackID, "", nil, nil, "", ""
	t.store(rec, t.ack)
}

func (t *task) failed(o pool.Outcome, exc *tasks.Exception) {
	t.w.stats.Failed.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Failed })
	tb := exc.Traceback
	if tb == "" {
		tb = traceback(t.req, exc, o.Err)
	}
	t.w.log.Error(fmt.Sprintf("Task %s[%s] raised unexpected: %s", t.req.Name(), t.req.ID, exc.Error()),
		zap.Duration("runtime", o.Runtime))
	if ev := t.w.cfg.Events; ev != nil {
		ev.TaskFailed(t.req.ID, exc.Repr(), tb)
	}
	var chainIDs []string
	if len(t.req.Chain) > 0 || len(t.req.Errbacks) > 0 {
		chainIDs = t.failCanvas()
	}
	settle := t.ack
	if t.w.cfg.RejectOnFailure {
		settle = func() { t.reject(false) }
	}
	// Celery stores errors unless the task itself ignores results (the per-message
	// ignore_result header does not suppress them).
	if !t.storesErrors() {
		settle()
		return
	}
	// The remaining chain steps fail with the same exception (Celery's mark_as_failure).
	for _, id := range chainIDs {
		rec := t.exceptionRecord(results.StatusFailure, exc, tb)
		rec.TaskID, rec.Name, rec.Args, rec.Kwargs = id, "", nil, nil
		t.store(rec, func() {})
	}
	t.store(t.exceptionRecord(results.StatusFailure, exc, tb), settle)
}

// failCanvas sends the errbacks and returns the ids of the chain steps that will never
// run.
func (t *task) failCanvas() []string {
	if t.w.cfg.Canvas == nil {
		return nil
	}
	f, err := t.w.cfg.Canvas.OnFailure(t.req)
	if err != nil {
		t.w.log.Error("cannot build the errbacks", zap.String("task_id", t.req.ID), zap.Error(err))
		return nil
	}
	if err := t.w.publishAll(f.Errbacks); err != nil {
		t.w.log.Error("cannot send the errbacks", zap.String("task_id", t.req.ID), zap.Error(err))
	}
	return f.ChainIDs
}

func (t *task) storesErrors() bool {
	ignored := t.w.cfg.IgnoreResult || t.w.reg.Options(t.req.Task).IgnoreResult
	return t.w.results != nil && (!ignored || t.w.cfg.StoreErrorsEvenIfIgnored)
}

// retry re-publishes the task as Celery's Task.retry does: same id, retries + 1, an
// ETA, the same routing and priority. RETRY is stored first, then the new message is
// published and confirmed, then the original is acked; so a crash at any point leaves
// the task either still queued or re-queued, never gone.
func (t *task) retry(o pool.Outcome, r *tasks.Retry) {
	if limit, ok := r.Limit(); ok && t.req.Retries >= limit {
		exc := r.Exc
		if exc == nil {
			exc = &tasks.Exception{Module: "celery.exceptions", Type: "MaxRetriesExceededError", Args: []any{
				fmt.Sprintf("Can't retry %s[%s] args:%s kwargs:%s", t.req.Task, t.req.ID,
					reprArgs(t.req), reprKwargs(t.req))}}
		}
		t.failed(o, exc)
		return
	}
	when := r.When(time.Now())
	exchange, key, msg, err := t.retryMessage(when)
	if err != nil {
		t.failed(o, &tasks.Exception{Module: "kombu.exceptions", Type: "EncodeError",
			Args: []any{fmt.Sprintf("cannot build the retry message: %v", err)}})
		return
	}
	t.w.stats.Retried.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Retried })
	t.w.log.Info(fmt.Sprintf("Task %s[%s] retry: %s", t.req.Name(), t.req.ID, r.Error()))
	if ev := t.w.cfg.Events; ev != nil {
		repr := "Retry(" + r.Error() + ")"
		if r.Exc != nil {
			repr = r.Exc.Repr()
		}
		ev.TaskRetried(t.req.ID, repr, "")
	}
	publish := func() {
		t.w.bg.Add(1)
		go func() {
			defer t.w.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := t.publishRetry(ctx, exchange, key, msg, when); err != nil {
				// The retry is not queued: run the task again from the original.
				// A broker fault fails every retry in flight: one line per fault.
				fields := []zap.Field{zap.String("task_id", t.req.ID), zap.Error(err)}
				if ok, held := t.w.retryPublishLog.allow(time.Now()); ok {
					t.w.log.Error("cannot publish the retry; the task goes back to its queue",
						append(fields, zap.Int("more_since_last_line", held))...)
				} else {
					t.w.log.Debug("cannot publish the retry; the task goes back to its queue", fields...)
				}
				t.reject(true)
				return
			}
			t.ack()
		}()
	}
	if !t.storesErrors() {
		publish()
		return
	}
	payload, tb := "null", traceback(t.req, &tasks.Exception{Module: "celery.exceptions", Type: "Retry",
		Args: []any{r.Error()}}, nil)
	if r.Exc != nil {
		p, err := r.Exc.Info().AppendJSON(nil)
		if err == nil {
			payload = string(p)
		}
		tb = traceback(t.req, r.Exc, nil)
	}
	t.store(t.record(results.StatusRetry, payload, tb), publish)
}

// delayedPublisher is the optional side of a Broker that sends a message through native
// delayed delivery (prefetch.Consumer.PublishDelayed).
type delayedPublisher interface {
	PublishDelayed(ctx context.Context, queue string, msg amqp.Publishing, until time.Time) error
}

// publishRetry sends the retry. One due later than the ETA hold goes through native
// delayed delivery when the deployment uses it, as Celery 5.5+ sends a countdown: no
// worker, Celery's or ccworker, then holds it unacked for long. Otherwise it goes to its
// queue with its ETA, and the worker that receives it holds or parks it.
func (t *task) publishRetry(ctx context.Context, exchange, key string, msg amqp.Publishing, when time.Time) error {
	if dp, ok := t.w.broker.(delayedPublisher); ok && time.Until(when) > t.w.cfg.ETAHold {
		err := dp.PublishDelayed(ctx, t.d.Queue, msg, when)
		if !errors.Is(err, prefetch.ErrNotNative) {
			return err
		}
	}
	return t.w.broker.Publish(ctx, exchange, key, msg)
}

// retryMessage builds the re-published message. A protocol 2 message keeps its body
// and headers, with retries and eta changed; a protocol 1 message is re-encoded as v2.
func (t *task) retryMessage(when time.Time) (exchange, key string, msg amqp.Publishing, err error) {
	exchange, key = t.d.Exchange, t.d.RoutingKey
	if prefetch.IsDelayed(t.d) {
		// Its routing key carries the countdown bits: straight back to its queue.
		exchange, key = "", t.d.Queue
	}
	eta := when.UTC().Format("2006-01-02T15:04:05.000000-07:00")
	if t.req.Protocol == 2 && t.d.Headers["task"] != nil {
		msg = prefetch.PublishingOf(t.d)
		msg.Headers["retries"] = int32(t.req.Retries + 1)
		msg.Headers["eta"] = eta
		msg.Headers["origin"] = t.w.cfg.NodeName
		return exchange, key, msg, nil
	}
	next := *t.req
	next.Protocol, next.Retries, next.ETA, next.Origin = 2, t.req.Retries+1, when.UTC(), t.w.cfg.NodeName
	m, err := protocol.EncodeV2(&next)
	if err != nil {
		return "", "", amqp.Publishing{}, err
	}
	return exchange, key, amqp.Publishing{
		Headers: prefetch.Table(m.Headers), ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: t.d.Priority, CorrelationId: t.req.ID, Body: m.Body,
	}, nil
}

// unknown handles a task name nobody registered: FAILURE NotRegistered is stored, then
// the message is rejected without requeue, as Celery's on_unknown_task does.
func (t *task) unknown() {
	t.w.stats.Rejected.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Rejected })
	t.w.log.Error(fmt.Sprintf("Received unregistered task of type %q.", t.req.Task),
		zap.String("task_id", t.req.ID), zap.String("hint", "register it, or map it with ccworker_task_aliases"))
	exc := &tasks.Exception{Module: "celery.exceptions", Type: "NotRegistered", Args: []any{t.req.Task}}
	if ev := t.w.cfg.Events; ev != nil {
		ev.TaskFailed(t.req.ID, exc.Repr(), "")
		ev.TaskRejected(t.req.ID, false)
	}
	reject := func() { t.reject(false) }
	if t.w.results == nil {
		reject()
		return
	}
	t.store(t.exceptionRecord(results.StatusFailure, exc, traceback(t.req, exc, nil)), reject)
}

// revoked stores REVOKED (TaskRevokedError(reason)) and acks.
func (t *task) revoked(reason string) {
	t.w.stats.Revoked.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Revoked })
	t.w.log.Info(fmt.Sprintf("Discarding revoked task: %s[%s] (%s)", t.req.Name(), t.req.ID, reason))
	if ev := t.w.cfg.Events; ev != nil {
		signum := 0
		if reason == "terminated" {
			signum = 15
		}
		ev.TaskRevoked(t.req.ID, reason == "terminated", signum, reason == "expired")
	}
	if !t.storesErrors() {
		t.ack()
		return
	}
	exc := &tasks.Exception{Module: "celery.exceptions", Type: "TaskRevokedError", Args: []any{reason}}
	t.store(t.exceptionRecord(results.StatusRevoked, exc, ""), t.ack)
}

func (t *task) exceptionRecord(status string, exc *tasks.Exception, tb string) *results.Record {
	payload, err := exc.Info().AppendJSON(nil)
	if err != nil {
		// An argument that is not JSON: keep its text, as Celery's ensure_serializable does.
		args := make([]any, len(exc.Args))
		for i, a := range exc.Args {
			args[i] = fmt.Sprint(a)
		}
		payload, _ = protocol.ExceptionInfo{Type: exc.Type, Module: exc.Module, Args: args}.AppendJSON(nil)
	}
	return t.record(status, string(payload), tb)
}

func (t *task) record(status, payload, tb string) *results.Record {
	return &results.Record{
		TaskID: t.req.ID, Status: status, Result: payload, Traceback: tb, DateDone: time.Now(),
		GroupID: t.req.GroupID, ParentID: t.req.ParentID,
		Name: t.req.Task, Args: t.req.Args, Kwargs: t.req.Kwargs, Worker: t.w.cfg.NodeName,
		Retry: t.req.Retries, Queue: t.d.RoutingKey,
	}
}

// store writes rec and settles the message once the write is durable. If it never
// becomes durable the message is left unsettled, so the broker gives it to a worker
// again when this connection closes.
func (t *task) store(rec *results.Record, settle func()) {
	err := t.w.results.Write(context.Background(), rec, func(err error) {
		switch {
		case errors.Is(err, results.ErrUnstorable):
			// No form of it will ever be stored: redelivering it would only stop
			// the next worker too (the writer has logged why).
			settle()
		case err != nil:
			t.w.log.Error("result not stored; message left for redelivery",
				zap.String("task_id", rec.TaskID), zap.Error(err))
		default:
			settle()
		}
	})
	if err != nil {
		t.w.log.Error("result not stored; message left for redelivery",
			zap.String("task_id", rec.TaskID), zap.Error(err))
		t.forget()
	}
}

// limitArg is the hard limit as billiard's TimeLimitExceeded carries it: the number the
// limit was given as, so 1 for an integral limit (Celery stores [1], not [1.0]).
func limitArg(d time.Duration) any {
	if d%time.Second == 0 {
		return int64(d / time.Second)
	}
	return d.Seconds()
}

// exceptionOf maps a handler's or the pool's error to the Python exception clients see.
func exceptionOf(err error) *tasks.Exception {
	var exc *tasks.Exception
	var pe *pool.PanicError
	var tle *pool.TimeLimitError
	switch {
	case errors.As(err, &exc):
		return exc
	case errors.As(err, &tle):
		return &tasks.Exception{Module: "billiard.exceptions", Type: "TimeLimitExceeded",
			Args: []any{limitArg(tle.Limit)}}
	case errors.Is(err, pool.ErrSoftTimeLimitExceeded):
		return &tasks.Exception{Module: "billiard.exceptions", Type: "SoftTimeLimitExceeded", Args: []any{}}
	case errors.As(err, &pe):
		return &tasks.Exception{Module: "builtins", Type: "RuntimeError", Args: []any{pe.Error()},
			Traceback: "Traceback (most recent call last):\n" + string(pe.Stack) + "RuntimeError: " + pe.Error()}
	default:
		return &tasks.Exception{Module: "builtins", Type: "Exception", Args: []any{err.Error()}}
	}
}

func reprArgs(r *protocol.Request) string {
	if r.ArgsRepr != "" {
		return r.ArgsRepr
	}
	return fmt.Sprint(r.Args)
}

func reprKwargs(r *protocol.Request) string {
	if r.KwargsRepr != "" {
		return r.KwargsRepr
	}
	return fmt.Sprint(r.Kwargs)
}

// traceback writes a Python-style traceback whose last line is "Type: message", which
// is what tools reading Celery tracebacks look at.
func traceback(req *protocol.Request, exc *tasks.Exception, err error) string {
	var b strings.Builder
	b.WriteString("Traceback (most recent call last):\n")
	fmt.Fprintf(&b, "  ccworker task %s[%s] on pid %d\n", req.Task, req.ID, os.Getpid())
	if err != nil && err.Error() != exc.Error() {
		fmt.Fprintf(&b, "  Go error: %v\n", err)
	}
	b.WriteString(exc.Type)
	if len(exc.Args) > 0 {
		b.WriteString(": ")
		parts := make([]string, len(exc.Args))
		for i, a := range exc.Args {
			parts[i] = fmt.Sprint(a)
		}
		b.WriteString(strings.Join(parts, ", "))
	}
	b.WriteByte('\n')
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
