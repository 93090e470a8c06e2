package prefetch

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeChannel records acks and nacks and checks them the way RabbitMQ does: a tag must be
// outstanding, and multiple=true settles every outstanding tag up to it.
type fakeChannel struct {
	mu          sync.Mutex
	outstanding map[uint64]bool
	acked       map[uint64]int
	nacked      map[uint64]bool
	calls       int
	err         error
}

func newFakeChannel() *fakeChannel {
	return &fakeChannel{outstanding: map[uint64]bool{}, acked: map[uint64]int{}, nacked: map[uint64]bool{}}
}

func (f *fakeChannel) deliver(tag uint64) {
	f.mu.Lock()
	f.outstanding[tag] = true
	f.mu.Unlock()
}

func (f *fakeChannel) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.outstanding[tag] {
		f.err = fmt.Errorf("PRECONDITION_FAILED - unknown delivery tag %d", tag)
		return f.err
	}
	for t := range f.outstanding {
		if t == tag || (multiple && t < tag) {
			delete(f.outstanding, t)
			f.acked[t]++
		}
	}
	return nil
}

func (f *fakeChannel) Nack(tag uint64, multiple, requeue bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.outstanding[tag] || multiple {
		f.err = fmt.Errorf("PRECONDITION_FAILED - unknown delivery tag %d", tag)
		return f.err
	}
	delete(f.outstanding, tag)
	f.nacked[tag] = requeue
	return nil
}

func newTestAcker(f *fakeChannel, hold time.Duration) *acker {
	return newAcker(f, hold, func(err error) { panic(err) })
}

func TestAckerBatchesContiguousAcks(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	for tag := uint64(1); tag <= 5; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	// 2..5 finish first: nothing can go out while 1 is pending.
	for tag := uint64(2); tag <= 5; tag++ {
		a.ack(tag)
	}
	require.Zero(t, f.calls)
	a.ack(1)
	require.Equal(t, 1, f.calls, "one multiple ack for the whole run")
	require.Empty(t, f.outstanding)
	require.Zero(t, a.outstanding())
}

func TestAckerNeverAcksAPendingTag(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	for tag := uint64(1); tag <= 3; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	a.ack(1)
	a.ack(3)
	require.True(t, f.outstanding[2])
	require.False(t, f.outstanding[1])
	require.True(t, f.outstanding[3], "3 waits behind 2")
	require.Equal(t, 2, a.outstanding())
}

func TestAckerRejectsAtOnceAndAcksAroundIt(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	for tag := uint64(1); tag <= 4; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	a.ack(1)
	a.nack(2, false)
	a.ack(4)
	a.ack(3)
	require.NoError(t, f.err)
	require.Empty(t, f.outstanding)
	require.Equal(t, map[uint64]bool{2: false}, f.nacked)
	require.Equal(t, 1, f.acked[4])
}

func TestAckerReleasesStragglersAfterMaxHold(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, 10*time.Millisecond)
	for tag := uint64(1); tag <= 3; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	a.ack(2)
	a.ack(3)
	a.tick()
	require.True(t, f.outstanding[3], "not held long enough yet")
	time.Sleep(15 * time.Millisecond)
	a.tick()
	require.Equal(t, map[uint64]bool{1: true}, f.outstanding)
	// Finishing the slow one now acks only it; the stragglers are not acked twice.
	a.ack(1)
	require.NoError(t, f.err)
	require.Empty(t, f.outstanding)
	for tag, n := range f.acked {
		require.Equal(t, 1, n, "tag %d", tag)
	}
}

func TestAckerSkipsTagsItNeverSaw(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	f.deliver(1)
	a.track(1)
	f.deliver(3)
	a.track(3) // tag 2 went elsewhere
	a.ack(3)
	a.ack(1)
	require.NoError(t, f.err)
	require.Empty(t, f.outstanding)
}

