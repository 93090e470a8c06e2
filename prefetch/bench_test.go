package prefetch

import (
	"testing"
	"time"
)

type nopChannel struct{}

func (nopChannel) Ack(uint64, bool) error        { return nil }
func (nopChannel) Nack(uint64, bool, bool) error { return nil }

// BenchmarkAckBatching: a delivery tracked and acked in order, as most are; the acker
// coalesces them into multiple-acks. "consumer" sets onHold as the consumer does (the check
// that lets the straggler ticker sleep while nothing is held).
func BenchmarkAckBatching(b *testing.B) {
	run := func(b *testing.B, a *acker) {
		b.ReportAllocs()
		tag := uint64(0)
		for b.Loop() {
			tag++
			a.track(tag)
			a.ack(tag)
		}
	}
	b.Run("plain", func(b *testing.B) { run(b, newAcker(nopChannel{}, 100*time.Millisecond, func(error) {})) })
	b.Run("consumer", func(b *testing.B) {
		a := newAcker(nopChannel{}, 100*time.Millisecond, func(error) {})
		hold := make(chan struct{}, 1)
		a.onHold = func() {
			select {
			case hold <- struct{}{}:
			default:
			}
		}
		run(b, a)
	})
}
