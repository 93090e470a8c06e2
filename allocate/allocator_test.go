package allocate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

type fakeBroker struct {
	mu    sync.Mutex
	ready int
	cons  int
	err   error
}

func (b *fakeBroker) Queues(context.Context) ([]QueueState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return []QueueState{{Name: "q", Ready: b.ready, Consumers: b.cons}}, b.err
}

// fakeSlurm keeps jobs like slurmctld does: submitted jobs pend until started.
type fakeSlurm struct {
	mu      sync.Mutex
	next    int
	jobs    map[string]string
	fail    error
	hidden  bool // squeue does not list new jobs yet
	calls   int
	submits int
	now     func() time.Time
}

func newFakeSlurm(now func() time.Time) *fakeSlurm {
	return &fakeSlurm{next: 100, jobs: map[string]string{}, now: now}
}

func (s *fakeSlurm) Jobs(context.Context) ([]Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Job
	for id, st := range s.jobs {
		if s.hidden {
			continue
		}
		out = append(out, Job{ID: id, State: st, Submitted: s.now().Add(-time.Hour)})
	}
	return out, nil
}

func (s *fakeSlurm) Submit(_ context.Context, n int) (Submitted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return Submitted{}, s.fail
	}
	s.next++
	for i := range n {
		s.jobs[fmt.Sprintf("%d_%d", s.next, i)] = "PENDING"
	}
	s.submits += n
	return Submitted{IDs: []string{fmt.Sprint(s.next)}, Jobs: n}, nil
}

func (s *fakeSlurm) Command(n int) []string { return []string{"sbatch", fmt.Sprint(n)} }

func (s *fakeSlurm) set(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.jobs {
		s.jobs[id] = state
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: t0} }
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

func newTestAllocator(t *testing.T, b Broker, s Scheduler, c *clock, log *zap.Logger) *Allocator {
	t.Helper()
	a, err := New(b, s, Config{Limits: baseLimits(), Logger: log, Now: c.now})
	require.NoError(t, err)
	return a
}

func TestStepSubmitsUpToTheLimitThenNothing(t *testing.T) {
	c := newClock()
	b := &fakeBroker{ready: 2000}
	s := newFakeSlurm(c.now)
	log, logs := observed()
	a := newTestAllocator(t, b, s, c, log)
	for range 10 {
		a.Step(context.Background())
		c.add(11 * time.Second)
	}
	assert.Equal(t, 4, s.submits, "jobs submitted")
	assert.Equal(t, 1, s.calls, "one sbatch for an array of 4")
	st := a.Status()
	assert.Equal(t, 4, st.Pending)
	assert.EqualValues(t, 4, st.Submitted)
	s.set("RUNNING")
	b.cons = 4
	a.Step(context.Background())
	assert.Contains(t, logs.FilterMessageSnippet("first job running").All()[0].Message, "after the backlog was seen")
	b.ready = 0
	c.add(time.Second)
	a.Step(context.Background()) // queue dry, workers idle until --max-idle
	b.cons = 0
	s.set("COMPLETED")
	c.add(time.Second)
	a.Step(context.Background())
	c.add(time.Second)
	a.Step(context.Background())
	assert.Equal(t, 4, s.submits, "nothing more once the queue is dry")
	assert.Equal(t, 1, logs.FilterMessageSnippet("all allocations released").Len())
}

// A restarted allocator reads its jobs back from squeue and submits nothing more.
func TestRestartSubmitsNoDuplicates(t *testing.T) {
	c := newClock()
	b := &fakeBroker{ready: 2000}
	s := newFakeSlurm(c.now)
	a := newTestAllocator(t, b, s, c, zap.NewNop())
	a.Step(context.Background())
	require.Equal(t, 4, s.submits)
	for range 3 {
		c.add(time.Minute)
		b2 := newTestAllocator(t, b, s, c, zap.NewNop())
		b2.Step(context.Background())
	}
	assert.Equal(t, 4, s.submits)
}

// Jobs sbatch accepted but squeue does not list yet count as pending.
func TestSubmittedNotYetListedCountsAsPending(t *testing.T) {
	c := newClock()
	b := &fakeBroker{ready: 2000}
	s := newFakeSlurm(c.now)
	s.hidden = true
	a := newTestAllocator(t, b, s, c, zap.NewNop())
	a.Step(context.Background())
	c.add(20 * time.Second)
	st := a.Step(context.Background())
	assert.Equal(t, 4, s.submits)
	assert.Equal(t, 4, st.Pending, st.Decision.Reason)
}

func TestFailuresPauseWithOneLineAndResume(t *testing.T) {
	c := newClock()
	b := &fakeBroker{ready: 50}
	s := newFakeSlurm(c.now)
	s.fail = errors.New("sbatch: error: invalid partition specified: nope")
	log, logs := observed()
	a := newTestAllocator(t, b, s, c, log)
	for range 30 {
		a.Step(context.Background())
		c.add(11 * time.Second)
	}
	// 3 tries at the min interval, then one probe a minute
	assert.Equal(t, 3+int((30*11*time.Second-3*11*time.Second)/time.Minute), s.calls)
	assert.Equal(t, 1, logs.FilterMessageSnippet("pausing submissions").Len())
	assert.True(t, a.Status().Paused)
	s.mu.Lock()
	s.fail = nil
	s.mu.Unlock()
	for range 10 {
		a.Step(context.Background())
		c.add(11 * time.Second)
	}
	assert.Equal(t, 1, logs.FilterMessageSnippet("resuming submissions").Len())
	assert.Equal(t, 1, s.submits, "the probe job is enough for 50 ready")
	assert.False(t, a.Status().Paused)
}

func TestBrokerErrorSubmitsNothing(t *testing.T) {
	c := newClock()
	b := &fakeBroker{ready: 2000, err: errors.New("connection refused")}
	s := newFakeSlurm(c.now)
	a := newTestAllocator(t, b, s, c, zap.NewNop())
	st := a.Step(context.Background())
	assert.Equal(t, 0, s.calls)
	assert.Contains(t, st.Err, "connection refused")
	assert.Contains(t, StatusLine(st), "error: broker")
}

func TestStatusLineAndMetrics(t *testing.T) {
	c := newClock()
	b := &fakeBroker{ready: 150, cons: 0}
	s := newFakeSlurm(c.now)
	a := newTestAllocator(t, b, s, c, zap.NewNop())
	a.Step(context.Background())
	c.add(time.Second)
	st := a.Step(context.Background())
	line := StatusLine(st)
	assert.Contains(t, line, "q: 150 ready 0 consumers; jobs: 2 pending 0 running PENDING=2; decision: ")
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(NewCollector(a)))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	assert.Equal(t, 2.0, got["ccworker_allocate_jobs{state=PENDING}"])
	assert.Equal(t, 150.0, got["ccworker_allocate_queue_ready{queue=q}"])
	assert.Equal(t, 2.0, got["ccworker_allocate_submitted_jobs_total"])
	assert.Equal(t, 0.0, got["ccworker_allocate_paused"])
}

func TestRunStopsWithContext(t *testing.T) {
	c := newClock()
	a, err := New(&fakeBroker{}, newFakeSlurm(c.now), Config{Limits: baseLimits(), Poll: time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	assert.NoError(t, <-done)
}
