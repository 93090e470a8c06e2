// Package metrics exposes a worker's counters to Prometheus (`ccworker --metrics-addr`).
//
// It is a pull model: the Collector reads the worker's atomic counters and histograms,
// the result writer's stats and the broker's reconnect counts only when /metrics is
// scraped, so a task pays only a few atomic adds. Families:
//
//	ccworker_tasks_received_total{task}                             counter
//	ccworker_tasks_total{task, state="succeeded|failed|retried|revoked|rejected"}  counter
//	    (outcomes only: sum by task is the tasks finished, and received minus that
//	    sum is what is still in the worker)
//	ccworker_task_runtime_seconds                                   histogram
//	ccworker_ack_latency_seconds (receipt -> ack)                   histogram
//	ccworker_tasks_running, ccworker_tasks_prefetched,
//	ccworker_eta_held, ccworker_pool_capacity                       gauges
//	ccworker_result_batches_total, ccworker_result_documents_total,
//	ccworker_result_replaced_total, ccworker_result_write_failures_total,
//	ccworker_result_refused_total                                   counters
//	ccworker_result_last_batch_size, ccworker_result_last_flush_seconds,
//	ccworker_result_queued                                          gauges
//	ccworker_broker_reconnects_total{cause="connection|channel"}    counter
//	ccworker_info{node, version}                                    gauge (1)
//
// plus the Go runtime (go_*) and process (process_*) collectors.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/worker"
)

// Worker is what the collector reads from the worker (*worker.Worker implements it).
type Worker interface {
	Counters() *worker.Stats
	TaskCounters() map[string]*worker.TaskCounters
	Gauges() worker.Gauges
	Stats() control.Stats
}

// ResultStats is what the collector reads from the result writer (*results.Writer).
type ResultStats interface {
	Stats() results.Stats
}

// Broker is what the collector reads from the consumer (*prefetch.Consumer).
type Broker interface {
	Reconnects() map[string]uint64
}

// Collector is a prometheus.Collector over a worker, and optionally its result writer
// and broker consumer.
type Collector struct {
	w       Worker
	r       ResultStats
	b       Broker
	node    string
	version string

	received, tasks, runtime, ackLatency           *prometheus.Desc
	running, prefetched, held, capacity            *prometheus.Desc
	batches, docs, replaced, failures, refused     *prometheus.Desc
	lastBatch, lastFlush, queued, reconnects, info *prometheus.Desc
}

