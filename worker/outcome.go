package worker

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
)

// finish is the pool's report of a run: the outcome is classified into a completion
// (counted, logged, its events sent, its canvas published), then carried to the end of
// the task's life once.
func (t *task) finish(o pool.Outcome) {
	if !errors.Is(o.Err, pool.ErrKilled) {
		t.w.stats.Runtime.Observe(o.Runtime)
	}
	t.complete(t.classify(o))
}

// classify turns a run's outcome into what to store and what becomes of the message.
func (t *task) classify(o pool.Outcome) completion {
	var retry *tasks.Retry
	var retryAfter *canvas.RetryAfter
	var chordErr *canvas.ChordError
	var discarded discardedError
	switch {
	case errors.Is(o.Err, pool.ErrKilled):
		// Cut short by a cold shutdown: not the task's failure. Left unacked, the
		// message goes back to the queue when the connection closes.
		t.w.log.Warn("task interrupted by shutdown; left for redelivery", zap.String("task_id", t.req.ID))
		return completion{verdict: verdictLeave}
	case o.Err == nil:
		return t.succeeded(o)
	case errors.Is(o.Err, tasks.ErrIgnore):
		// Celery's Ignore (Task.replace): no result, no callbacks; the replacement has them.
		t.w.log.Info(fmt.Sprintf("Task %s[%s] ignored", t.req.Name(), t.req.ID))
		return completion{verdict: verdictAck}
	case errors.As(o.Err, &discarded):
		return t.revoked(discarded.reason)
	case errors.Is(o.Err, errTerminated):
		return t.revoked("terminated")
	case errors.As(o.Err, &retry):
		return t.retry(o, retry)
	case errors.As(o.Err, &retryAfter):
		r := &tasks.Retry{Countdown: retryAfter.Countdown, MaxRetries: -1}
		if retryAfter.Countdown <= 0 {
			r.Countdown = -1
		}
		return t.retry(o, r)
	case errors.As(o.Err, &chordErr):
		return t.chordFailed(chordErr)
	case errors.Is(o.Err, tasks.ErrWorkerLost) && t.w.rejectsOnWorkerLost(t.req.Task):
		t.w.log.Warn("the process running the task died; requeued (task_reject_on_worker_lost)",
			zap.String("task_id", t.req.ID), zap.Error(o.Err))
		if ev := t.w.cfg.Events; ev != nil {
			ev.TaskRejected(t.req.ID, true)
		}
		return completion{verdict: verdictRequeue}
	default:
		return t.failed(o, exceptionOf(o.Err))
	}
}

func (t *task) succeeded(o pool.Outcome) completion {
	t.w.stats.Succeeded.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Succeeded })
	payload, err := protocol.AppendJSON(nil, o.Value)
	if err != nil {
		return t.failed(o, &tasks.Exception{Module: "kombu.exceptions", Type: "EncodeError",
			Args: []any{fmt.Sprintf("cannot encode the result as JSON: %v", err)}})
	}
	// Celery sends callbacks and the next chain step before storing SUCCESS, so the
	// document can list them as children.
	var children []any
	if t.hasCanvas() {
		var err error
		children, err = t.dispatch(o.Value)
		if err != nil {
			return t.failed(o, undeliverable(t.req.ID, err), canvas.Unsent(t.req)...)
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
		return completion{verdict: verdictAck}
	}
	rec := t.record(results.StatusSuccess, string(payload), "")
	rec.Children = children
	return completion{rec: rec, verdict: verdictAck}
}

// chordFailed stores FAILURE ChordError for the chord's callback: chord_unlock found a
// failed header task. chord_unlock itself ends normally.
func (t *task) chordFailed(ce *canvas.ChordError) completion {
	t.w.log.Error(fmt.Sprintf("Chord callback %s failed: %s", ce.CallbackID, ce.Reason))
	if t.w.results == nil {
		return completion{verdict: verdictAck}
	}
	info := ce.Info()
	exc := &tasks.Exception{Module: info.Module, Type: info.Type, Args: info.Args}
	rec := t.exceptionRecord(results.StatusFailure, exc, traceback(t.req, exc, nil))
	rec.TaskID, rec.Name, rec.Args, rec.Kwargs, rec.ParentID, rec.GroupID = ce.CallbackID, "", nil, nil, "", ""
	return completion{rec: rec, verdict: verdictAck}
}