func TestAckerIgnoresUnknownDoubleAndClosed(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	f.deliver(1)
	a.track(1)
	a.ack(7) // never tracked
	a.ack(1)
	a.ack(1) // already settled
	a.nack(1, true)
	require.NoError(t, f.err)
	f.deliver(2)
	a.track(2)
	a.close()
	a.ack(2) // stale: channel gone
	require.True(t, f.outstanding[2])
	require.Equal(t, 1, f.calls)
}

func TestAckerConcurrentRandomOrder(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Millisecond)
	const n = 5000
	for tag := uint64(1); tag <= n; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	tags := rand.Perm(n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				tag := uint64(tags[i] + 1)
				if tag%97 == 0 {
					a.nack(tag, true)
				} else {
					a.ack(tag)
				}
				if i%50 == 0 {
					a.tick()
				}
			}
		}()
	}
	wg.Wait()
	a.tick()
	require.NoError(t, f.err)
	require.Empty(t, f.outstanding)
	require.Less(t, f.calls, n, "acks were batched")
	for tag, c := range f.acked {
		require.Equal(t, 1, c, "tag %d", tag)
	}
}

// onHold tells the consumer when to tick: only when a finished tag waits behind an
// unfinished one, so an idle worker (or one whose acks all go out at once) never ticks.
func TestAckerReportsHeldTags(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Millisecond)
	holds := 0
	a.onHold = func() { holds++ }
	for tag := uint64(1); tag <= 3; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	a.ack(1)
	require.Zero(t, holds, "1 went out at once: nothing held")
	require.False(t, a.holding())
	a.ack(3)
	require.Equal(t, 1, holds, "3 waits behind 2")
	require.True(t, a.holding())
	time.Sleep(2 * time.Millisecond)
	a.tick()
	require.False(t, a.holding(), "the tick acked the straggler")
	require.False(t, f.outstanding[3])
	a.ack(2)
	require.Equal(t, 1, holds)
	require.Empty(t, f.outstanding)
}

// A busy window is acked in batches of ackBatch, not one frame per finished task, also
// when each delivery finishes before the next arrives (nothing pending between them).
func TestAckerAcksABusyWindowInBatches(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	a.batch = batchFor(2048)
	const n = 2048
	f.deliver(1)
	a.track(1)
	for tag := uint64(1); tag <= n; tag++ {
		a.ack(tag)
		f.deliver(tag + 1)
		a.track(tag + 1)
	}
	a.ack(n + 1)
	a.tick()
	require.NoError(t, f.err)
	require.Empty(t, f.outstanding)
	require.LessOrEqual(t, f.calls, n/ackBatch+1, "ack frames for %d tasks (one per task before)", n)
}

// A short finished prefix ahead of pending deliveries waits for the tick; with a small
// prefetch window (-c 1) every ack goes at once so the broker can refill it.
func TestAckerShortPrefixWaitsForTheTick(t *testing.T) {
	f := newFakeChannel()
	a := newTestAcker(f, time.Hour)
	a.batch = batchFor(2048)
	for tag := uint64(1); tag <= 100; tag++ {
		f.deliver(tag)
		a.track(tag)
	}
	for tag := uint64(1); tag <= 5; tag++ {
		a.ack(tag)
	}
	require.Zero(t, f.calls, "5 finished wait for more")
	require.True(t, a.holding(), "so the consumer ticks")
	a.tick()
	require.Equal(t, 1, f.calls)
	for tag := uint64(1); tag <= 5; tag++ {
		require.False(t, f.outstanding[tag])
	}
	// The rest finish: batches of 64 go at once, the last 31 with the next tick.
	for tag := uint64(6); tag <= 100; tag++ {
		a.ack(tag)
	}
	require.Len(t, f.outstanding, 31)
	a.tick()
	require.Empty(t, f.outstanding)

	g := newFakeChannel()
	b := newTestAcker(g, time.Hour)
	b.batch = batchFor(4) // -c 1, prefetch multiplier 4
	require.Equal(t, 1, b.batch)
	for tag := uint64(1); tag <= 4; tag++ {
		g.deliver(tag)
		b.track(tag)
	}
	b.ack(1)
	require.Equal(t, 1, g.calls, "a small window's acks go at once")
}
