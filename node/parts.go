package node

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/metrics"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

// built are the parts New assembles, before they are put in start order.
type built struct {
	python   service
	results  *resultsPart
	metrics  *metricsPart
	events   *control.Events
	consumer *consumerPart
	worker   *worker.Worker
	mailbox  *mailboxPart
	grace    time.Duration
	pyGrace  time.Duration
}

// parts lists the parts in start order; Stop goes backwards.
func (b *built) parts() []part {
	var ps []part
	if b.python != nil {
		ps = append(ps, part{name: "python tasks", service: b.python, grace: b.pyGrace})
	}
	if b.results != nil {
		ps = append(ps, part{name: "result backend", service: b.results})
	}
	if b.metrics != nil {
		ps = append(ps, part{name: "metrics", service: b.metrics, grace: b.grace})
	}
	if b.events != nil {
		ps = append(ps, part{name: "events", service: b.events, grace: b.grace})
	}
	// The consumer starts before the worker so that it closes after the worker's
	// drain: the running tasks' acks need its channels.
	ps = append(ps, part{name: "broker", service: b.consumer}, part{name: "worker", service: b.worker})
	if b.mailbox != nil {
		ps = append(ps, part{name: "remote control", service: b.mailbox})
	}
	return ps
}

// build makes every part, joined: nothing runs yet.
func (n *Node) build(reg *tasks.Registry) (*built, error) {
	cfg := n.cfg
	b := &built{grace: orDuration(cfg.StopTimeout, 5*time.Second),
		pyGrace: orDuration(cfg.StopTimeout, orDuration(cfg.Worker.DrainTimeout, 30*time.Second))}
	if cfg.Python != nil {
		b.python = closer{cfg.Python}
	}
	clock := &control.Clock{}
	pcfg := cfg.Broker
	if pcfg.Logger == nil {
		pcfg.Logger = cfg.Logger.Named("broker")
	}
	// Events and remote control fail over through the same list as the task consumer,
	// each from its own place in it.
	dialer, err := prefetch.NewDialer(pcfg)
	if err != nil {
		return nil, err
	}
	// Events and remote control share one connection: two per worker, not three
	// (bench/README.md, "Connections per worker").
	n.shared = control.NewSharedConn(dialer.With("ccworker-control " + cfg.NodeName).Dial)
	wcfg := cfg.Worker
	wcfg.Revoked = cfg.Revoked
	if cfg.Events != nil {
		ec := *cfg.Events
		ec.NodeName, ec.Clock, ec.SWVersion, ec.Logger = cfg.NodeName, clock, cfg.Version, cfg.Logger.Named("events")
		ec.Shared = n.shared
		events, err := control.NewEvents(nil, ec)
		if err != nil {
			return nil, err
		}
		b.events, n.events = events, events
		wcfg.Events = events
	}
	var rw worker.ResultWriter
	if cfg.Results != nil {
		b.results = newResultsPart(*cfg.Results, cfg.Logger)
		n.writer, rw = b.results.writer, b.results.writer
	}
	b.consumer = &consumerPart{}
	consumer, err := prefetch.New(pcfg)
	if err != nil {
		return nil, err
	}
	b.consumer.c, n.consumer = consumer, consumer
	w, err := worker.New(wcfg, reg, consumer, rw, cfg.Logger)
	if err != nil {
		return nil, err
	}
	b.worker, n.worker, b.consumer.handle = w, w, w.Handle
	if err := n.joinWorker(b, reg, clock); err != nil {
		return nil, err
	}
	return b, nil
}

