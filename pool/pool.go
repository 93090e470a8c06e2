// Package pool runs task handlers on a bounded set of goroutines, the counterpart of
// Celery's prefork, eventlet and gevent pools. A job gets a context that is cancelled at
// its soft time limit; at its hard time limit the pool stops waiting for it, reports
// ErrTimeLimitExceeded and frees the slot.
package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"
)

var (
	// ErrSoftTimeLimitExceeded is the cancellation cause a job's context carries once its
	// soft time limit has passed.
	ErrSoftTimeLimitExceeded = errors.New("soft time limit exceeded")
	// ErrTimeLimitExceeded is reported when a job outlives its hard time limit.
	ErrTimeLimitExceeded = errors.New("hard time limit exceeded")
	// ErrStopped is returned by Submit once Stop has been called.
	ErrStopped = errors.New("pool stopped")
	// ErrKilled is the error of a job that failed after Stop gave up waiting and
	// cancelled it: the job did not really fail, it was interrupted.
	ErrKilled = errors.New("job interrupted: the pool was stopped")
)

// TimeLimitError is the error of a job that outlived its hard time limit; it matches
// ErrTimeLimitExceeded with errors.Is.
type TimeLimitError struct{ Limit time.Duration }

func (e *TimeLimitError) Error() string {
	return fmt.Sprintf("hard time limit (%gs) exceeded", e.Limit.Seconds())
}

// Is reports whether target is ErrTimeLimitExceeded.
func (e *TimeLimitError) Is(target error) bool { return target == ErrTimeLimitExceeded }

// PanicError is the error of a job whose function panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Job is one unit of work.
type Job struct {
	// Run does the work. Its context is cancelled at the soft limit (cause
	// ErrSoftTimeLimitExceeded), at the hard limit, or when the pool is killed.
	Run func(ctx context.Context) (any, error)
	// SoftLimit and HardLimit are measured from the start of Run; zero means none.
	SoftLimit, HardLimit time.Duration
	// Done receives the outcome exactly once, on the pool's goroutine.
	Done func(Outcome)
}

// Outcome is what became of a job.
type Outcome struct {
	Value   any
	Err     error // a *PanicError, a *TimeLimitError, ErrKilled (wrapped), or Run's own error
	Started time.Time
	Runtime time.Duration
}

// Stats is a snapshot of the pool's counters.
type Stats struct {
	Capacity  int
	Running   int
	Completed uint64
	Abandoned uint64 // jobs left running past their hard limit
}

// Pool is a bounded goroutine pool. The zero value is not usable; call New.
type Pool struct {
	slots   chan struct{} // a token per running job: Submit blocks here, honouring its context
	workers *ants.Pool
	base    context.Context
	kill    context.CancelCauseFunc

	wg        sync.WaitGroup
	completed atomic.Uint64
	abandoned atomic.Uint64
	stopped   atomic.Bool

	// An idle pool sleeps: ants' pool keeps a clock goroutine that ticks twice a second
	// even with purging off, which would wake an idle worker (an HPC node's or a
	// fleet's) for nothing. After sleepAfter with no job, the ants pool is released (its
	// clock stops, its goroutines exit) and the next Submit reboots it.
	mu     sync.Mutex // orders sleeping and waking
	asleep atomic.Bool
	nap    *time.Timer // fires sleepAfter after the last job ended
}

// sleepAfter is how long a pool with no job waits before it sleeps.
const sleepAfter = time.Second

// releaseDefault stops the pool ants starts when it is imported: nothing here uses it, and
// its clock and purge tickers would wake an idle worker three times a second.
var releaseDefault sync.Once

// keepIdleUpTo is the largest pool whose idle goroutines are kept instead of purged: ants'
// purge needs a clock goroutine that ticks twice a second, while the goroutines of a
// 1,024-slot pool cost at most 8 MiB of idle stacks (the usual -c is far smaller).
const keepIdleUpTo = 1024

func expiry(size int) ants.Option {
	if size <= keepIdleUpTo {
		return ants.WithDisablePurge(true)
	}
	return ants.WithExpiryDuration(time.Minute)
}

// New returns a pool running at most size jobs at once.
func New(size int) (*Pool, error) {
	if size < 1 {
		return nil, fmt.Errorf("pool: size must be at least 1, got %d", size)
	}
	releaseDefault.Do(ants.Release)
	// The slots channel bounds concurrency, so ants never has to block or refuse.
	workers, err := ants.NewPool(size, expiry(size))
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	base, kill := context.WithCancelCause(context.Background())
	p := &Pool{slots: make(chan struct{}, size), workers: workers, base: base, kill: kill}
	p.nap = time.AfterFunc(sleepAfter, p.sleep)
	return p, nil
}

