package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
)

// Dialer opens a new AMQP connection (for ccworker: prefetch.Dial with the worker's broker
// URLs, TLS and heartbeat). The component that called it owns and closes the connection.
type Dialer func(ctx context.Context) (*amqp.Connection, error)

// EventControl is what the mailbox needs from the event dispatcher (*Events implements it).
type EventControl interface {
	EnableTaskEvents() (changed bool)
	DisableTaskEvents() (changed bool)
	SendHeartbeat()
}

// MailboxConfig configures a Mailbox.
type MailboxConfig struct {
	NodeName string // e.g. "celery@host" (required)
	Exchange string // control_exchange; "celery" when empty → celery.pidbox
	Worker   Worker // required
	Revoked  *Revoked
	Clock    *Clock       // shared with Events; a new one when nil
	Events   EventControl // nil: enable/disable_events and heartbeat have no effect
	// Shared, when set, is the connection the mailbox uses (with the events) instead of
	// dialling its own; NewMailbox's dial may then be nil.
	Shared  *SharedConn
	Logger  *zap.Logger
	Version string // ccworker version, for `report`

	// QueueExpires and QueueTTL are control_queue_expires (10 s) and control_queue_ttl (300 s).
	QueueExpires, QueueTTL time.Duration
	// ExpiresGrace: a request whose `expires` header (the client's deadline) is more than
	// ExpiresGrace in the past is dropped unanswered. kombu 5.2 itself does not check it; the
	// grace (default 10 s) keeps a worker whose clock runs ahead of the client's answering.
	ExpiresGrace time.Duration
	// Backoff bounds the delay between reconnection rounds; zero = backoff's defaults.
	Backoff backoff.Policy
}

// Mailbox is the worker's pidbox node: it consumes `<node>.<exchange>.pidbox` on its own
// connection and answers remote-control and inspect requests like Celery's Node.
type Mailbox struct {
	cfg     MailboxConfig
	log     *zap.Logger
	clock   *Clock
	revoked *Revoked
	started time.Time
	now     func() time.Time

	mu         sync.Mutex
	lastQueues []QueueInfo // last non-empty Queues(): active_queues is never empty

	conn      connector
	startOnce sync.Once
	cancel    context.CancelFunc // set by Start
	done      chan struct{}
	ready     chan struct{}
	once      sync.Once
}

// NewMailbox checks cfg and returns a Mailbox; Start runs it.
func NewMailbox(dial Dialer, cfg MailboxConfig) (*Mailbox, error) {
	conn := connectorFor(dial, cfg.Shared)
	if cfg.NodeName == "" || cfg.Worker == nil || conn == nil {
		return nil, errors.New("control: NewMailbox needs a dialer, a node name and a Worker")
	}
	if cfg.Exchange == "" {
		cfg.Exchange = "celery"
	}
	if cfg.Revoked == nil {
		cfg.Revoked = NewRevokedFromEnv()
	}
	if cfg.Clock == nil {
		cfg.Clock = &Clock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.QueueExpires == 0 {
		cfg.QueueExpires = 10 * time.Second
	}
	if cfg.QueueTTL == 0 {
		cfg.QueueTTL = 300 * time.Second
	}
	if cfg.ExpiresGrace == 0 {
		cfg.ExpiresGrace = 10 * time.Second
	}
	return &Mailbox{
		cfg: cfg, log: cfg.Logger.Named("pidbox"), clock: cfg.Clock, revoked: cfg.Revoked,
		started: time.Now(), now: time.Now, conn: conn, ready: make(chan struct{}),
	}, nil
}

// QueueName is the node's pidbox queue, e.g. "celery@host.celery.pidbox".
func (m *Mailbox) QueueName() string { return m.cfg.NodeName + "." + m.cfg.Exchange + ".pidbox" }

// Revoked returns the revoked set the mailbox maintains.
func (m *Mailbox) Revoked() *Revoked { return m.revoked }

// Clock returns the Lamport clock.
func (m *Mailbox) Clock() *Clock { return m.clock }

// Ready is closed once the mailbox consumes its queue for the first time.
func (m *Mailbox) Ready() <-chan struct{} { return m.ready }

// Start runs the mailbox on its own goroutine until Stop, reconnecting with backoff
// whenever the connection is lost. It does not wait for the first connection (see
// Ready); ctx only bounds starting. A second Start does nothing.
func (m *Mailbox) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.startOnce.Do(func() {
		run, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		m.mu.Lock()
		m.cancel, m.done = cancel, done
		m.mu.Unlock()
		go func() {
			defer close(done)
			runWithReconnect(run, m.log, m.cfg.Backoff, m.conn, m.session, nil)
		}()
	})
	return nil
}

// Stop stops consuming, closes the connection and waits for the goroutine (ctx is not
// needed: closing does not wait for the broker). Stop before Start, or twice, is fine.
func (m *Mailbox) Stop(ctx context.Context) error {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return nil
}

