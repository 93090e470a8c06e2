package allocate

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func baseLimits() Limits {
	return Limits{MaxJobs: 4, WorkersPerJob: 1, BacklogPerWorker: 100, MaxPending: 4,
		MinInterval: 10 * time.Second, FailLimit: 3, ProbeInterval: time.Minute}
}

func TestDecide(t *testing.T) {
	l := baseLimits()
	nodes := l
	nodes.WorkersPerJob, nodes.MaxJobs = 2, 3
	capped := l
	capped.MaxWorkers = 2
	oneAtATime := l
	oneAtATime.MaxPending = 1
	reserve := l
	reserve.PendingReserve = 2
	for _, tc := range []struct {
		name   string
		s      State
		l      Limits
		submit int
		reason string
	}{
		{"no backlog", State{Now: t0}, l, 0, "no backlog"},
		{"no backlog, jobs running", State{Now: t0, Running: 2, Consumers: 2}, l, 0, "no backlog"},
		{"one task, nothing running", State{Now: t0, Ready: 1}, l, 1, "submit 1"},
		{"backlog up to the limit", State{Now: t0, Ready: 2000}, l, 4, "max jobs 4"},
		{"backlog, some of ours already", State{Now: t0, Ready: 2000, Running: 1, Pending: 1, Consumers: 1}, l, 2, "submit 2"},
		{"at max jobs", State{Now: t0, Ready: 2000, Running: 4, Consumers: 4}, l, 0, "nothing to submit"},
		{"running workers enough", State{Now: t0, Ready: 150, Running: 2, Consumers: 2}, l, 0, "are enough"},
		{"external consumers count", State{Now: t0, Ready: 250, Consumers: 3}, l, 0, "are enough"},
		{"started job not yet a consumer counts", State{Now: t0, Ready: 100, Running: 1}, l, 0, "are enough"},
		{"pending counts as coming", State{Now: t0, Ready: 300, Pending: 3}, l, 0, "are enough"},
		{"max pending", State{Now: t0, Ready: 2000, Pending: 1}, oneAtATime, 0, "max pending 1"},
		{"max pending lets one through", State{Now: t0, Ready: 2000}, oneAtATime, 1, "max pending 1"},
		{"max workers", State{Now: t0, Ready: 2000}, capped, 2, "max workers 2"},
		{"nodes per job", State{Now: t0, Ready: 300}, nodes, 2, "submit 2"},
		{"nodes per job, limit in workers", State{Now: t0, Ready: 2000, Running: 1, Consumers: 2}, nodes, 2, "max jobs 3"},
		{"reserve: keep jobs queued while work waits", State{Now: t0, Ready: 50, Running: 1, Consumers: 1}, reserve, 2, "pending reserve 2 (0 pending)"},
		{"reserve kept", State{Now: t0, Ready: 50, Running: 1, Consumers: 1, Pending: 2}, reserve, 0, "are enough"},
		{"reserve topped up", State{Now: t0, Ready: 50, Running: 1, Consumers: 1, Pending: 1}, reserve, 1, "pending reserve 2 (1 pending)"},
		{"reserve within max jobs", State{Now: t0, Ready: 50, Running: 3, Consumers: 3}, reserve, 1, "max jobs 4"},
		{"no reserve without backlog", State{Now: t0, Running: 1, Consumers: 1}, reserve, 0, "no backlog"},
		{"min interval", State{Now: t0, Ready: 2000, LastAttempt: t0.Add(-5 * time.Second)}, l, 0, "next submission allowed in 5s"},
		{"min interval over", State{Now: t0, Ready: 2000, LastAttempt: t0.Add(-10 * time.Second)}, l, 4, "submit 4"},
		{"failures below limit retry at min interval", State{Now: t0, Ready: 2000, Failures: 2, LastAttempt: t0.Add(-10 * time.Second)}, l, 4, "submit 4"},
		{"paused waits the probe interval", State{Now: t0, Ready: 2000, Failures: 3, LastAttempt: t0.Add(-30 * time.Second)}, l, 0, "paused after 3 sbatch failures"},
		{"paused probes with one job", State{Now: t0, Ready: 2000, Failures: 5, LastAttempt: t0.Add(-time.Minute)}, l, 1, "one trial job"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.l.Validate())
			d := Decide(tc.s, tc.l)
			assert.Equal(t, tc.submit, d.Submit, d.Reason)
			assert.Contains(t, d.Reason, tc.reason)
			assert.Equal(t, tc.s.Failures >= tc.l.FailLimit, d.Paused)
		})
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, mod := range []func(*Limits){
		func(l *Limits) { l.MaxJobs = 0 },
		func(l *Limits) { l.WorkersPerJob = 0 },
		func(l *Limits) { l.BacklogPerWorker = 0 },
		func(l *Limits) { l.MaxPending = -1 },
		func(l *Limits) { l.MaxWorkers = -1 },
		func(l *Limits) { l.MinInterval = -time.Second },
		func(l *Limits) { l.FailLimit = -1 },
		func(l *Limits) { l.WorkersPerJob, l.MaxWorkers = 4, 2 },
		func(l *Limits) { l.PendingReserve = -1 },
		func(l *Limits) { l.PendingReserve = 5 }, // above max pending (= max jobs 4)
	} {
		l := baseLimits()
		mod(&l)
		assert.Error(t, l.Validate(), "%+v", l)
	}
	assert.NoError(t, baseLimits().Validate())
}

