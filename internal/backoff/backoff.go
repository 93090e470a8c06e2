// Package backoff is the one retry delay every reconnect and retry loop of ccworker uses:
// exponential, capped, with jitter, so that hundreds of workers that lost the same broker
// node do not all come back in the same millisecond.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// The defaults for broker connections (tasks, publishing, events, remote control).
const (
	DefaultMin = 200 * time.Millisecond
	DefaultMax = 30 * time.Second
)

// Policy bounds the delays. The zero value is DefaultMin … DefaultMax.
type Policy struct {
	Min time.Duration // the first delay (before jitter)
	Max time.Duration // no delay is longer
}

func (p Policy) bounds() (lo, hi time.Duration) {
	lo, hi = p.Min, p.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	return lo, max(lo, hi)
}

// Delay is the wait before retry number attempt (1 = the first retry): Min doubled
// attempt-1 times, capped at Max, then drawn uniformly from its upper half ("equal
// jitter": the delay still grows, yet no two workers wait the same).
func (p Policy) Delay(attempt int) time.Duration {
	lo, hi := p.bounds()
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// Backoff counts the attempts of one loop. It is not safe for concurrent use: each loop
// owns its own.
type Backoff struct {
	Policy
	attempt int
}

// New returns a Backoff with policy p.
func New(p Policy) *Backoff { return &Backoff{Policy: p} }

// Next returns the delay before the next attempt and counts it.
func (b *Backoff) Next() time.Duration {
	b.attempt++
	return b.Delay(b.attempt)
}

// Attempts is how many delays Next has handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps for Next(), or returns ctx's error as soon as ctx ends.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits d, or returns ctx's error as soon as ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
