package allocate

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes an allocator's last status to Prometheus, read at scrape time:
//
//	ccworker_allocate_queue_ready{queue}, ccworker_allocate_queue_consumers{queue}  gauges
//	ccworker_allocate_jobs{state}                  our jobs by Slurm state (gauge)
//	ccworker_allocate_workers_wanted               workers the backlog justifies (gauge)
//	ccworker_allocate_submitted_jobs_total         counter
//	ccworker_allocate_sbatch_calls_total, ccworker_allocate_sbatch_failures_total  counters
//	ccworker_allocate_paused                       1 while submissions are paused (gauge)
//	ccworker_allocate_start_latency_seconds        backlog seen -> first job running, last measured
//	ccworker_allocate_release_latency_seconds      queue dry -> last job ended, last measured
type Collector struct {
	a                                          *Allocator
	ready, consumers, jobs, wanted, submitted  *prometheus.Desc
	calls, failures, paused, startLat, release *prometheus.Desc
}

// NewCollector returns a collector over a.
func NewCollector(a *Allocator) *Collector {
	d := prometheus.NewDesc
	return &Collector{a: a,
		ready:     d("ccworker_allocate_queue_ready", "Messages ready in a watched queue.", []string{"queue"}, nil),
		consumers: d("ccworker_allocate_queue_consumers", "Consumers of a watched queue.", []string{"queue"}, nil),
		jobs:      d("ccworker_allocate_jobs", "The allocator's Slurm jobs by state.", []string{"state"}, nil),
		wanted:    d("ccworker_allocate_workers_wanted", "Workers the backlog justifies.", nil, nil),
		submitted: d("ccworker_allocate_submitted_jobs_total", "Jobs submitted (array elements count one each).", nil, nil),
		calls:     d("ccworker_allocate_sbatch_calls_total", "sbatch submissions tried.", nil, nil),
		failures:  d("ccworker_allocate_sbatch_failures_total", "sbatch submissions that failed.", nil, nil),
		paused:    d("ccworker_allocate_paused", "1 while submissions are paused after repeated sbatch failures.", nil, nil),
		startLat:  d("ccworker_allocate_start_latency_seconds", "Last measured time from a backlog seen to the first job running.", nil, nil),
		release:   d("ccworker_allocate_release_latency_seconds", "Last measured time from the queue running dry to the last job ending.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.consumers, c.jobs, c.wanted, c.submitted, c.calls, c.failures,
		c.paused, c.startLat, c.release} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	for _, q := range st.Queues {
		gauge(c.ready, float64(q.Ready), q.Name)
		gauge(c.consumers, float64(q.Consumers), q.Name)
	}
	for state, n := range st.Jobs {
		gauge(c.jobs, float64(n), state)
	}
	gauge(c.wanted, float64(st.Decision.Want))
	counter(c.submitted, st.Submitted)
	counter(c.calls, st.SbatchCalls)
	counter(c.failures, st.SbatchFailures)
	paused := 0.0
	if st.Paused {
		paused = 1
	}
	gauge(c.paused, paused)
	gauge(c.startLat, st.StartLatency.Seconds())
	gauge(c.release, st.ReleaseLatency.Seconds())
}