// TestDecideNeverOverSubmits drives Decide the way the allocator does, over random
// backlogs, job starts and job ends, and checks after each step that our jobs, workers
// and pending jobs stay within the limits and submissions respect the interval.
func TestDecideNeverOverSubmits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		l := Limits{
			MaxJobs: 1 + rng.IntN(8), WorkersPerJob: 1 + rng.IntN(3), BacklogPerWorker: 1 + rng.IntN(200),
			MaxPending: rng.IntN(4), MinInterval: time.Duration(rng.IntN(5)) * time.Second,
			FailLimit: rng.IntN(4), ProbeInterval: time.Duration(5+rng.IntN(20)) * time.Second,
		}
		l.PendingReserve = rng.IntN(l.maxPending() + 1)
		if rng.IntN(2) == 0 {
			l.MaxWorkers = l.WorkersPerJob * (1 + rng.IntN(l.MaxJobs))
		}
		require.NoError(t, l.Validate())
		s := State{Now: t0}
		failing := false
		for step := 0; step < 300; step++ {
			s.Now = s.Now.Add(time.Second)
			s.Ready = max(0, s.Ready+rng.IntN(400)-150)
			if rng.IntN(5) == 0 && s.Pending > 0 { // a pending job starts
				s.Pending--
				s.Running++
			}
			if rng.IntN(7) == 0 && s.Running > 0 { // a worker leaves (--max-idle, walltime)
				s.Running--
			}
			s.Consumers = s.Running*l.WorkersPerJob + rng.IntN(2)
			if rng.IntN(20) == 0 {
				failing = !failing
			}
			d := Decide(s, l)
			require.GreaterOrEqual(t, d.Submit, 0)
			if d.Submit == 0 {
				continue
			}
			if !s.LastAttempt.IsZero() {
				wait := l.MinInterval
				if d.Paused {
					wait = l.ProbeInterval
				}
				require.False(t, s.Now.Before(s.LastAttempt.Add(wait)), "submitted %v after the last attempt", s.Now.Sub(s.LastAttempt))
			}
			if d.Paused {
				require.Equal(t, 1, d.Submit, "a probe is one job")
			}
			require.Positive(t, s.Ready, "submitted without backlog")
			s.LastAttempt = s.Now
			if failing {
				s.Failures++
				continue
			}
			s.Failures = 0
			s.Pending += d.Submit
			ours := s.Pending + s.Running
			require.LessOrEqual(t, ours, l.MaxJobs, "jobs: %+v %+v %s", s, l, d.Reason)
			require.LessOrEqual(t, ours*l.WorkersPerJob, l.maxWorkers(), "workers: %+v %+v", s, l)
			require.LessOrEqual(t, s.Pending, l.maxPending(), "pending: %+v %+v", s, l)
			extra := max(d.Want-d.Have+l.WorkersPerJob-1, (l.PendingReserve-(s.Pending-d.Submit))*l.WorkersPerJob)
			require.LessOrEqual(t, d.Submit*l.WorkersPerJob, extra, "more than the backlog and the reserve want: %+v", d)
		}
	}
}
