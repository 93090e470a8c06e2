package prefetch

import (
	"math"
	"sync"
	"time"
)

// channelAcker is the part of an AMQP channel the acker needs.
type channelAcker interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

type tagState uint8

const (
	pending tagState = iota // delivered, not finished
	ready                   // finished, ack not yet sent
	settled                 // ack or nack sent
)

// acker batches acknowledgements for one channel. Delivery tags on a channel are
// consecutive, so the acker keeps one state per tag from the oldest unsettled one up;
// whenever the oldest tags are all finished it acknowledges them with one
// multiple=true ack ending at the newest of them (always a tag still outstanding, so
// RabbitMQ never sees an unknown tag). A finished tag stuck behind a long-running one
// is acked on its own after maxHold, so a slow task never holds back the prefetch
// window. Rejections are sent at once, one by one. With batch set, a short finished
// prefix waits for more (prefixWaits), so a busy worker acks in batches.
//
// All methods are safe for concurrent use; flushing happens in the caller's goroutine
// when it finds the acker idle, so acks from many finishing tasks coalesce without a
// goroutine of the acker's own. Tick must be called periodically to release
// stragglers while any are held (the consumer does that); onHold, when set, is called
// whenever a finished tag is left waiting, so the ticking can stop while nothing is held
// (an idle worker then has no timer to wake for).

type acker struct {
	ch      channelAcker
	maxHold time.Duration
	onError func(error)
	onHold  func() // optional: a finished tag waits behind an unfinished one
	batch   int    // a finished prefix shorter than this waits for more (1: never waits)

	mu     sync.Mutex
	base   uint64 // tag of states[0]
	states []tagState
	since  []int64 // unix nanos a tag became ready
	nready int
	closed bool

	flushMu sync.Mutex // one flusher at a time
}

func newAcker(ch channelAcker, maxHold time.Duration, onError func(error)) *acker {
	return &acker{ch: ch, maxHold: maxHold, onError: onError, base: 1, batch: 1}
}

// setChannel gives the acker the channel its tags belong to.
func (a *acker) setChannel(ch channelAcker) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ch = ch
}

// track records a new delivery; tags must arrive in increasing order.
func (a *acker) track(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	if len(a.states) == 0 {
		a.base = tag
	}
	// Tags skipped by the broker (deliveries of other consumers, basic.get) count as settled.
	for a.base+uint64(len(a.states)) < tag {
		a.states = append(a.states, settled)
		a.since = append(a.since, 0)
	}
	a.states = append(a.states, pending)
	a.since = append(a.since, 0)
}

// ack marks tag finished; the acknowledgement goes out with the next flush.
func (a *acker) ack(tag uint64) {
	a.mu.Lock()
	i, ok := a.index(tag)
	if !ok || a.states[i] != pending {
		a.mu.Unlock()
		return
	}
	a.states[i] = ready
	a.since[i] = time.Now().UnixNano()
	a.nready++
	wait := a.prefixWaits()
	a.mu.Unlock()
	if !wait {
		a.flush()
	}
	if a.onHold != nil && a.holding() {
		a.onHold()
	}
}

// ackBatch is the longest finished prefix left waiting; see prefixWaits.
const ackBatch = 64

// prefixWaits reports whether the finished prefix should wait for more before it is
// acked: it is shorter than batch. A busy worker then sends one ack frame (one write to
// the socket) per batch tasks instead of one per task; a prefix left waiting goes out
// with the next tick, at most maxHold/2 later (the consumer ticks while any waits). It
// waits even when nothing pending follows it: a worker that keeps up with deliveries
// has nothing pending between two of them. Callers hold mu.
func (a *acker) prefixWaits() bool {
	n := 0
	for n < len(a.states) && n < a.batch && a.states[n] != pending {
		n++
	}
	return n > 0 && n < a.batch
}

