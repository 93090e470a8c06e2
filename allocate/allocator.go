package allocate

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Config configures an Allocator.
type Config struct {
	Limits Limits
	Poll   time.Duration // between two observations (default 10 s)
	// SubmitGrace is how long a job sbatch accepted but squeue does not list yet counts
	// as pending (default 2 min), so a slow squeue never causes a second submission.
	SubmitGrace time.Duration
	// StatusEvery: with nothing changing, the status line is logged this often (default 1 min).
	StatusEvery time.Duration
	Logger      *zap.Logger
	Now         func() time.Time // default time.Now
}

// recentJob is a submission squeue has not listed yet.
type recentJob struct {
	at   time.Time
	jobs int // jobs it holds (an array's elements)
}

// Status is a snapshot of what the allocator saw and did last.
type Status struct {
	Time      time.Time
	Queues    []QueueState
	Ready     int
	Consumers int
	Jobs      map[string]int // our jobs by Slurm state, ended ones squeue still lists included
	Pending   int
	Running   int
	Decision  Decision
	Err       string // why the last step could not decide ("" when it did)

	Submitted      uint64 // jobs submitted since start
	SbatchCalls    uint64 // submissions tried (one per Submit call)
	SbatchFailures uint64
	Failures       int // consecutive failed submissions
	Paused         bool
	LastAttempt    time.Time

	// Measured: backlog seen -> first of our jobs running; queue dry -> our last job ended.
	StartLatency   time.Duration
	ReleaseLatency time.Duration
}

// Allocator watches queues and submits jobs; see Decide for the rule.
type Allocator struct {
	broker Broker
	sched  Scheduler
	cfg    Config
	log    *zap.Logger

	// touched by Step only (one goroutine)
	recent     map[string]recentJob // submitted ids squeue has not listed yet
	failures   int
	last       time.Time
	backlogAt  time.Time // when a backlog appeared (zero: none, or already served)
	dryAt      time.Time // when the queue ran dry with jobs of ours still there
	hadRunning bool
	lastLine   string
	lastLineAt time.Time

	submitted, calls, sbatchFailures uint64
	startLatency, releaseLatency     time.Duration

	mu     sync.Mutex
	status Status
}

// New returns an allocator; it does nothing until Run or Step.
func New(b Broker, s Scheduler, cfg Config) (*Allocator, error) {
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Second
	}
	if cfg.SubmitGrace <= 0 {
		cfg.SubmitGrace = 2 * time.Minute
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Allocator{broker: b, sched: s, cfg: cfg, log: cfg.Logger, recent: map[string]recentJob{}}, nil
}

// Status returns the last snapshot.
func (a *Allocator) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status
	st.Jobs = maps.Clone(st.Jobs)
	st.Queues = slices.Clone(st.Queues)
	return st
}

