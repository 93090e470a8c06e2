package canvas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
)

// ChordUnlockName is the name of Celery's built-in chord synchronization task.
const ChordUnlockName = "celery.chord_unlock"

// DefaultChordRetryInterval is Celery's result_chord_retry_interval default.
const DefaultChordRetryInterval = time.Second

// Result states (celery/states.py) that ChordUnlock tells apart.
const (
	StatePending = "PENDING"
	StateSuccess = "SUCCESS"
	StateFailure = "FAILURE"
	StateRevoked = "REVOKED"
)

// Result is a task's stored result as Celery's backend returns it.
type Result struct {
	Status string // PENDING when the task has no document
	// Result is the decoded result field: the return value for SUCCESS, the
	// exception map {"exc_type", "exc_message", "exc_module"} for FAILURE and
	// REVOKED.
	Result    any
	Traceback string
}

// ResultReader reads result documents. Ids without a document must be
// reported as StatePending or left out of the map.
type ResultReader interface {
	Results(ctx context.Context, ids []string) (map[string]Result, error)
}

// Publisher publishes one task message.
type Publisher interface {
	Publish(ctx context.Context, o Outgoing) error
}

// RetryAfter is returned by a handler that asks to be retried like Celery's
// Task.retry(countdown=...): the same message is re-sent with retries+1 and
// an ETA Countdown from now. Err is the cause (nil when the task is merely
// not ready); it is what Celery stores in the RETRY state.
type RetryAfter struct {
	Countdown time.Duration
	Err       error
}

func (e *RetryAfter) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("retry in %s: %v", e.Countdown, e.Err)
	}
	return fmt.Sprintf("retry in %s", e.Countdown)
}

func (e *RetryAfter) Unwrap() error { return e.Err }

// ChordError reports that a chord callback failed without running: a header
// task failed, or the callback could not be sent. The worker must store a
// FAILURE with Info() (and an empty children list) for CallbackID; the
// celery.chord_unlock task itself ends normally (it ignores its result).
type ChordError struct {
	CallbackID string
	Reason     string // the ChordError message
}

func (e *ChordError) Error() string {
	return fmt.Sprintf("chord callback %s: ChordError: %s", e.CallbackID, e.Reason)
}

// Info is the exception as the result backend stores it.
func (e *ChordError) Info() protocol.ExceptionInfo {
	return protocol.ExceptionInfo{Module: "celery.exceptions", Type: "ChordError", Args: []any{e.Reason}}
}

// ChordUnlock returns the handler of celery.chord_unlock as Celery 5.2.6's
// app/builtins.py unlock_chord runs it for backends without native chord
// support (MongoDB): args (group_id, callback), kwargs interval, max_retries
// and result (the header's result tuples, in header order).
//
//   - If any header task is not ready (not SUCCESS, FAILURE or REVOKED), or
//     the results cannot be read, it returns *RetryAfter with the interval
//     (interval kwarg, else defaultInterval); past max_retries it fails with
//     MaxRetriesExceededError (or the read error).
//   - If a header task failed, it publishes the callback's link_error
//     errbacks and returns *ChordError. Celery 5.2.6 on MongoDB never finds
//     the "culprit" (failed results are not cached), so the reason is the
//     repr of the first failed task's exception in header order, e.g.
//     "ValueError('bad')".
//   - Otherwise it publishes the callback with the list of header results
//     prepended to its args, parent_id and root_id from the unlock task.
//
// s provides routing, origin and ids for the published messages.
func ChordUnlock(results ResultReader, pub Publisher, s *Sender, defaultInterval time.Duration) tasks.Handler {
	return func(ctx context.Context, c *tasks.Call) (any, error) {
		u, err := parseUnlock(c)
		if err != nil {
			return nil, err
		}
		interval := defaultInterval
		if u.interval >= 0 {
			interval = u.interval
		}
		retries := 0
		if c.Request != nil {
			retries = c.Request.Retries
		}
		retry := func(cause error) error {
			if u.maxRetries >= 0 && retries+1 > u.maxRetries {
				if cause != nil {
					return cause
				}
				return tasks.NewException("celery.exceptions", "MaxRetriesExceededError",
					fmt.Sprintf("Can't retry %s[%s] args:%s kwargs:%s", ChordUnlockName, reqID(c),
						pyRepr(c.Args, true), pyRepr(c.Kwargs, false)))
			}
			return &RetryAfter{Countdown: interval, Err: cause}
		}
		var ids []string
		for _, n := range u.header {
			ids = n.leaves(ids)
		}
		states, err := results.Results(ctx, ids)
		if err != nil {
			return nil, retry(fmt.Errorf("canvas: chord %s: read results: %w", u.groupID, err))
		}
		for _, id := range ids {
			if !ready(states[id].Status) {
				return nil, retry(nil)
			}
		}
		values := make([]any, len(u.header))
		for i, n := range u.header {
			v, failed := n.join(states)
			if failed != nil {
				return nil, s.chordError(ctx, pub, c, u.callback, excRepr(failed.Result))
			}
			values[i] = v
		}
		a := s.applier(reqID(c), reqRoot(c))
		if _, err := a.apply(u.callback, []any{values}, nil, nil, true); err != nil {
			return nil, s.chordError(ctx, pub, c, u.callback, fmt.Sprintf("Callback error: %s", pyExcRepr("Exception", []any{err.Error()})))
		}
		for _, o := range a.out {
			if err := pub.Publish(ctx, o); err != nil {
				return nil, s.chordError(ctx, pub, c, u.callback, fmt.Sprintf("Callback error: %s", pyExcRepr("Exception", []any{err.Error()})))
			}
		}
		return nil, nil
	}
}

