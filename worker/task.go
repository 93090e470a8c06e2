package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
)

// task is one delivery on its way through the worker.
type task struct {
	w   *Worker
	d   *prefetch.Delivery
	req *protocol.Request
}

func (t *task) limits() (hard, soft time.Duration) {
	cfg := t.w.cfg
	hard, soft = t.req.TimeLimit, t.req.SoftTimeLimit
	a := cfg.TaskLimits[t.req.Task]
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
	call := &tasks.Call{Args: t.req.Args, Kwargs: t.req.Kwargs, Request: t.req, Hostname: t.w.cfg.NodeName}
	err := t.w.pool.Submit(ctx, pool.Job{
		Run:       func(ctx context.Context) (any, error) { return h(ctx, call) },
		HardLimit: hard,
		SoftLimit: soft,
		Done:      t.finish,
	})
	if err != nil && ctx.Err() == nil {
		t.w.log.Error("cannot start task; left for redelivery", zap.String("task_id", t.req.ID), zap.Error(err))
	}
}

func (t *task) finish(o pool.Outcome) {
	if errors.Is(o.Err, pool.ErrKilled) {
		// Cut short by a cold shutdown: not the task's failure. Left unacked, the
		// message goes back to the queue when the connection closes.
		t.w.log.Warn("task interrupted by shutdown; left for redelivery", zap.String("task_id", t.req.ID))
		return
	}
	if o.Err == nil {
		t.succeeded(o)
		return
	}
	t.failed(o, exceptionOf(o.Err))
}

func (t *task) succeeded(o pool.Outcome) {
	t.w.stats.Succeeded.Add(1)
	payload, err := protocol.AppendJSON(nil, o.Value)
	if err != nil {
		t.failed(o, &tasks.Exception{Module: "kombu.exceptions", Type: "EncodeError",
			Args: []any{fmt.Sprintf("cannot encode the result as JSON: %v", err)}})
		return
	}
	if t.w.cfg.LogTasks {
		t.w.log.Info(fmt.Sprintf("Task %s[%s] succeeded in %.6fs: %s", t.req.Name(), t.req.ID,
			o.Runtime.Seconds(), truncate(string(payload), 1024)))
	}
	if t.w.results == nil || t.w.cfg.IgnoreResult || t.req.IgnoreResult {
		t.d.Ack()
		return
	}
	t.store(t.record(results.StatusSuccess, string(payload), ""), t.d.Ack)
}

func (t *task) failed(o pool.Outcome, exc *tasks.Exception) {
	t.w.stats.Failed.Add(1)
	tb := exc.Traceback
	if tb == "" {
		tb = traceback(t.req, exc, o.Err)
	}
	t.w.log.Error(fmt.Sprintf("Task %s[%s] raised unexpected: %s", t.req.Name(), t.req.ID, exc.Error()),
		zap.Duration("runtime", o.Runtime))
	// Celery stores errors unless the task itself ignores results (the per-message
	// ignore_result header does not suppress them).
	if t.w.results == nil || (t.w.cfg.IgnoreResult && !t.w.cfg.StoreErrorsEvenIfIgnored) {
		t.d.Ack()
		return
	}
	t.store(t.exceptionRecord(results.StatusFailure, exc, tb), t.d.Ack)
}

// unknown handles a task name nobody registered: FAILURE NotRegistered is stored, then
// the message is rejected without requeue, as Celery's on_unknown_task does.
func (t *task) unknown() {
	t.w.stats.Rejected.Add(1)
	t.w.log.Error(fmt.Sprintf("Received unregistered task of type %q.", t.req.Task),
		zap.String("task_id", t.req.ID), zap.String("hint", "register it, or map it with ccworker_task_aliases"))
	exc := &tasks.Exception{Module: "celery.exceptions", Type: "NotRegistered", Args: []any{t.req.Task}}
	reject := func() { t.d.Reject(false) }
	if t.w.results == nil {
		reject()
		return
	}
	t.store(t.exceptionRecord(results.StatusFailure, exc, traceback(t.req, exc, nil)), reject)
}

// revoked stores REVOKED (TaskRevokedError(reason)) and acks.
func (t *task) revoked(reason string) {
	t.w.stats.Revoked.Add(1)
	t.w.log.Info(fmt.Sprintf("Discarding revoked task: %s[%s] (%s)", t.req.Name(), t.req.ID, reason))
	if t.w.results == nil || (t.w.cfg.IgnoreResult && !t.w.cfg.StoreErrorsEvenIfIgnored) {
		t.d.Ack()
		return
	}
	exc := &tasks.Exception{Module: "celery.exceptions", Type: "TaskRevokedError", Args: []any{reason}}
	t.store(t.exceptionRecord(results.StatusRevoked, exc, ""), t.d.Ack)
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
		if err != nil {
			t.w.log.Error("result not stored; message left for redelivery",
				zap.String("task_id", rec.TaskID), zap.Error(err))
			return
		}
		settle()
	})
	if err != nil {
		t.w.log.Error("result not stored; message left for redelivery",
			zap.String("task_id", rec.TaskID), zap.Error(err))
	}
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
			Args: []any{tle.Limit.Seconds()}}
	case errors.Is(err, pool.ErrSoftTimeLimitExceeded):
		return &tasks.Exception{Module: "billiard.exceptions", Type: "SoftTimeLimitExceeded", Args: []any{}}
	case errors.As(err, &pe):
		return &tasks.Exception{Module: "builtins", Type: "RuntimeError", Args: []any{pe.Error()},
			Traceback: "Traceback (most recent call last):\n" + string(pe.Stack) + "RuntimeError: " + pe.Error()}
	default:
		return &tasks.Exception{Module: "builtins", Type: "Exception", Args: []any{err.Error()}}
	}
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
