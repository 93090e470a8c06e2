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

	life     life          // received → done → stored → forgotten (settle.go)
	counters *TaskCounters // this task name's outcomes; nil until received

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

// count adds one outcome to the task name's counters.
func (t *task) count(f func(*TaskCounters) *atomic.Uint64) {
	if t.counters != nil {
		f(t.counters).Add(1)
	}
}

// guardAck acks a message held too long (see Config.AckGuard); the task goes on and its
// result is still stored.
func (t *task) guardAck() {
	if t.ackEarly() {
		t.w.log.Warn(fmt.Sprintf("Task %s[%s] unacked for %s (--ack-guard): acked now, before RabbitMQ's "+
			"consumer_timeout closes the channel; it will not be redelivered if this worker dies",
			t.req.Name(), t.req.ID, t.w.cfg.AckGuard))
	}
}

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
	if err != nil {
		if ctx.Err() == nil {
			t.w.log.Error("cannot start task; left for redelivery", zap.String("task_id", t.req.ID), zap.Error(err))
		}
		t.end(verdictLeave)
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
	if t.w.acksEarly(t.req.Task) {
		t.ackEarly() // Celery's default: acked when the pool accepts the task
	}
	if ev := t.w.cfg.Events; ev != nil {
		ev.TaskStarted(t.req.ID)
	}
	if t.w.tracksStarted(t.req.Task) && t.storesResults() {
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
