// Package allocate follows a Celery queue with Slurm allocations: it watches how many
// messages wait in RabbitMQ queues and how many consumers they have, counts its own
// Slurm jobs (tagged with a job name and comment it owns), and submits jobs running
// ccworker (deploy/slurm scripts) when work waits, within limits. Workers leave with
// --max-idle, so the fleet goes back to zero when the queue is dry.
//
// The core is Decide, a pure function from what was observed and the limits to what to
// submit and why; the Allocator loop feeds it from a Broker and a Scheduler and carries
// it out.
package allocate

import (
	"fmt"
	"time"
)

// Limits bound what the allocator may ask Slurm for.
type Limits struct {
	MaxJobs          int           // our jobs, pending and running, at once (>= 1)
	MaxWorkers       int           // our workers at once; 0 = MaxJobs x WorkersPerJob
	WorkersPerJob    int           // workers one job starts (nodes of a job; 1 per array element)
	BacklogPerWorker int           // ready messages that justify one worker (>= 1)
	MaxPending       int           // our jobs waiting in Slurm's queue at once (HyperQueue's --backlog); 0 = MaxJobs
	PendingReserve   int           // while messages wait, keep at least this many of our jobs pending (<= max pending)
	MinInterval      time.Duration // between two submissions
	FailLimit        int           // consecutive sbatch failures that pause submissions; 0 = never pause
	ProbeInterval    time.Duration // while paused: one trial submission (one job) this often
}

// Validate reports a limit that makes no sense.
func (l Limits) Validate() error {
	switch {
	case l.MaxJobs < 1:
		return fmt.Errorf("max jobs %d: must be at least 1", l.MaxJobs)
	case l.MaxWorkers < 0:
		return fmt.Errorf("max workers %d: must not be negative", l.MaxWorkers)
	case l.WorkersPerJob < 1:
		return fmt.Errorf("workers per job %d: must be at least 1", l.WorkersPerJob)
	case l.BacklogPerWorker < 1:
		return fmt.Errorf("backlog per worker %d: must be at least 1", l.BacklogPerWorker)
	case l.MaxPending < 0:
		return fmt.Errorf("max pending %d: must not be negative", l.MaxPending)
	case l.MinInterval < 0 || l.ProbeInterval < 0:
		return fmt.Errorf("intervals must not be negative")
	case l.FailLimit < 0:
		return fmt.Errorf("fail limit %d: must not be negative", l.FailLimit)
	case l.PendingReserve < 0 || l.PendingReserve > l.maxPending():
		return fmt.Errorf("pending reserve %d: must be between 0 and max pending %d", l.PendingReserve, l.maxPending())
	case l.MaxWorkers > 0 && l.MaxWorkers < l.WorkersPerJob:
		return fmt.Errorf("max workers %d is below workers per job %d: no job could ever start", l.MaxWorkers, l.WorkersPerJob)
	}
	return nil
}

func (l Limits) maxPending() int {
	if l.MaxPending > 0 {
		return l.MaxPending
	}
	return l.MaxJobs
}

func (l Limits) maxWorkers() int {
	if l.MaxWorkers > 0 {
		return l.MaxWorkers
	}
	return l.MaxJobs * l.WorkersPerJob
}

// State is what the allocator knows at one moment.
type State struct {
	Now         time.Time
	Ready       int       // messages ready (not handed to a consumer) in the watched queues, summed
	Consumers   int       // consumers of the watched queues (the most any one queue has)
	Pending     int       // our jobs waiting in Slurm's queue (submitted ones not yet listed count here)
	Running     int       // our jobs started
	LastAttempt time.Time // the last sbatch call, successful or not; zero = none known
	Failures    int       // consecutive failed sbatch calls
}

// Decision is what to do now and why.
type Decision struct {
	Submit int    // jobs to submit now
	Want   int    // workers the backlog justifies
	Have   int    // workers running or on their way
	Paused bool   // submissions paused after FailLimit sbatch failures (probing)
	Reason string // one line, for logs and status
}

// Decide returns how many jobs to submit. It never lets our jobs exceed MaxJobs, our
// workers MaxWorkers, our pending jobs MaxPending, and never submits sooner than
// MinInterval (ProbeInterval while paused) after the last attempt.
func Decide(s State, l Limits) Decision {
	d := Decision{Paused: l.FailLimit > 0 && s.Failures >= l.FailLimit}
	ours := s.Pending + s.Running
	// Running workers are consumers already (and others may consume too); a running job
	// whose worker has not connected yet still counts.
	d.Have = max(s.Consumers, s.Running*l.WorkersPerJob) + s.Pending*l.WorkersPerJob
	d.Want = ceilDiv(s.Ready, l.BacklogPerWorker)
	if s.Ready <= 0 {
		d.Reason = "no backlog"
		return d
	}
	n := ceilDiv(d.Want-d.Have, l.WorkersPerJob)
	why := fmt.Sprintf("%d ready: want %d worker(s), have %d", s.Ready, d.Want, d.Have)
	if r := l.PendingReserve - s.Pending; r > n {
		// Keep jobs queued ahead of need while work waits, so the next allocation is
		// already near the front of Slurm's queue when a running one ends.
		n = r
		why += fmt.Sprintf("; pending reserve %d (%d pending)", l.PendingReserve, s.Pending)
	}
	if n <= 0 {
		d.Reason = fmt.Sprintf("%d ready: %d worker(s) running or pending are enough (want %d)", s.Ready, d.Have, d.Want)
		return d
	}
	limit := func(room int, what string) {
		if room < n {
			n = max(room, 0)
			why += "; " + what
		}
	}
	limit(l.MaxJobs-ours, fmt.Sprintf("max jobs %d (%d ours)", l.MaxJobs, ours))
	limit((l.maxWorkers()-ours*l.WorkersPerJob)/l.WorkersPerJob, fmt.Sprintf("max workers %d", l.maxWorkers()))
	limit(l.maxPending()-s.Pending, fmt.Sprintf("max pending %d (%d pending)", l.maxPending(), s.Pending))
	if n == 0 {
		d.Reason = why + ": nothing to submit"
		return d
	}
	wait := l.MinInterval
	if d.Paused {
		wait = l.ProbeInterval
		n = 1
		why += fmt.Sprintf("; paused after %d sbatch failures: one trial job", s.Failures)
	}
	if !s.LastAttempt.IsZero() {
		if next := s.LastAttempt.Add(wait); s.Now.Before(next) {
			d.Reason = fmt.Sprintf("%s: would submit %d, next submission allowed in %v", why, n, next.Sub(s.Now).Round(time.Millisecond))
			return d
		}
	}
	d.Submit = n
	d.Reason = fmt.Sprintf("%s: submit %d job(s)", why, n)
	return d
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
