package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/protocol"
)

// EventsConfig configures an Events dispatcher.
type EventsConfig struct {
	NodeName string // required; the events' hostname field and AMQP header
	Exchange string // event_exchange; "celeryev" when empty
	// TaskEvents enables the task-* events from the start (-E, worker_send_task_events);
	// enable_events/disable_events toggle them at run time.
	TaskEvents bool
	// WithoutHeartbeat (--without-heartbeat) sends no worker-online/heartbeat/offline: in
	// Celery those come from the Heart bootstep, which that flag removes.
	WithoutHeartbeat  bool
	HeartbeatInterval time.Duration // 2 s; also the heartbeats' freq field
	Clock             *Clock        // share the Mailbox's
	// Counters returns the heartbeat's active (running now) and processed (accepted in
	// total) counts; nil reports zeros.
	Counters func() (active, processed int)
	// SWIdent/SWVersion/SWSys fill sw_ident, sw_ver, sw_sys. Default "ccworker", "", "Linux".
	// Celery sends "py-celery"; nothing in Celery 5.2 (events.state, gossip) or Flower reads
	// sw_ident beyond displaying it, so ccworker identifies itself honestly.
	SWIdent, SWVersion, SWSys string
	// BufferLimit is Celery's buffer_limit: task events are flushed as one task.multi list
	// when this many are buffered (24), else every FlushInterval (100 ms).
	BufferLimit   int
	FlushInterval time.Duration
	// MaxBuffered bounds the task events held while the broker is slow or away (10 000);
	// beyond it the oldest are dropped and counted (Dropped).
	MaxBuffered int
	Logger      *zap.Logger
	Backoff     backoff.Policy // between reconnection rounds; zero = backoff's defaults
	// Shared, when set, is the connection the events go out on (with remote control)
	// instead of one of their own; NewEvents's dial may then be nil.
	Shared *SharedConn
}

// Events publishes Celery monitoring events on exchange celeryev over its own connection,
// or one shared with remote control (EventsConfig.Shared).
//
// Worker events (worker-online at each (re)connection, worker-heartbeat every
// HeartbeatInterval, worker-offline at Stop) are published directly. Task events are only
// kept while enabled and go through a bounded in-memory buffer, flushed as JSON lists with
// routing key task.multi every BufferLimit events or FlushInterval. Send never blocks: when
// the broker is slow or unreachable and MaxBuffered events are waiting, the oldest are dropped
// and counted in Dropped (monitoring data is best-effort; task processing must not wait).
type Events struct {
	cfg   EventsConfig
	log   *zap.Logger
	clock *Clock
	conn  connector

	taskEnabled atomic.Bool
	dropped     atomic.Uint64
	published   atomic.Uint64
	counters    atomic.Pointer[func() (active, processed int)]

	mu  sync.Mutex
	buf []map[string]any

	kick      chan struct{} // the buffer reached BufferLimit: flush now
	pending   chan struct{} // the buffer got its first event: flush within FlushInterval
	hbNow     chan struct{}
	stop      chan struct{}
	stopOnce  sync.Once
	startOnce sync.Once
	cancel    context.CancelFunc // set by Start
	done      chan struct{}
}

// SetCounters replaces EventsConfig.Counters, for a worker built after its events
// dispatcher (the worker sends task events through it).
func (e *Events) SetCounters(f func() (active, processed int)) { e.counters.Store(&f) }

