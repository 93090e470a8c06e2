// Package node is ccworker's composition root: from one Config and a task registry it
// builds the long-lived parts of a worker node (result writer, events, AMQP consumer,
// worker, remote control, metrics), starts them in order and stops them in reverse.
// It is the API for embedding ccworker in another Go program; the ccworker command is a
// thin layer of flags and settings over it.
package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

// ErrConfig matches (errors.Is) the errors that retrying will not fix: a result backend
// that refuses the credentials, a metrics address that cannot be listened on. A broker
// that refuses the connection for good matches prefetch.ErrPermanent.
var ErrConfig = errors.New("node: configuration refused")

// configError marks err as ErrConfig without changing its message.
type configError struct{ error }

func (e configError) Unwrap() error      { return e.error }
func (configError) Is(target error) bool { return target == ErrConfig }

// Config is everything a node needs. The sub-configs are the parts' own; the node fills
// in what joins them (node name, logger, the shared revoked set and clock, the
// consumer's handler).
type Config struct {
	NodeName string // celery@host
	Version  string // reported by remote control and events
	Logger   *zap.Logger

	// Broker is the AMQP consumer's configuration (URLs, TLS, queues, prefetch); the
	// remote-control and event connections use the same URLs and TLS.
	Broker prefetch.Config
	// Results is the result backend; nil stores no results.
	Results *Results
	// Worker is the worker's configuration. Its Events and Revoked are set by the node;
	// NodeName defaults to the node's.
	Worker worker.Config
	// Events sends worker heartbeats and, with TaskEvents, task events; nil sends none.
	Events *control.EventsConfig
	// RemoteControl answers Celery's inspect and control commands (the pidbox).
	RemoteControl bool
	// Revoked is the revoked set shared by remote control and the worker; nil makes one
	// with Celery's defaults (and its CELERY_WORKER_REVOKES_MAX/_EXPIRES variables).
	Revoked *control.Revoked
	// MetricsAddr serves Prometheus metrics at http://MetricsAddr/metrics; "" = off.
	MetricsAddr string
	// Python, when set, is a pool of Python children the caller started (their tasks had
	// to be registered first). The node stops it last, within StopTimeout.
	Python interface {
		Close(ctx context.Context) error
	}
	// StopTimeout bounds the stopping of the parts that outlive a cut-short drain:
	// worker-offline, the metrics server and the Python children (default: the worker's
	// DrainTimeout for the children, 5 s for the others).
	StopTimeout time.Duration
}

// Results configures the MongoDB result backend.
type Results struct {
	Mongo  config.MongoBackend
	Writer results.Config
}

// Node is a running ccworker: a worker and the parts around it.
type Node struct {
	cfg   Config
	log   *zap.Logger
	parts []part // in start order

	worker   *worker.Worker
	consumer *prefetch.Consumer
	writer   *results.Writer     // nil without a result backend
	events   *control.Events     // nil without events
	shared   *control.SharedConn // events' and remote control's connection
}

// part is one long-lived part under the node's lifecycle.
type part struct {
	name string
	service
	// grace, when set, gives the part its own time to stop, apart from the caller's
	// drain: worker-offline is still sent and children still exit after a cold cut.
	grace time.Duration
}

// service is the one lifecycle shape of every long-lived part: Start returns once the
// part runs (ctx bounds starting only); Stop is safe twice and before Start.
type service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// New builds the parts; nothing connects or starts until Start. It registers Celery's
// canvas built-ins in reg: celery.accumulate, and celery.chord_unlock when a result
// backend is configured (chords on the MongoDB backend poll with it); so reg must not be
// shared with another node.
func New(cfg Config, reg *tasks.Registry) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.NodeName == "" {
		return nil, errors.New("node: no node name")
	}
	if cfg.Worker.NodeName == "" {
		cfg.Worker.NodeName = cfg.NodeName
	}
	if cfg.Worker.DrainTimeout <= 0 {
		cfg.Worker.DrainTimeout = 30 * time.Second
	}
	if cfg.Revoked == nil {
		cfg.Revoked = control.NewRevokedFromEnv()
	}
	n := &Node{cfg: cfg, log: cfg.Logger}
	b, err := n.build(reg)
	if err != nil {
		return nil, err
	}
	n.parts = b.parts()
	return n, nil
}

// Worker returns the node's worker (its counters, its remote-control answers).
func (n *Node) Worker() *worker.Worker { return n.worker }

// Done is closed when the worker asks to stop by itself (--max-idle, --max-tasks, a
// remote shutdown): its owner then calls Stop.
func (n *Node) Done() <-chan struct{} { return n.worker.Done() }

// Start starts the parts in order: Python children, result backend, metrics, events,
// consumer, worker, remote control. Waiting for the broker and the result backend is
// bounded by ctx. If a part fails, the ones started are stopped and the error returned.
// Start is called once.
func (n *Node) Start(ctx context.Context) error {
	for _, p := range n.parts {
		if err := p.Start(ctx); err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = n.Stop(stopCtx) // every part's Stop is fine before its Start
			return err          // the parts' errors say where they come from
		}
	}
	// Celery's line, printed once the worker really consumes: scripts wait for it.
	n.log.Info(fmt.Sprintf("%s ready.", n.cfg.NodeName))
	return nil
}

// Stop is the warm shutdown, the parts in reverse order: remote control stops answering,
// the worker stops consuming and lets running tasks finish (at most the worker's
// DrainTimeout, or until ctx ends: a cold shutdown, whose unacked messages go back to
// their queues), the consumer closes, events send worker-offline, metrics stop, the
// result writer flushes, the Python children exit. It returns an error if the drain was
// cut short. Every part is stopped, started or not (Stop before Start releases what New
// built), so Stop is fine after a failed Start, before Start, and twice.
func (n *Node) Stop(ctx context.Context) error {
	drain, cancel := context.WithTimeout(ctx, n.cfg.Worker.DrainTimeout)
	defer cancel()
	var errs []error
	for i := len(n.parts) - 1; i >= 0; i-- {
		p := n.parts[i]
		pctx, cancel := drain, context.CancelFunc(func() {})
		if p.grace > 0 {
			pctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), p.grace)
		}
		if err := p.Stop(pctx); err != nil {
			if p.grace > 0 { // not the drain's: said, not returned
				n.log.Warn(p.name+" stopped with an error", zap.Error(err))
			} else {
				errs = append(errs, err)
			}
		}
		cancel()
	}
	return errors.Join(errs...)
}

// Run starts the node, waits until ctx is done or the worker asks to stop, and stops it;
// kill cuts the drain short. Told to stop while still connecting, Run returns nil:
// nothing was taken, nothing is lost.
func (n *Node) Run(ctx, kill context.Context) error {
	if err := n.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	select {
	case <-ctx.Done():
	case <-n.Done():
	}
	return n.Stop(kill)
}

// canvasResults gives canvas the stored results it polls for chords.
type canvasResults struct{ store *results.MongoStore }

func (r canvasResults) Results(ctx context.Context, ids []string) (map[string]canvas.Result, error) {
	got, err := r.store.Results(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]canvas.Result, len(got))
	for id, st := range got {
		out[id] = canvas.Result{Status: st.Status, Result: st.Result, Traceback: st.Traceback}
	}
	return out, nil
}
