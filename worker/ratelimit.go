package worker

import (
	"sync"
	"time"
)

// rateLimiter holds Celery's per-task rate limits: a token bucket of capacity 1 per task
// name in this worker (not across workers), so a task limited to N/s starts at most
// every 1/N s here. Tasks waiting for their turn stay unacked, as in Celery.
type rateLimiter struct {
	mu    sync.Mutex
	rates map[string]float64 // tasks per second
	def   float64            // for tasks without their own rate
	next  map[string]time.Time
}

func newRateLimiter(def float64, rates map[string]float64) *rateLimiter {
	r := &rateLimiter{rates: map[string]float64{}, def: def, next: map[string]time.Time{}}
	for k, v := range rates {
		r.rates[k] = v
	}
	return r
}

// set changes task's rate (0 = unlimited), like the rate_limit remote command.
func (r *rateLimiter) set(task string, perSecond float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rates[task] = perSecond
	delete(r.next, task)
}

// reserve takes task's next turn and returns how long to wait for it.
func (r *rateLimiter) reserve(task string, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	rate, ok := r.rates[task]
	if !ok {
		rate = r.def
	}
	if rate <= 0 {
		return 0
	}
	next := r.next[task]
	if next.Before(now) {
		next = now
	}
	r.next[task] = next.Add(time.Duration(float64(time.Second) / rate))
	return next.Sub(now)
}

// rate returns task's rate in tasks per second (0 = unlimited).
func (r *rateLimiter) rate(task string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rate, ok := r.rates[task]; ok {
		return rate
	}
	return r.def
}
