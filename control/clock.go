package control

import "sync/atomic"

// Clock is a Lamport clock (kombu.clocks.LamportClock), shared by the mailbox and the event
// dispatcher the way Celery shares app.clock. The zero value is ready to use.
type Clock struct{ v atomic.Int64 }

// Value returns the current value.
func (c *Clock) Value() int64 { return c.v.Load() }

// Forward increments the clock and returns the new value (sending an event or a reply).
func (c *Clock) Forward() int64 { return c.v.Add(1) }

// Adjust merges a received clock value: max(ours, other) + 1.
func (c *Clock) Adjust(other int64) int64 {
	for {
		cur := c.v.Load()
		next := max(cur, other) + 1
		if c.v.CompareAndSwap(cur, next) {
			return next
		}
	}
}