// runWithReconnect dials and runs session until ctx ends; it logs each transition once
// (lost → "reconnecting", first failed dial, back → "connected").
func runWithReconnect(ctx context.Context, log *zap.Logger, policy backoff.Policy, c connector,
	session func(ctx context.Context, conn *amqp.Connection) error, stop <-chan struct{}) {
	b := backoff.New(policy)
	down := false
	for ctx.Err() == nil {
		select {
		case <-stop:
			return
		default:
		}
		conn, err := c.connect(ctx)
		if err == nil {
			if down {
				log.Info("reconnected to the broker")
			}
			down = false
			b.Reset()
			err = session(ctx, conn)
			c.release(conn)
			if ctx.Err() != nil || errors.Is(err, errStopped) {
				return
			}
			log.Warn("connection lost, reconnecting", zap.Error(err))
			down = true
		} else if !down {
			if errors.Is(err, prefetch.ErrPermanent) {
				// The task consumer meets the same error and ends the worker, saying why.
				log.Debug("cannot connect to the broker", zap.Error(err))
			} else {
				log.Warn("cannot connect to the broker, retrying", zap.Error(err))
			}
			down = true
		}
		t := time.NewTimer(b.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (m *Mailbox) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	exchange := m.cfg.Exchange + ".pidbox"
	if err := ch.ExchangeDeclare(exchange, "fanout", false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare %s: %w", exchange, err)
	}
	q, err := ch.QueueDeclare(m.QueueName(), false, true, false, false, amqp.Table{
		"x-expires":     int32(m.cfg.QueueExpires / time.Millisecond),
		"x-message-ttl": int32(m.cfg.QueueTTL / time.Millisecond),
	})
	if err != nil {
		return fmt.Errorf("declare %s: %w", m.QueueName(), err)
	}
	if q.Consumers > 0 {
		m.log.Warn("A node named " + m.cfg.NodeName + " is already using this process mailbox! " +
			"Give each node a unique node name (-n).")
	}
	if err := ch.QueueBind(q.Name, "", exchange, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", q.Name, err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", q.Name, err)
	}
	m.once.Do(func() { close(m.ready) })
	rp := &replier{conn: conn, log: m.log}
	defer rp.close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-closed:
			return e
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("pidbox channel closed")
			}
			m.onDelivery(ctx, rp, d)
		}
	}
}

// replier publishes replies on a channel of its own, reopened after an error, so a reply
// the broker refuses (a client's odd reply exchange) never stops the consumer.
type replier struct {
	conn     *amqp.Connection
	log      *zap.Logger
	ch       *amqp.Channel
	declared map[string]bool
}

func (r *replier) close() {
	if r.ch != nil {
		_ = r.ch.Close()
	}
}

func (r *replier) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	if r.ch == nil || r.ch.IsClosed() {
		ch, err := r.conn.Channel()
		if err != nil {
			return err
		}
		r.ch, r.declared = ch, map[string]bool{}
	}
	if exchange != "" && !r.declared[exchange] {
		if err := r.ch.ExchangeDeclare(exchange, "direct", false, false, false, false, nil); err != nil {
			r.ch = nil
			return fmt.Errorf("declare reply exchange %s: %w", exchange, err)
		}
		r.declared[exchange] = true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return r.ch.PublishWithContext(ctx, exchange, key, false, false, msg)
}

// request is a decoded pidbox message body.
type request struct {
	Method      string         `json:"method"`
	Arguments   map[string]any `json:"arguments"`
	Destination any            `json:"destination"`
	Pattern     string         `json:"pattern"`
	Matcher     string         `json:"matcher"`
	Ticket      any            `json:"ticket"`
	ReplyTo     *struct {
		Exchange   string `json:"exchange"`
		RoutingKey string `json:"routing_key"`
	} `json:"reply_to"`
}

func (m *Mailbox) onDelivery(ctx context.Context, rp *replier, d amqp.Delivery) {
	reply, replyTo, ticket, ok := m.handleMessage(d.ContentType, d.Body, d.Headers)
	if !ok || replyTo == nil {
		return
	}
	body, err := protocol.AppendJSON(nil, reply)
	if err != nil {
		m.log.Error("cannot encode a pidbox reply", zap.Error(err))
		return
	}
	err = rp.publish(ctx, replyTo.Exchange, replyTo.RoutingKey, amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Transient,
		Headers: amqp.Table{"ticket": ticket, "clock": m.clock.Forward()}, Body: body,
	})
	if err != nil {
		m.log.Warn("cannot send a pidbox reply", zap.Error(err))
	}
}

type replyAddr struct{ Exchange, RoutingKey string }

// handleMessage runs one request as Celery's Pidbox.on_message + Node.handle_message do. It
// returns the reply body ({node: result}), where to send it, and ok=false when the request
// is not for us, expired or undecodable.
func (m *Mailbox) handleMessage(contentType string, body []byte, headers amqp.Table) (out any, to *replyAddr, ticket any, ok bool) {
	m.clock.Forward() // Pidbox.on_message: clients rarely have a valid clock
	if contentType != "" && contentType != "application/json" {
		m.log.Warn("pidbox request in an unsupported serializer (only json is accepted)", zap.String("content_type", contentType))
		return nil, nil, nil, false
	}
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		m.log.Warn("cannot decode a pidbox request", zap.Error(err))
		return nil, nil, nil, false
	}
	if c, ok := numArg(headers["clock"]); ok {
		m.clock.Adjust(int64(c))
	}
	if !matches(m.cfg.NodeName, req.Destination, req.Pattern, req.Matcher) {
		return nil, nil, nil, false
	}
	if exp, ok := numArg(headers["expires"]); ok && exp > 0 {
		deadline := time.Unix(0, int64(exp*1e9)).Add(m.cfg.ExpiresGrace)
		if m.now().After(deadline) {
			m.log.Debug("dropped an expired pidbox request", zap.String("method", req.Method))
			return nil, nil, nil, false
		}
	}
	m.log.Debug("pidbox request", zap.String("method", req.Method), zap.Any("arguments", req.Arguments))
	result, reply := m.dispatch(req.Method, req.Arguments)
	if req.ReplyTo == nil || !reply {
		return nil, nil, nil, true
	}
	return map[string]any{m.cfg.NodeName: result}, &replyAddr{req.ReplyTo.Exchange, req.ReplyTo.RoutingKey}, req.Ticket, true
}

// numArg converts AMQP header / JSON numbers.
func numArg(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	case nil:
		return 0, false
	}
	if i := toInt(v); i != 0 {
		return float64(i), true
	}
	return 0, false
}