// batchFor is the prefix batch for a consumer's prefetch window: ackBatch, or a quarter
// of a small window, so the broker can refill it long before it runs dry.
func batchFor(prefetch int) int {
	if prefetch <= 0 {
		return ackBatch
	}
	return max(1, min(ackBatch, prefetch/4))
}

// holding reports whether finished tags wait for a tick (behind an unfinished one).
func (a *acker) holding() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.closed && a.nready > 0
}

// nack rejects tag at once.
func (a *acker) nack(tag uint64, requeue bool) {
	a.mu.Lock()
	i, ok := a.index(tag)
	if !ok || a.states[i] != pending {
		a.mu.Unlock()
		return
	}
	a.states[i] = settled
	a.mu.Unlock()
	if err := a.ch.Nack(tag, false, requeue); err != nil {
		a.onError(err)
	}
	a.flush()
}

func (a *acker) index(tag uint64) (int, bool) {
	if a.closed || tag < a.base || tag >= a.base+uint64(len(a.states)) {
		return 0, false
	}
	return int(tag - a.base), true
}

// tick acks stragglers that have waited longer than maxHold.
func (a *acker) tick() { a.flushUntil(time.Now().Add(-a.maxHold).UnixNano()) }

// drain acks every finished delivery now, stragglers included (before a clean close).
func (a *acker) drain() { a.flushUntil(math.MaxInt64) }

// flush sends what can be sent. If another goroutine is flushing it returns at once;
// the flusher checks for new work after letting go of the lock, so nothing is left behind.
func (a *acker) flush() { a.flushUntil(0) }

// flushUntil flushes, also acking singly the stragglers finished at or before cutoff
// (unix nanos; 0 = none).
func (a *acker) flushUntil(cutoff int64) {
	for {
		if !a.flushMu.TryLock() {
			return
		}
		a.flushLocked(cutoff)
		a.flushMu.Unlock()
		if !a.prefixReady() {
			return
		}
		cutoff = 0
	}
}

func (a *acker) flushLocked(cutoff int64) {
	for {
		multi, singles := a.take(cutoff)
		if multi == 0 && len(singles) == 0 {
			return
		}
		if multi != 0 {
			if err := a.ch.Ack(multi, true); err != nil {
				a.onError(err)
				return
			}
		}
		for _, tag := range singles {
			if err := a.ch.Ack(tag, false); err != nil {
				a.onError(err)
				return
			}
		}
		cutoff = 0
	}
}

// prefixReady reports whether the oldest tracked tag is finished, i.e. a flush would ack.
func (a *acker) prefixReady() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.closed && len(a.states) > 0 && a.states[0] == ready
}

// take removes the finished prefix and returns the tag that acks it (0 if none), plus
// stragglers to ack singly.
func (a *acker) take(cutoff int64) (multi uint64, singles []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return 0, nil
	}
	n := 0
	for n < len(a.states) && a.states[n] != pending {
		if a.states[n] == ready {
			multi = a.base + uint64(n)
			a.nready--
		}
		n++
	}
	if n > 0 {
		a.states = a.states[n:]
		a.since = a.since[n:]
		a.base += uint64(n)
		if len(a.states) == 0 {
			// Start over to let the old backing array go.
			a.states, a.since = a.states[:0:0], a.since[:0:0]
		}
	}
	if cutoff != 0 && a.nready > 0 {
		for i, st := range a.states {
			if st == ready && a.since[i] <= cutoff {
				a.states[i] = settled
				a.nready--
				singles = append(singles, a.base+uint64(i))
			}
		}
	}
	return multi, singles
}

// outstanding reports how many tracked deliveries are not yet settled.
func (a *acker) outstanding() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, st := range a.states {
		if st != settled {
			n++
		}
	}
	return n
}

// close drops everything still tracked: after a channel is gone its tags mean nothing,
// and the broker has already put those messages back in the queue.
func (a *acker) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.states, a.since = nil, nil
}

// isClosed says whether the acker's channel is gone.
func (a *acker) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}