// NewEvents returns a dispatcher; Start runs it.
func NewEvents(dial Dialer, cfg EventsConfig) (*Events, error) {
	conn := connectorFor(dial, cfg.Shared)
	if cfg.NodeName == "" || conn == nil {
		return nil, errors.New("control: NewEvents needs a dialer and a node name")
	}
	if cfg.Exchange == "" {
		cfg.Exchange = "celeryev"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = &Clock{}
	}
	if cfg.SWIdent == "" {
		cfg.SWIdent = "ccworker"
	}
	if cfg.SWSys == "" {
		cfg.SWSys = "Linux"
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = 24
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	e := &Events{
		cfg: cfg, log: cfg.Logger.Named("events"), clock: cfg.Clock, conn: conn,
		kick: make(chan struct{}, 1), pending: make(chan struct{}, 1), hbNow: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	e.taskEnabled.Store(cfg.TaskEvents)
	return e, nil
}

// Start runs the dispatcher on its own goroutine until Stop, reconnecting with backoff;
// ctx only bounds starting (heartbeats go on through a warm shutdown's drain). A second
// Start does nothing.
func (e *Events) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.startOnce.Do(func() {
		run, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		e.mu.Lock()
		e.cancel, e.done = cancel, done
		e.mu.Unlock()
		go func() {
			defer close(done)
			runWithReconnect(run, e.log, e.cfg.Backoff, e.conn, e.session, e.stop)
		}()
	})
	return nil
}

// Stop flushes the buffered task events and sends worker-offline if connected, waiting at
// most until ctx is done, then closes the connection and ends the goroutine. Stop before
// Start, or twice, is fine.
func (e *Events) Stop(ctx context.Context) error {
	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.mu.Unlock()
	if cancel == nil {
		return nil
	}
	e.stopOnce.Do(func() { close(e.stop) })
	select {
	case <-done:
	case <-ctx.Done():
	}
	cancel()
	<-done
	return nil
}

// Dropped counts the task events dropped because the buffer was full.
func (e *Events) Dropped() uint64 { return e.dropped.Load() }

// TaskEventsEnabled reports whether task-* events are being sent.
func (e *Events) TaskEventsEnabled() bool { return e.taskEnabled.Load() }

// EnableTaskEvents turns task events on; it reports whether they were off.
func (e *Events) EnableTaskEvents() bool { return e.taskEnabled.CompareAndSwap(false, true) }

// DisableTaskEvents turns task events off; it reports whether they were on.
func (e *Events) DisableTaskEvents() bool { return e.taskEnabled.CompareAndSwap(true, false) }

// SendHeartbeat asks for a worker-heartbeat now (remote `heartbeat`).
func (e *Events) SendHeartbeat() {
	select {
	case e.hbNow <- struct{}{}:
	default:
	}
}

// event builds an event with Celery's common fields.
func (e *Events) event(typ string, fields map[string]any) map[string]any {
	now := time.Now()
	ev := make(map[string]any, len(fields)+6)
	for k, v := range fields {
		ev[k] = v
	}
	ev["hostname"] = e.cfg.NodeName
	ev["utcoffset"] = UTCOffset(now)
	ev["pid"] = pid
	ev["clock"] = e.clock.Forward()
	if _, ok := ev["timestamp"]; !ok {
		ev["timestamp"] = unixFloat(now)
	}
	ev["type"] = typ
	return ev
}

// Send queues a task event (type "task-…") with its fields (uuid and the event's own; see
// the Task* helpers). It does nothing while task events are disabled and never blocks.
func (e *Events) Send(typ string, fields map[string]any) {
	if !e.taskEnabled.Load() {
		return
	}
	ev := e.event(typ, fields)
	e.mu.Lock()
	if len(e.buf) >= e.cfg.MaxBuffered {
		n := len(e.buf) - e.cfg.MaxBuffered + 1
		copy(e.buf, e.buf[n:])
		clear(e.buf[len(e.buf)-n:])
		e.buf = e.buf[:len(e.buf)-n]
		if e.dropped.Add(uint64(n)) == uint64(n) {
			e.log.Warn("event buffer full: dropping the oldest task events (broker slow or away)")
		}
	}
	e.buf = append(e.buf, ev)
	first, full := len(e.buf) == 1, len(e.buf) >= e.cfg.BufferLimit
	e.mu.Unlock()
	if full {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	} else if first {
		select {
		case e.pending <- struct{}{}:
		default:
		}
	}
}

// TaskReceived sends task-received (strategy.py): args/kwargs are the reprs.
func (e *Events) TaskReceived(uuid, name, argsRepr, kwargsRepr, rootID, parentID string, retries int, eta, expires time.Time) {
	if !e.taskEnabled.Load() {
		return
	}
	iso := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return pyISO(t)
	}
	e.Send("task-received", map[string]any{
		"uuid": uuid, "name": name, "args": argsRepr, "kwargs": kwargsRepr,
		"root_id": nullIfZero(rootID), "parent_id": nullIfZero(parentID), "retries": retries,
		"eta": iso(eta), "expires": iso(expires),
	})
}

// TaskStarted sends task-started.
func (e *Events) TaskStarted(uuid string) { e.Send("task-started", map[string]any{"uuid": uuid}) }

// TaskSucceeded sends task-succeeded; resultRepr is repr(result) (Celery truncates to 1024).
func (e *Events) TaskSucceeded(uuid, resultRepr string, runtime time.Duration) {
	e.Send("task-succeeded", map[string]any{"uuid": uuid, "result": resultRepr, "runtime": runtime.Seconds()})
}

// TaskFailed sends task-failed; exceptionRepr like "ValueError('bad')".
func (e *Events) TaskFailed(uuid, exceptionRepr, traceback string) {
	e.Send("task-failed", map[string]any{"uuid": uuid, "exception": exceptionRepr, "traceback": traceback})
}

// TaskRetried sends task-retried.
func (e *Events) TaskRetried(uuid, exceptionRepr, traceback string) {
	e.Send("task-retried", map[string]any{"uuid": uuid, "exception": exceptionRepr, "traceback": traceback})
}

// TaskRejected sends task-rejected (the field is "requeue", as the code sends it).
func (e *Events) TaskRejected(uuid string, requeue bool) {
	e.Send("task-rejected", map[string]any{"uuid": uuid, "requeue": requeue})
}