// failed stores FAILURE exc for the task, the remaining chain steps and unsent: the
// tasks its callbacks would have run, had they been sent.
func (t *task) failed(o pool.Outcome, exc *tasks.Exception, unsent ...string) completion {
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
	for _, id := range unsent {
		if !slices.Contains(chainIDs, id) {
			chainIDs = append(chainIDs, id)
		}
	}
	c := completion{verdict: verdictAck}
	if t.w.cfg.RejectOnFailure {
		c.verdict = verdictReject
	}
	// Celery stores errors unless the task itself ignores results (the per-message
	// ignore_result header does not suppress them).
	if !t.storesErrors() {
		return c
	}
	// The remaining chain steps fail with the same exception (Celery's mark_as_failure).
	for _, id := range chainIDs {
		rec := t.exceptionRecord(results.StatusFailure, exc, tb)
		rec.TaskID, rec.Name, rec.Args, rec.Kwargs = id, "", nil, nil
		c.extra = append(c.extra, rec)
	}
	c.rec = t.exceptionRecord(results.StatusFailure, exc, tb)
	return c
}

// retry re-publishes the task as Celery's Task.retry does: same id, retries + 1, an
// ETA, the same routing and priority. RETRY is stored first, then the new message is
// published and confirmed, then the original is acked; so a crash at any point leaves
// the task either still queued or re-queued, never gone.
func (t *task) retry(o pool.Outcome, r *tasks.Retry) completion {
	if limit, ok := r.Limit(); ok && t.req.Retries >= limit {
		exc := r.Exc
		if exc == nil {
			exc = &tasks.Exception{Module: "celery.exceptions", Type: "MaxRetriesExceededError", Args: []any{
				fmt.Sprintf("Can't retry %s[%s] args:%s kwargs:%s", t.req.Task, t.req.ID,
					reprArgs(t.req), reprKwargs(t.req))}}
		}
		return t.failed(o, exc)
	}
	when := r.When(time.Now())
	exchange, key, msg, err := t.retryMessage(when)
	if err != nil {
		return t.failed(o, &tasks.Exception{Module: "kombu.exceptions", Type: "EncodeError",
			Args: []any{fmt.Sprintf("cannot build the retry message: %v", err)}})
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
	c := completion{republish: &republish{exchange: exchange, key: key, msg: msg, when: when}}
	if !t.storesErrors() {
		return c
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
	c.rec = t.record(results.StatusRetry, payload, tb)
	return c
}

// unknown handles a task name nobody registered: FAILURE NotRegistered is stored, then
// the message is rejected without requeue, as Celery's on_unknown_task does.
func (t *task) unknown() completion {
	t.w.stats.Rejected.Add(1)
	t.count(func(c *TaskCounters) *atomic.Uint64 { return &c.Rejected })
	t.w.log.Error(fmt.Sprintf("Received unregistered task of type %q.", t.req.Task),
		zap.String("task_id", t.req.ID), zap.String("hint", "register it, or map it with ccworker_task_aliases"))
	exc := &tasks.Exception{Module: "celery.exceptions", Type: "NotRegistered", Args: []any{t.req.Task}}
	if ev := t.w.cfg.Events; ev != nil {
		ev.TaskFailed(t.req.ID, exc.Repr(), "")
		ev.TaskRejected(t.req.ID, false)
	}
	c := completion{verdict: verdictReject}
	if t.w.results != nil {
		c.rec = t.exceptionRecord(results.StatusFailure, exc, traceback(t.req, exc, nil))
	}
	return c
}

// revoked stores REVOKED (TaskRevokedError(reason)) and acks: a revoked, expired or
// terminated task.
func (t *task) revoked(reason string) completion {
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
	c := completion{verdict: verdictAck}
	if t.storesErrors() {
		exc := &tasks.Exception{Module: "celery.exceptions", Type: "TaskRevokedError", Args: []any{reason}}
		c.rec = t.exceptionRecord(results.StatusRevoked, exc, "")
	}
	return c
}