// sleep releases the ants pool if no job runs.
func (p *Pool) sleep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.slots) > 0 || p.asleep.Load() || p.stopped.Load() {
		return
	}
	p.workers.Release()
	p.asleep.Store(true)
}

// wake reboots a sleeping ants pool. Submit calls it holding a slot, so sleep cannot
// release the pool again before the job ends.
func (p *Pool) wake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asleep.Load() {
		p.workers.Reboot()
		p.asleep.Store(false)
	}
}

// Asleep reports whether the pool has released its goroutines for want of work.
func (p *Pool) Asleep() bool { return p.asleep.Load() }

// Submit waits for a free slot (or ctx) and starts the job. It returns an error only when
// the job was not started; then Done is not called.
func (p *Pool) Submit(ctx context.Context, job Job) error {
	if p.stopped.Load() {
		return ErrStopped
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.wg.Add(1)
	if p.asleep.Load() {
		p.wake()
	}
	err := p.workers.Submit(func() { p.run(job) })
	if errors.Is(err, ants.ErrPoolClosed) && !p.stopped.Load() {
		// sleep released the pool between the check above and Submit (it saw no slot
		// taken yet); it is done now, and cannot sleep again while this slot is held.
		p.wake()
		err = p.workers.Submit(func() { p.run(job) })
	}
	if err != nil {
		<-p.slots
		p.wg.Done()
		return fmt.Errorf("pool: %w", err)
	}
	return nil
}

func (p *Pool) run(job Job) {
	defer func() {
		<-p.slots
		if len(p.slots) == 0 {
			p.nap.Reset(sleepAfter) // the last job for now: sleep unless another comes
		}
		p.wg.Done()
	}()
	done := job.Done
	job.Done = func(o Outcome) {
		p.completed.Add(1) // counted before the callback, so Stats agree with what callers saw
		done(o)
	}
	ctx, cancel := p.jobContext(job)
	defer cancel()
	start := time.Now()
	if job.HardLimit <= 0 {
		v, err := call(ctx, job.Run)
		job.Done(Outcome{Value: v, Err: p.interrupted(err), Started: start, Runtime: time.Since(start)})
		return
	}
	// With a hard limit the function runs on its own goroutine so that this slot can be
	// given back when the limit passes; Go cannot kill a goroutine, so a handler that
	// ignores its context keeps running unseen (counted in Stats.Abandoned).
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := call(ctx, job.Run)
		ch <- result{v, err}
	}()
	timer := time.NewTimer(job.HardLimit)
	defer timer.Stop()
	select {
	case r := <-ch:
		job.Done(Outcome{Value: r.v, Err: p.interrupted(r.err), Started: start, Runtime: time.Since(start)})
	case <-timer.C:
		p.abandoned.Add(1)
		job.Done(Outcome{
			Err:     &TimeLimitError{Limit: job.HardLimit},
			Started: start, Runtime: time.Since(start),
		})
	}
}

// interrupted replaces the error of a job that failed once the pool was killed, so the
// caller can tell an interruption from a real failure (and, say, leave the message for
// redelivery instead of storing a FAILURE).
func (p *Pool) interrupted(err error) error {
	if err != nil && p.base.Err() != nil {
		return fmt.Errorf("%w (%v)", ErrKilled, err)
	}
	return err
}

func (p *Pool) jobContext(job Job) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(p.base)
	if job.SoftLimit <= 0 || (job.HardLimit > 0 && job.SoftLimit >= job.HardLimit) {
		return ctx, cancel
	}
	soft, cancelSoft := context.WithTimeoutCause(ctx, job.SoftLimit, ErrSoftTimeLimitExceeded)
	return soft, func() { cancelSoft(); cancel() }
}

// call runs fn, turning a panic into a *PanicError.
func call(ctx context.Context, fn func(context.Context) (any, error)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	return Stats{
		Capacity:  cap(p.slots),
		Running:   len(p.slots),
		Completed: p.completed.Load(),
		Abandoned: p.abandoned.Load(),
	}
}

// Stop refuses new jobs and waits until the running ones have reported, or ctx is done;
// then it cancels whatever still runs and releases the goroutines. It returns ctx.Err()
// when it had to give up waiting.
func (p *Pool) Stop(ctx context.Context) error {
	p.stopped.Store(true)
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.kill(ErrKilled)
	p.nap.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asleep.Load() {
		// Released already; reboot so ReleaseTimeout waits for its housekeeping to end.
		p.workers.Reboot()
		p.asleep.Store(false)
	}
	// ReleaseTimeout, unlike Release, also waits for ants' own housekeeping goroutines.
	_ = p.workers.ReleaseTimeout(3 * time.Second)
	return err
}
