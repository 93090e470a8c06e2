// Package metrics exposes a worker's counters to Prometheus (`ccworker --metrics-addr`).
//
// It is a pull model: the Collector reads the worker's atomic counters, its per-task
// totals and the result writer's stats only when /metrics is scraped, so running a task
// costs nothing extra. Families:
//
//	ccworker_tasks_total{state="received|succeeded|failed|retried|revoked|rejected"}  counter
//	ccworker_tasks_received_by_name_total{task="..."}                                 counter
//	ccworker_tasks_running                                                            gauge
//	ccworker_pool_capacity                                                            gauge
//	ccworker_result_batches_total, ccworker_result_documents_total,
//	ccworker_result_replaced_total                                                    counters
//	ccworker_result_last_flush_seconds, ccworker_result_queued                        gauges
//	ccworker_info{node, version}                                                      gauge (1)
//
// plus the Go runtime (go_*) and process (process_*) collectors.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
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
	Running() []string
	Stats() control.Stats
}

// ResultStats is what the collector reads from the result writer (*results.Writer).
type ResultStats interface {
	Stats() results.Stats
}

// Collector is a prometheus.Collector over a worker and, optionally, its result writer.
type Collector struct {
	w       Worker
	r       ResultStats
	node    string
	version string

	tasks, byName, running, capacity       *prometheus.Desc
	batches, docs, replaced, lastFlush, qd *prometheus.Desc
	info                                   *prometheus.Desc
}

// NewCollector returns a collector for w; r may be nil (no result backend). node and
// version label ccworker_info.
func NewCollector(w Worker, r ResultStats, node, version string) *Collector {
	d := prometheus.NewDesc
	return &Collector{
		w: w, r: r, node: node, version: version,
		tasks:     d("ccworker_tasks_total", "Tasks by outcome since the worker started.", []string{"state"}, nil),
		byName:    d("ccworker_tasks_received_by_name_total", "Tasks received, by task name (Celery's stats total).", []string{"task"}, nil),
		running:   d("ccworker_tasks_running", "Tasks running now.", nil, nil),
		capacity:  d("ccworker_pool_capacity", "Tasks the pool runs at once (-c).", nil, nil),
		batches:   d("ccworker_result_batches_total", "Result batches written to the result backend.", nil, nil),
		docs:      d("ccworker_result_documents_total", "Result documents written to the result backend.", nil, nil),
		replaced:  d("ccworker_result_replaced_total", "Result documents replaced (written again for the same task id).", nil, nil),
		lastFlush: d("ccworker_result_last_flush_seconds", "Duration of the last result batch write.", nil, nil),
		qd:        d("ccworker_result_queued", "Results waiting to be written.", nil, nil),
		info:      d("ccworker_info", "Always 1; labels name the node and the ccworker version.", []string{"node", "version"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tasks, c.byName, c.running, c.capacity, c.info} {
		ch <- d
	}
	if c.r != nil {
		for _, d := range []*prometheus.Desc{c.batches, c.docs, c.replaced, c.lastFlush, c.qd} {
			ch <- d
		}
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
	s := c.w.Counters()
	counter(c.tasks, float64(s.Received.Load()), "received")
	counter(c.tasks, float64(s.Succeeded.Load()), "succeeded")
	counter(c.tasks, float64(s.Failed.Load()), "failed")
	counter(c.tasks, float64(s.Retried.Load()), "retried")
	counter(c.tasks, float64(s.Revoked.Load()), "revoked")
	counter(c.tasks, float64(s.Rejected.Load()), "rejected")
	st := c.w.Stats()
	for name, n := range st.Total {
		counter(c.byName, float64(n), name)
	}
	gauge(c.running, float64(len(c.w.Running())))
	gauge(c.capacity, float64(st.Pool.MaxConcurrency))
	gauge(c.info, 1, c.node, c.version)
	if c.r != nil {
		rs := c.r.Stats()
		counter(c.batches, float64(rs.Batches))
		counter(c.docs, float64(rs.Docs))
		counter(c.replaced, float64(rs.Replaced))
		gauge(c.lastFlush, rs.LastFlush.Seconds())
		gauge(c.qd, float64(rs.Queued))
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