func reqID(c *tasks.Call) string {
	if c.Request == nil {
		return ""
	}
	return c.Request.ID
}

func reqRoot(c *tasks.Call) string {
	if c.Request == nil {
		return ""
	}
	return c.Request.RootID
}

// chordError is Backend.chord_error_from_stack: the callback's errbacks are
// sent with its id, then its FAILURE is left to the caller.
func (s *Sender) chordError(ctx context.Context, pub Publisher, c *tasks.Call, cb *Signature, reason string) error {
	ce := &ChordError{CallbackID: cb.ID(), Reason: reason}
	out, err := s.Errbacks(cb.ID(), "", maybeList(cb.Options["link_error"]))
	if err == nil {
		for _, o := range out {
			if err = pub.Publish(ctx, o); err != nil {
				break
			}
		}
	}
	if err != nil {
		return errors.Join(ce, err)
	}
	return ce
}

func ready(status string) bool {
	return status == StateSuccess || status == StateFailure || status == StateRevoked
}

type unlockArgs struct {
	groupID    string
	callback   *Signature
	interval   time.Duration // -1 = default
	maxRetries int           // -1 = unlimited
	header     []*resultNode
}

func parseUnlock(c *tasks.Call) (*unlockArgs, error) {
	names := []string{"group_id", "callback", "interval", "max_retries", "result"}
	vals := map[string]any{}
	if len(c.Args) > len(names) {
		return nil, tasks.Errorf("TypeError", "unlock_chord() takes from 3 to 6 positional arguments but %d were given", len(c.Args)+1)
	}
	for i, a := range c.Args {
		vals[names[i]] = a
	}
	for k, v := range c.Kwargs {
		if _, dup := vals[k]; dup {
			return nil, tasks.Errorf("TypeError", "unlock_chord() got multiple values for argument '%s'", k)
		}
		vals[k] = v
	}
	for _, k := range names[:2] {
		if _, ok := vals[k]; !ok {
			return nil, tasks.Errorf("TypeError", "unlock_chord() missing required argument: '%s'", k)
		}
	}
	u := &unlockArgs{interval: -1, maxRetries: -1}
	var ok bool
	if u.groupID, ok = vals["group_id"].(string); !ok {
		return nil, tasks.Errorf("TypeError", "group_id is %T, not a string", vals["group_id"])
	}
	cb, err := ParseSignature(vals["callback"])
	if err != nil {
		return nil, tasks.Errorf("TypeError", "%v", err)
	}
	u.callback = cb
	if v := vals["interval"]; v != nil {
		f, ok := toFloat(v)
		if !ok {
			return nil, tasks.Errorf("TypeError", "interval is %T, not a number", v)
		}
		u.interval = floatSeconds(f)
	}
	if v := vals["max_retries"]; v != nil {
		n, ok := toInt(v)
		if !ok {
			return nil, tasks.Errorf("TypeError", "max_retries is %T, not an int", v)
		}
		u.maxRetries = int(n)
	}
	list, ok := vals["result"].([]any)
	if !ok && vals["result"] != nil {
		return nil, tasks.Errorf("TypeError", "result is %T, not a list", vals["result"])
	}
	for _, t := range list {
		n, err := parseResultTuple(t)
		if err != nil {
			return nil, tasks.Errorf("ValueError", "%v", err)
		}
		u.header = append(u.header, n)
	}
	return u, nil
}

// resultNode is a result revived from its tuple (celery.result.result_from_tuple).
type resultNode struct {
	id    string
	group []*resultNode // non-nil for a GroupResult
}

func parseResultTuple(v any) (*resultNode, error) {
	t, ok := v.([]any)
	if !ok || len(t) != 2 {
		return nil, fmt.Errorf("canvas: result tuple %v is not [[id, parent], nodes]", v)
	}
	head, ok := t[0].([]any)
	if !ok || len(head) == 0 {
		return nil, fmt.Errorf("canvas: result tuple %v has no [id, parent]", v)
	}
	n := &resultNode{}
	if n.id, ok = head[0].(string); !ok {
		return nil, fmt.Errorf("canvas: result id %v is not a string", head[0])
	}
	if nodes, ok := t[1].([]any); ok {
		n.group = []*resultNode{}
		for _, x := range nodes {
			c, err := parseResultTuple(x)
			if err != nil {
				return nil, err
			}
			n.group = append(n.group, c)
		}
	}
	return n, nil
}

func (n *resultNode) leaves(dst []string) []string {
	if n.group == nil {
		return append(dst, n.id)
	}
	for _, c := range n.group {
		dst = c.leaves(dst)
	}
	return dst
}

// join is AsyncResult.get / GroupResult.join with propagate=True: the value,
// or the first failed result.
func (n *resultNode) join(states map[string]Result) (any, *Result) {
	if n.group == nil {
		r := states[n.id]
		if r.Status != StateSuccess {
			return nil, &r
		}
		return r.Result, nil
	}
	out := make([]any, len(n.group))
	for i, c := range n.group {
		v, failed := c.join(states)
		if failed != nil {
			return nil, failed
		}
		out[i] = v
	}
	return out, nil
}