// TaskRevoked sends task-revoked; signum is the signal number when terminated (0 = null).
func (e *Events) TaskRevoked(uuid string, terminated bool, signum int, expired bool) {
	e.Send("task-revoked", map[string]any{"uuid": uuid, "terminated": terminated, "signum": nullIfZero(signum), "expired": expired})
}

var errStopped = errors.New("stopped")

func (e *Events) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	if err := ch.ExchangeDeclare(e.cfg.Exchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", e.cfg.Exchange, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	hb := !e.cfg.WithoutHeartbeat
	if hb {
		if err := e.publishWorker(ctx, ch, "worker-online"); err != nil {
			return err
		}
	}
	var hbC <-chan time.Time
	if hb {
		t := time.NewTicker(e.cfg.HeartbeatInterval)
		defer t.Stop()
		hbC = t.C
	}
	// The flush timer runs only while events wait: an idle worker does not wake for it.
	flush := time.NewTimer(e.cfg.FlushInterval)
	flush.Stop()
	defer flush.Stop()
	armed := false
	if e.buffered() {
		flush.Reset(e.cfg.FlushInterval)
		armed = true
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-closed:
			return err
		case <-e.stop:
			err := e.flush(ctx, ch)
			if err == nil && hb {
				err = e.publishWorker(ctx, ch, "worker-offline")
			}
			if err != nil {
				e.log.Warn("cannot send the last events", zap.Error(err))
			}
			return errStopped
		case <-e.kick:
			if err := e.flush(ctx, ch); err != nil {
				return err
			}
		case <-e.pending:
			if !armed {
				flush.Reset(e.cfg.FlushInterval)
				armed = true
			}
		case <-flush.C:
			armed = false
			if err := e.flush(ctx, ch); err != nil {
				return err
			}
		case <-hbC:
			if err := e.publishWorker(ctx, ch, "worker-heartbeat"); err != nil {
				return err
			}
		case <-e.hbNow:
			if hb {
				if err := e.publishWorker(ctx, ch, "worker-heartbeat"); err != nil {
					return err
				}
			}
		}
	}
}

func (e *Events) publishWorker(ctx context.Context, ch *amqp.Channel, typ string) error {
	active, processed := 0, 0
	if f := e.counters.Load(); f != nil {
		active, processed = (*f)()
	} else if e.cfg.Counters != nil {
		active, processed = e.cfg.Counters()
	}
	ev := e.event(typ, map[string]any{
		"freq": e.cfg.HeartbeatInterval.Seconds(), "active": active, "processed": processed,
		"loadavg": loadAvg(), "sw_ident": e.cfg.SWIdent, "sw_ver": e.cfg.SWVersion, "sw_sys": e.cfg.SWSys,
	})
	return e.publish(ctx, ch, routingKey(typ), ev)
}

// maxBatch bounds one task.multi message.
const maxBatch = 256

// flush publishes the buffered task events as task.multi lists. On failure the unsent
// events go back to the front of the buffer (within MaxBuffered).
func (e *Events) flush(ctx context.Context, ch *amqp.Channel) error {
	for {
		e.mu.Lock()
		n := min(len(e.buf), maxBatch)
		if n == 0 {
			e.mu.Unlock()
			return nil
		}
		batch := make([]any, n)
		for i := range n {
			batch[i] = e.buf[i]
		}
		rest := len(e.buf) - n
		copy(e.buf, e.buf[n:])
		clear(e.buf[rest:])
		e.buf = e.buf[:rest]
		e.mu.Unlock()
		if err := e.publish(ctx, ch, "task.multi", batch); err != nil {
			e.requeue(batch)
			return err
		}
	}
}

func (e *Events) requeue(batch []any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	keep := min(len(batch), e.cfg.MaxBuffered-len(e.buf))
	if keep < len(batch) {
		e.dropped.Add(uint64(len(batch) - keep))
	}
	if keep <= 0 {
		return
	}
	nb := make([]map[string]any, 0, keep+len(e.buf))
	for _, ev := range batch[len(batch)-keep:] {
		nb = append(nb, ev.(map[string]any))
	}
	e.buf = append(nb, e.buf...)
}

func (e *Events) publish(ctx context.Context, ch *amqp.Channel, key string, body any) error {
	b, err := protocol.AppendJSON(nil, body)
	if err != nil {
		e.log.Error("cannot encode an event", zap.Error(err))
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = ch.PublishWithContext(ctx, e.cfg.Exchange, key, false, false, amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Transient,
		Headers: amqp.Table{"hostname": e.cfg.NodeName}, Body: b,
	})
	if err == nil {
		e.published.Add(1)
	}
	return err
}

// routingKey is the event type with '-' → '.'.
func routingKey(typ string) string {
	b := []byte(typ)
	for i, c := range b {
		if c == '-' {
			b[i] = '.'
		}
	}
	return string(b)
}

// buffered reports whether task events wait to be sent.
func (e *Events) buffered() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.buf) > 0
}
