package prefetch

import (
	"testing"
	"time"
)

type nopChannel struct{}

func (nopChannel) Ack(uint64, bool) error        { return nil }
func (nopChannel) Nack(uint64, bool, bool) error { return nil }

// BenchmarkAckBatching: a delivery tracked and acked in order, as most are; the acker
// coalesces them into multiple-acks.
func BenchmarkAckBatching(b *testing.B) {
	a := newAcker(nopChannel{}, 100*time.Millisecond, func(error) {})
	b.ReportAllocs()
	tag := uint64(0)
	for b.Loop() {
		tag++
		a.track(tag)
		a.ack(tag)
	}
}