// NewCollector returns a collector for w; r and b may be nil. node and version label
// ccworker_info.
func NewCollector(w Worker, r ResultStats, b Broker, node, version string) *Collector {
	d := prometheus.NewDesc
	return &Collector{
		w: w, r: r, b: b, node: node, version: version,
		received:   d("ccworker_tasks_received_total", "Task messages received, by task name, since the worker started.", []string{"task"}, nil),
		tasks:      d("ccworker_tasks_total", "Tasks finished, by name and outcome, since the worker started.", []string{"task", "state"}, nil),
		runtime:    d("ccworker_task_runtime_seconds", "How long tasks ran.", nil, nil),
		ackLatency: d("ccworker_ack_latency_seconds", "From a message's receipt to its ack (at-least-once: after the result is durable).", nil, nil),
		running:    d("ccworker_tasks_running", "Tasks running now.", nil, nil),
		prefetched: d("ccworker_tasks_prefetched", "Tasks received and not running yet (waiting for a slot, a rate limit or their result write).", nil, nil),
		held:       d("ccworker_eta_held", "Tasks held in memory until their ETA.", nil, nil),
		capacity:   d("ccworker_pool_capacity", "Tasks the pool runs at once (-c).", nil, nil),
		batches:    d("ccworker_result_batches_total", "Result batches written to the result backend.", nil, nil),
		docs:       d("ccworker_result_documents_total", "Result documents written to the result backend.", nil, nil),
		replaced:   d("ccworker_result_replaced_total", "Result documents replaced (written again for the same task id).", nil, nil),
		failures:   d("ccworker_result_write_failures_total", "Failed batch writes (each retried until it succeeds).", nil, nil),
		refused:    d("ccworker_result_refused_total", "Result documents the store refused, stored in another form or as a FAILURE.", nil, nil),
		lastBatch:  d("ccworker_result_last_batch_size", "Records in the last result batch written.", nil, nil),
		lastFlush:  d("ccworker_result_last_flush_seconds", "Duration of the last result batch write.", nil, nil),
		queued:     d("ccworker_result_queued", "Results waiting to be written.", nil, nil),
		reconnects: d("ccworker_broker_reconnects_total", "Broker reconnections by cause.", []string{"cause"}, nil),
		info:       d("ccworker_info", "Always 1; labels name the node and the ccworker version.", []string{"node", "version"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.received, c.tasks, c.runtime, c.ackLatency, c.running, c.prefetched,
		c.held, c.capacity, c.info} {
		ch <- d
	}
	if c.r != nil {
		for _, d := range []*prometheus.Desc{c.batches, c.docs, c.replaced, c.failures, c.refused, c.lastBatch, c.lastFlush, c.queued} {
			ch <- d
		}
	}
	if c.b != nil {
		ch <- c.reconnects
	}
}

// Collect implements prometheus.Collector; it runs at scrape time only.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	histogram := func(d *prometheus.Desc, h *worker.Histogram) {
		buckets, count, sum := h.Snapshot()
		ch <- prometheus.MustNewConstHistogram(d, count, sum, buckets)
	}
	for name, tc := range c.w.TaskCounters() {
		counter(c.received, float64(tc.Received.Load()), name)
		counter(c.tasks, float64(tc.Succeeded.Load()), name, "succeeded")
		counter(c.tasks, float64(tc.Failed.Load()), name, "failed")
		counter(c.tasks, float64(tc.Retried.Load()), name, "retried")
		counter(c.tasks, float64(tc.Revoked.Load()), name, "revoked")
		counter(c.tasks, float64(tc.Rejected.Load()), name, "rejected")
	}
	s := c.w.Counters()
	histogram(c.runtime, &s.Runtime)
	histogram(c.ackLatency, &s.AckLatency)
	g := c.w.Gauges()
	gauge(c.running, float64(g.Running))
	gauge(c.prefetched, float64(max(g.InFlight-g.Running-g.Held, 0)))
	gauge(c.held, float64(g.Held))
	gauge(c.capacity, float64(c.w.Stats().Pool.MaxConcurrency))
	gauge(c.info, 1, c.node, c.version)
	if c.r != nil {
		rs := c.r.Stats()
		counter(c.batches, float64(rs.Batches))
		counter(c.docs, float64(rs.Docs))
		counter(c.replaced, float64(rs.Replaced))
		counter(c.failures, float64(rs.Failures))
		counter(c.refused, float64(rs.Refused))
		gauge(c.lastBatch, float64(rs.LastBatch))
		gauge(c.lastFlush, rs.LastFlush.Seconds())
		gauge(c.queued, float64(rs.Queued))
	}
	if c.b != nil {
		for cause, n := range c.b.Reconnects() {
			counter(c.reconnects, float64(n), cause)
		}
	}
}

// NewRegistry returns a registry holding cs and the Go runtime and process collectors.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// Handler serves reg's metrics in the Prometheus exposition formats.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
}

// Server serves /metrics on an http.Server of its own.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
}

// Start listens on addr (HOST:PORT; port 0 picks one) now, so a bad address is reported
// to the caller, and serves /metrics for reg on its own goroutine until Stop.
func Start(addr string, reg *prometheus.Registry) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(reg))
	// Go's profiles, for tuning (go tool pprof http://ADDR/debug/pprof/profile): served
	// only on this opt-in address.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ccworker: metrics at /metrics\n"))
	})
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			IdleTimeout: 60 * time.Second},
		ln: ln, done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop shuts the server down (waiting for scrapes in flight until ctx ends) and waits for
// its goroutine.
func (s *Server) Stop(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	if err == nil {
		err = s.err
	}
	return err
}
