package worker

import (
	"sync/atomic"
	"time"
)

// HistogramBuckets are the upper bounds, in seconds, of the worker's latency histograms
// (task runtime, receive-to-ack): from a millisecond to five minutes.
var HistogramBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300}

// Histogram counts durations into HistogramBuckets with atomic adds: cheap enough for
// every task, read by the metrics collector at scrape time.
type Histogram struct {
	counts [12]atomic.Uint64 // len(HistogramBuckets) + the +Inf bucket
	sumNs  atomic.Int64
	total  atomic.Uint64
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(HistogramBuckets) && s > HistogramBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
	h.total.Add(1)
}

// Snapshot returns the cumulative count per bucket upper bound (as Prometheus wants
// them), the number of observations and their sum in seconds.
func (h *Histogram) Snapshot() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(HistogramBuckets))
	var cum uint64
	for i, ub := range HistogramBuckets {
		cum += h.counts[i].Load()
		buckets[ub] = cum
	}
	return buckets, h.total.Load(), time.Duration(h.sumNs.Load()).Seconds()
}

// TaskCounters are one task name's outcomes.
type TaskCounters struct {
	Received, Succeeded, Failed, Retried, Revoked, Rejected atomic.Uint64
}
