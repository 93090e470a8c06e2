package worker

import (
	"sync"
	"time"
)

// quietLog lets one line of a kind through per window and counts the ones held back, so
// a fault that fails many tasks at once (the broker gone while retries are published)
// logs a line, not a storm; the count goes out with the next line let through.
type quietLog struct {
	window time.Duration
	mu     sync.Mutex
	last   time.Time
	held   int
}

// allow reports whether a line may be logged at now, and how many were held back since
// the last one that was.
func (q *quietLog) allow(now time.Time) (ok bool, held int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.last.IsZero() && now.Sub(q.last) < q.window {
		q.held++
		return false, 0
	}
	held, q.held, q.last = q.held, 0, now
	return true, held
}
