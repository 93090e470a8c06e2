package tasks

import (
	"context"
	"fmt"
	"time"
)

// DefaultRetryDelay is Celery's default_retry_delay: the wait before a retry when
// neither Countdown nor ETA is given.
const DefaultRetryDelay = 180 * time.Second

// DefaultMaxRetries is Celery's Task.max_retries.
const DefaultMaxRetries = 3

// Retry is returned by a handler to run the task again later, as Celery's
// self.retry() does: the same task id is re-published with retries + 1 and an ETA,
// and RETRY is stored meanwhile. Past MaxRetries the task fails instead, with Exc or
// with celery.exceptions.MaxRetriesExceededError.
type Retry struct {
	// Countdown is the wait before the next run: zero (with a zero ETA) means
	// DefaultRetryDelay, as in Celery; a negative value means at once (countdown=0).
	Countdown time.Duration
	ETA       time.Time // or an absolute time
	// MaxRetries is how many retries are allowed: 0 means DefaultMaxRetries, a negative
	// value means no limit (Celery's max_retries=None).
	MaxRetries int
	Exc        *Exception // stored as the RETRY result; raised when retries run out
}

func (r *Retry) Error() string {
	when := r.Countdown.String()
	switch {
	case !r.ETA.IsZero():
		when = r.ETA.UTC().Format(time.RFC3339)
	case r.Countdown == 0:
		when = DefaultRetryDelay.String()
	case r.Countdown < 0:
		when = "0s"
	}
	if r.Exc != nil {
		return fmt.Sprintf("Retry in %s: %s", when, r.Exc.Error())
	}
	return "Retry in " + when
}

// Limit returns the effective maximum number of retries; ok is false when unlimited.
func (r *Retry) Limit() (n int, ok bool) {
	switch {
	case r.MaxRetries < 0:
		return 0, false
	case r.MaxRetries == 0:
		return DefaultMaxRetries, true
	}
	return r.MaxRetries, true
}

// When returns the time the retry should run, counted from now.
func (r *Retry) When(now time.Time) time.Time {
	if !r.ETA.IsZero() {
		return r.ETA
	}
	if r.Countdown > 0 {
		return now.Add(r.Countdown)
	}
	if r.Countdown < 0 {
		return now
	}
	return now.Add(DefaultRetryDelay)
}

// FlakyName is the built-in task that retries until its retries reach n.
const FlakyName = "ccworker.flaky"

// Flaky retries (every countdown seconds, 0 = at once) until the task's retry count is
// n, then returns n: a deterministic task for testing retries end to end.
func Flaky(_ context.Context, c *Call) (any, error) {
	n, countdown, err := flakyArgs(c)
	if err != nil {
		return nil, err
	}
	retries := 0
	if c.Request != nil {
		retries = c.Request.Retries
	}
	if int64(retries) >= n {
		return n, nil
	}
	wait := time.Duration(countdown * float64(time.Second))
	if wait <= 0 {
		wait = -1 // countdown=0: at once
	}
	return nil, &Retry{
		Countdown:  wait,
		MaxRetries: int(max(n, 1)),
		Exc:        NewException("builtins", "RuntimeError", fmt.Sprintf("flaky: attempt %d of %d", retries+1, n+1)),
	}
}

func flakyArgs(c *Call) (n int64, countdown float64, err error) {
	// flaky(n, countdown=0): countdown is optional, so bind by hand.
	args := *c
	if _, ok := args.Kwargs["countdown"]; !ok && len(args.Args) < 2 {
		kw := map[string]any{"countdown": int64(0)}
		for k, v := range args.Kwargs {
			kw[k] = v
		}
		args.Kwargs = kw
	}
	v, err := args.Bind("flaky", "n", "countdown")
	if err != nil {
		return 0, 0, err
	}
	n, ok := v[0].(int64)
	if !ok || n < 0 {
		return 0, 0, Errorf("TypeError", "flaky() n must be a non-negative int, not %s", pyType(v[0]))
	}
	countdown, ok = toFloat(v[1])
	if !ok {
		return 0, 0, Errorf("TypeError", "flaky() countdown must be a number, not %s", pyType(v[1]))
	}
	return n, countdown, nil
}