// Run steps every Poll until ctx ends.
func (a *Allocator) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Poll)
	defer t.Stop()
	for {
		a.Step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Observe reads the queues and our jobs and decides, without submitting.
func (a *Allocator) Observe(ctx context.Context) (Status, error) {
	st := Status{Time: a.cfg.Now(), Failures: a.failures}
	queues, err := a.broker.Queues(ctx)
	if err != nil {
		return st, fmt.Errorf("broker: %w", err)
	}
	st.Queues = queues
	for _, q := range queues {
		st.Ready += q.Ready
		st.Consumers = max(st.Consumers, q.Consumers)
	}
	jobs, err := a.sched.Jobs(ctx)
	if err != nil {
		return st, fmt.Errorf("squeue: %w", err)
	}
	st.Jobs = map[string]int{}
	listed := map[string]bool{}
	for _, j := range jobs {
		st.Jobs[j.State]++
		base, _, _ := strings.Cut(j.ID, "_")
		listed[base] = true
		switch class(j.State) {
		case classPending:
			st.Pending++
		case classRunning:
			st.Running++
		}
		// After a restart, the newest of our jobs tells when we last submitted.
		if j.Submitted.After(a.last) {
			a.last = j.Submitted
		}
	}
	for id, r := range a.recent {
		switch {
		case listed[id] || st.Time.Sub(r.at) > a.cfg.SubmitGrace:
			delete(a.recent, id)
		default:
			st.Pending += r.jobs // accepted by sbatch, not listed yet
		}
	}
	st.LastAttempt = a.last
	st.Decision = Decide(State{Now: st.Time, Ready: st.Ready, Consumers: st.Consumers, Pending: st.Pending,
		Running: st.Running, LastAttempt: a.last, Failures: a.failures}, a.cfg.Limits)
	st.Paused = st.Decision.Paused
	return st, nil
}

// Step observes, decides, submits what was decided and logs what changed.
func (a *Allocator) Step(ctx context.Context) Status {
	st, err := a.Observe(ctx)
	if err != nil {
		// Never submit blind: without both counts the decision could over-submit.
		st.Err = err.Error()
		a.logLine(st, "cannot observe; not submitting", zap.Error(err))
		return a.publish(st)
	}
	a.timings(&st)
	if n := st.Decision.Submit; n > 0 && ctx.Err() == nil {
		a.submit(ctx, &st, n)
	}
	a.logLine(st, "allocation status")
	return a.publish(st)
}

func (a *Allocator) submit(ctx context.Context, st *Status, n int) {
	now := a.cfg.Now()
	sub, err := a.sched.Submit(ctx, n)
	a.last, st.LastAttempt = now, now
	a.calls++
	for _, id := range sub.IDs {
		r := a.recent[id]
		a.recent[id] = recentJob{at: now, jobs: r.jobs + sub.Jobs/len(sub.IDs)}
	}
	if sub.Jobs > 0 {
		a.submitted += uint64(sub.Jobs)
		st.Pending += sub.Jobs
		a.log.Info("submitted", zap.Int("jobs", sub.Jobs), zap.Strings("ids", sub.IDs), zap.String("why", st.Decision.Reason))
	}
	limit := a.cfg.Limits.FailLimit
	if err == nil {
		if limit > 0 && a.failures >= limit {
			a.log.Warn(fmt.Sprintf("sbatch works again after %d failures: resuming submissions", a.failures))
		}
		a.failures = 0
		st.Failures, st.Paused = 0, false
		return
	}
	a.failures++
	a.sbatchFailures++
	st.Failures = a.failures
	switch {
	case limit > 0 && a.failures == limit:
		st.Paused = true
		a.log.Error(fmt.Sprintf("pausing submissions after %d sbatch failures in a row; trying one job every %v until sbatch works",
			a.failures, a.cfg.Limits.ProbeInterval), zap.Error(err))
	case limit > 0 && a.failures > limit:
		st.Paused = true
		a.log.Debug("sbatch still failing", zap.Int("failures", a.failures), zap.Error(err))
	default:
		a.log.Warn("sbatch failed", zap.Int("failures", a.failures), zap.Int("pause_after", limit), zap.Error(err))
	}
}

// timings measures backlog seen -> first job running and queue dry -> last job ended.
func (a *Allocator) timings(st *Status) {
	ours := st.Pending + st.Running
	now := st.Time
	switch {
	case st.Ready > 0 && a.backlogAt.IsZero() && st.Running == 0:
		a.backlogAt = now
		a.log.Info("backlog seen", zap.Int("ready", st.Ready), zap.Int("consumers", st.Consumers))
	case st.Running > 0 && !a.hadRunning && !a.backlogAt.IsZero():
		a.startLatency = now.Sub(a.backlogAt)
		a.log.Info(fmt.Sprintf("first job running %v after the backlog was seen", a.startLatency.Round(time.Millisecond)))
		a.backlogAt = time.Time{}
	}
	a.hadRunning = st.Running > 0
	if st.Ready > 0 {
		a.dryAt = time.Time{}
	} else if a.dryAt.IsZero() && ours > 0 {
		a.dryAt = now
		a.log.Info("queue dry", zap.Int("jobs", ours))
	}
	if ours == 0 && !a.dryAt.IsZero() && len(a.recent) == 0 {
		a.releaseLatency = now.Sub(a.dryAt)
		a.log.Info(fmt.Sprintf("all allocations released %v after the queue ran dry", a.releaseLatency.Round(time.Millisecond)))
		a.dryAt = time.Time{}
	}
	if st.Ready == 0 {
		a.backlogAt = time.Time{}
	}
}

func (a *Allocator) publish(st Status) Status {
	st.Submitted, st.SbatchCalls, st.SbatchFailures = a.submitted, a.calls, a.sbatchFailures
	st.StartLatency, st.ReleaseLatency = a.startLatency, a.releaseLatency
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status = st
	return st
}

// logLine logs the status when what it says changed (or every StatusEvery), so a quiet
// allocator writes little and a busy one says what it sees.
func (a *Allocator) logLine(st Status, msg string, extra ...zap.Field) {
	line := StatusLine(st)
	key := line
	if i := strings.Index(key, "next submission allowed in"); i >= 0 {
		key = key[:i] // the countdown alone is no change
	}
	now := st.Time
	if key == a.lastLine && now.Sub(a.lastLineAt) < a.cfg.StatusEvery {
		a.log.Debug(msg, append(extra, zap.String("status", line))...)
		return
	}
	a.lastLine, a.lastLineAt = key, now
	if st.Err != "" {
		a.log.Warn(msg, append(extra, zap.String("status", line))...)
		return
	}
	a.log.Info(msg, append(extra, zap.String("status", line))...)
}

// StatusLine is the one-line summary of a status: queues, backlog, jobs by state and the
// decision.
func StatusLine(st Status) string {
	var b strings.Builder
	for i, q := range st.Queues {
		if i > 0 {
			b.WriteString(", ")
		}
		if q.Missing {
			fmt.Fprintf(&b, "%s: missing", q.Name)
			continue
		}
		fmt.Fprintf(&b, "%s: %d ready %d consumers", q.Name, q.Ready, q.Consumers)
	}
	if len(st.Queues) > 0 {
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "jobs: %d pending %d running", st.Pending, st.Running)
	for _, s := range slices.Sorted(maps.Keys(st.Jobs)) {
		fmt.Fprintf(&b, " %s=%d", s, st.Jobs[s])
	}
	if st.Paused {
		b.WriteString("; PAUSED")
	}
	if st.Err != "" {
		b.WriteString("; error: " + st.Err)
	} else {
		b.WriteString("; decision: " + st.Decision.Reason)
	}
	return b.String()
}