// joinWorker builds what needs the worker: chord_unlock, events' counters, remote
// control, metrics.
func (n *Node) joinWorker(b *built, reg *tasks.Registry, clock *control.Clock) error {
	cfg, w := n.cfg, n.worker
	if b.results != nil && cfg.Worker.Canvas != nil {
		// Chords on the MongoDB backend poll with celery.chord_unlock, sent to the
		// callback's queue: a worker of that queue must run it.
		unlock := canvas.ChordUnlock(canvasResults{b.results.store}, w, cfg.Worker.Canvas, 0)
		if err := reg.RegisterWith(canvas.ChordUnlockName, unlock, tasks.Options{IgnoreResult: true,
			Doc: "Wait for a chord's header tasks, then send its callback with their results."}); err != nil {
			return err
		}
	}
	// Task.replace(group) makes a chord whose body is celery.accumulate.
	if err := reg.RegisterWith(canvas.AccumulateName, canvas.Accumulate,
		tasks.Options{Doc: "Return args[index], or all args (Celery's built-in)."}); err != nil {
		return err
	}
	// task.map(it) and task.starmap(it) send celery.map and celery.starmap.
	if err := reg.RegisterWith(canvas.MapName, canvas.Map(reg.Lookup, false),
		tasks.Options{Doc: "Run a task on every item (Celery's built-in)."}); err != nil {
		return err
	}
	if err := reg.RegisterWith(canvas.StarmapName, canvas.Map(reg.Lookup, true),
		tasks.Options{Doc: "Run a task on every tuple of arguments (Celery's built-in)."}); err != nil {
		return err
	}
	if b.events != nil {
		b.events.SetCounters(func() (int, int) {
			return len(w.Running()), int(w.Counters().Received.Load())
		})
	}
	if cfg.RemoteControl {
		mcfg := control.MailboxConfig{NodeName: cfg.NodeName, Worker: w, Revoked: cfg.Revoked, Clock: clock,
			Logger: cfg.Logger.Named("control"), Version: cfg.Version, Shared: n.shared}
		if b.events != nil {
			mcfg.Events = b.events
		}
		m, err := control.NewMailbox(nil, mcfg)
		if err != nil {
			return err
		}
		b.mailbox = &mailboxPart{Mailbox: m, log: cfg.Logger}
	}
	if cfg.MetricsAddr != "" {
		b.metrics = &metricsPart{addr: cfg.MetricsAddr, log: cfg.Logger, collector: func() *metrics.Collector {
			var rs metrics.ResultStats
			if n.writer != nil {
				rs = n.writer
			}
			return metrics.NewCollector(w, rs, n.consumer, cfg.NodeName, cfg.Version)
		}}
	}
	return nil
}

// consumerPart gives the AMQP consumer the lifecycle shape; it delivers to the worker.
type consumerPart struct {
	c      *prefetch.Consumer
	handle prefetch.Handler
}

// Start connects (retrying until ctx ends, except for permanent errors) and consumes.
func (p *consumerPart) Start(ctx context.Context) error { return p.c.Start(ctx, p.handle) }

// Stop closes the connection: whatever is unacked goes back to its queue.
func (p *consumerPart) Stop(context.Context) error { return p.c.Close() }

// mailboxPart is remote control. Its Start waits (a little) for the pidbox to consume, so
// that "ready." is logged once inspect and control commands are answered: scripts wait
// for that line, then ask.
type mailboxPart struct {
	*control.Mailbox
	log *zap.Logger
}

// mailboxReadyWait bounds the wait: a broker slow to take the pidbox does not hold the
// worker back (remote control then answers once connected).
const mailboxReadyWait = 10 * time.Second

func (p *mailboxPart) Start(ctx context.Context) error {
	if err := p.Mailbox.Start(ctx); err != nil {
		return err
	}
	t := time.NewTimer(mailboxReadyWait)
	defer t.Stop()
	select {
	case <-p.Ready():
	case <-t.C:
		p.log.Warn("remote control is not consuming its queue yet; starting without waiting for it")
	case <-ctx.Done():
	}
	return nil
}

// metricsPart serves /metrics, read at scrape time.
type metricsPart struct {
	addr      string
	log       *zap.Logger
	collector func() *metrics.Collector
	srv       *metrics.Server
}

func (p *metricsPart) Start(context.Context) error {
	if p.srv != nil {
		return nil
	}
	reg, err := metrics.NewRegistry(p.collector())
	if err != nil {
		return err
	}
	srv, err := metrics.Start(p.addr, reg)
	if err != nil {
		return configError{fmt.Errorf("--metrics-addr %s: %w", p.addr, err)}
	}
	p.srv = srv
	p.log.Info("serving metrics", zap.String("url", "http://"+srv.Addr()+"/metrics"))
	return nil
}

func (p *metricsPart) Stop(ctx context.Context) error {
	srv := p.srv
	p.srv = nil
	if srv == nil {
		return nil
	}
	return srv.Stop(ctx)
}

// closer gives a part started by its constructor (the Python pool) the lifecycle shape.
type closer struct {
	c interface {
		Close(ctx context.Context) error
	}
}

func (closer) Start(context.Context) error      { return nil }
func (c closer) Stop(ctx context.Context) error { return c.c.Close(ctx) }

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
