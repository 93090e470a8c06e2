package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// IgnoreCurrent: ants starts a package-level default pool at init.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

func newPool(t *testing.T, size int) *Pool {
	t.Helper()
	p, err := New(size)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

func TestNewRejectsZeroSize(t *testing.T) {
	_, err := New(0)
	require.Error(t, err)
}

func TestRunsAtMostSizeJobsAtOnce(t *testing.T) {
	const size, jobs = 4, 40
	p := newPool(t, size)
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		err := p.Submit(context.Background(), Job{
			Run: func(context.Context) (any, error) {
				n := running.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
				running.Add(-1)
				return nil, nil
			},
			Done: func(Outcome) { wg.Done() },
		})
		require.NoError(t, err)
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int32(size))
	require.Equal(t, uint64(jobs), p.Stats().Completed)
}

func run(t *testing.T, p *Pool, job Job) Outcome {
	t.Helper()
	ch := make(chan Outcome, 1)
	job.Done = func(o Outcome) { ch <- o }
	require.NoError(t, p.Submit(context.Background(), job))
	return <-ch
}

func TestValueAndError(t *testing.T) {
	p := newPool(t, 1)
	o := run(t, p, Job{Run: func(context.Context) (any, error) { return 5, nil }})
	require.Equal(t, 5, o.Value)
	require.NoError(t, o.Err)
	boom := errors.New("boom")
	o = run(t, p, Job{Run: func(context.Context) (any, error) { return nil, boom }})
	require.ErrorIs(t, o.Err, boom)
}

func TestPanicBecomesError(t *testing.T) {
	p := newPool(t, 1)
	for _, hard := range []time.Duration{0, time.Second} {
		o := run(t, p, Job{HardLimit: hard, Run: func(context.Context) (any, error) { panic("kaput") }})
		var pe *PanicError
		require.ErrorAs(t, o.Err, &pe)
		require.Equal(t, "kaput", pe.Value)
		require.Contains(t, string(pe.Stack), "pool_test.go")
	}
}

func TestSoftLimitCancelsContextWithCause(t *testing.T) {
	p := newPool(t, 1)
	o := run(t, p, Job{SoftLimit: 10 * time.Millisecond, Run: func(ctx context.Context) (any, error) {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}})
	require.ErrorIs(t, o.Err, ErrSoftTimeLimitExceeded)
}

func TestHardLimitAbandonsAndFreesTheSlot(t *testing.T) {
	p := newPool(t, 1)
	release := make(chan struct{})
	o := run(t, p, Job{HardLimit: 20 * time.Millisecond, Run: func(context.Context) (any, error) {
		<-release // ignores its context on purpose
		return "late", nil
	}})
	require.ErrorIs(t, o.Err, ErrTimeLimitExceeded)
	require.Contains(t, o.Err.Error(), "0.02s")
	require.Equal(t, uint64(1), p.Stats().Abandoned)
	// The slot is free again although the handler still runs.
	o = run(t, p, Job{Run: func(context.Context) (any, error) { return "next", nil }})
	require.Equal(t, "next", o.Value)
	close(release)
}

func TestHardLimitCancelsContext(t *testing.T) {
	p := newPool(t, 1)
	o := run(t, p, Job{HardLimit: 10 * time.Millisecond, Run: func(ctx context.Context) (any, error) {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // returns, but after the limit
		return nil, ctx.Err()
	}})
	require.ErrorIs(t, o.Err, ErrTimeLimitExceeded)
}

func TestSubmitHonoursContextWhenFull(t *testing.T) {
	p := newPool(t, 1)
	release := make(chan struct{})
	done := make(chan struct{})
	require.NoError(t, p.Submit(context.Background(), Job{
		Run:  func(context.Context) (any, error) { <-release; return nil, nil },
		Done: func(Outcome) { close(done) },
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.Submit(ctx, Job{Run: func(context.Context) (any, error) { return nil, nil }, Done: func(Outcome) {}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	close(release)
	<-done
}

func TestStopWaitsForRunningJobs(t *testing.T) {
	p, err := New(2)
	require.NoError(t, err)
	var finished atomic.Bool
	require.NoError(t, p.Submit(context.Background(), Job{
		Run: func(context.Context) (any, error) {
			time.Sleep(30 * time.Millisecond)
			finished.Store(true)
			return nil, nil
		},
		Done: func(Outcome) {},
	}))
	require.NoError(t, p.Stop(context.Background()))
	require.True(t, finished.Load())
	require.ErrorIs(t, p.Submit(context.Background(), Job{}), ErrStopped)
}

func TestStopGivesUpAndCancels(t *testing.T) {
	p, err := New(1)
	require.NoError(t, err)
	done := make(chan Outcome, 1)
	require.NoError(t, p.Submit(context.Background(), Job{
		Run:  func(ctx context.Context) (any, error) { <-ctx.Done(); return nil, ctx.Err() },
		Done: func(o Outcome) { done <- o },
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Stop(ctx), context.DeadlineExceeded)
	err = (<-done).Err
	require.ErrorIs(t, err, ErrKilled, "an interruption, not a failure of the job")
}

// The pool ants starts at import ticks (clock and purge) for ever; New stops it so that an
// idle worker has no timer of ants' to wake for, and a -c up to keepIdleUpTo keeps its idle
// goroutines instead of running ants' purge clock.
func TestNewStopsAntsDefaultPool(t *testing.T) {
	p, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	if err := ants.Submit(func() {}); !errors.Is(err, ants.ErrPoolClosed) {
		t.Fatalf("ants' default pool still runs: Submit = %v", err)
	}
}

// An idle pool sleeps: ants' clock goroutine (two ticks a second, even with purging off)
// and its parked workers are gone, so an idle worker has nothing of the pool's to wake
// for; the next job wakes it.
func TestIdlePoolSleepsAndWakes(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	p := newPool(t, 4)
	run := func() {
		done := make(chan Outcome, 1)
		require.NoError(t, p.Submit(context.Background(), Job{
			Run:  func(context.Context) (any, error) { return 1, nil },
			Done: func(o Outcome) { done <- o },
		}))
		select {
		case o := <-done:
			require.Equal(t, 1, o.Value)
		case <-time.After(10 * time.Second):
			t.Fatal("job did not run")
		}
	}
	run()
	require.Eventually(t, p.Asleep, 10*time.Second, 10*time.Millisecond)
	// Nothing of the pool's runs while it sleeps (goleak retries while goroutines exit).
	require.NoError(t, goleak.Find(ignore))
	run()
	require.False(t, p.Asleep())
	require.Eventually(t, p.Asleep, 10*time.Second, 10*time.Millisecond, "sleeps again")
}

// Jobs submitted while the pool falls asleep all run: none is refused by a released
// ants pool.
func TestSubmitRacingSleepRuns(t *testing.T) {
	p := newPool(t, 2)
	var ran atomic.Int64
	for i := range 200 {
		if i%20 == 0 {
			p.sleep() // as the timer would, at any moment between jobs
		}
		done := make(chan struct{})
		go p.sleep()
		require.NoError(t, p.Submit(context.Background(), Job{
			Run:  func(context.Context) (any, error) { return nil, nil },
			Done: func(Outcome) { ran.Add(1); close(done) },
		}))
		<-done
	}
	require.Equal(t, int64(200), ran.Load())
}
