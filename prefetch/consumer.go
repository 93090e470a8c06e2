// Package prefetch is the AMQP side of the worker: it connects (and reconnects) to
// RabbitMQ, declares queues exactly as Celery does, consumes them with per-consumer QoS,
// hands each delivery to the worker and batches the acknowledgements.
package prefetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
)

// ErrPermanent marks connection failures that retrying cannot fix: refused credentials,
// a missing vhost, a certificate the peer does not trust, a queue declared with other
// arguments. The worker exits on them instead of retrying forever.
var ErrPermanent = errors.New("permanent broker error")

// Queue is a queue to consume, with its exchange and binding, declared the way Celery
// declares it so neither side ever gets 406 PRECONDITION_FAILED.
type Queue struct {
	Name         string
	Exchange     string // "" = the default exchange: nothing to declare or bind
	ExchangeType string // "direct" when empty
	RoutingKey   string
	Durable      bool
	AutoDelete   bool
	Exclusive    bool
	Args         amqp.Table // x-max-priority, x-queue-type, ...
	// ArgsSetting names the setting Args come from (task_queues, task_queue_max_priority):
	// an existing queue with other arguments is then a conflict. When empty, Args are
	// defaults (task_default_queue_type, task_create_missing_queue_type) and an existing
	// queue is used as it is, whatever its type.
	ArgsSetting string
}

// CeleryQueue is the queue Celery creates for `-Q name` when task_queues does not name it:
// a durable direct exchange and a durable queue of the same name, bound by that name.
func CeleryQueue(name string, maxPriority int) Queue {
	q := Queue{Name: name, Exchange: name, ExchangeType: "direct", RoutingKey: name, Durable: true}
	if maxPriority > 0 {
		q.Args = amqp.Table{"x-max-priority": int32(maxPriority)}
		q.ArgsSetting = "task_queue_max_priority"
	}
	return q
}

// Config configures a Consumer.
type Config struct {
	URLs []string // AMQP URIs: the failover list (see Dialer)
	// FailoverStrategy is broker_failover_strategy: RoundRobin ("" too) or Shuffle.
	FailoverStrategy string
	TLS              *tls.Config // nil = plain unless the URI is amqps
	Heartbeat        time.Duration
	ConnectTimeout   time.Duration
	Queues           []Queue
	Prefetch         int            // per consumer; 0 = unlimited
	MaxAckHold       time.Duration  // how long a finished delivery may wait behind a slower one
	ConnectionName   string         // shown in the RabbitMQ management UI
	Backoff          backoff.Policy // between reconnection rounds; zero = backoff's defaults
	Logger           *zap.Logger
	// NativeDelay sets up Celery 5.5+'s native delayed delivery on every connection (the
	// celery_delayed_* levels and the bindings of the queues consumed) and parks far-ETA
	// tasks through it, as a Celery 5.5+ worker does when its queues are quorum queues. It
	// is also switched on when a queue consumed turns out to be a quorum queue.
	NativeDelay bool
	// NativeDelayQueueType is the type of the celery_delayed_* queues:
	// broker_native_delayed_delivery_queue_type, "quorum" when empty.
	NativeDelayQueueType string

	// rawHeaders makes the connections hand header tables to the consumer unparsed
	// (fieldFixConn's wrap): set by New for the task connection only, whose deliveries
	// deliverLoop unwraps.
	rawHeaders bool
}

// The connection defaults every AMQP connection of the worker shares (tasks, publishing,
// events, remote control), in one place.
const (
	DefaultHeartbeat      = 60 * time.Second
	DefaultConnectTimeout = 4 * time.Second // Celery's broker_connection_timeout
	DefaultMaxAckHold     = 100 * time.Millisecond
	DefaultConnectionName = "ccworker"
)

func (c *Config) setDefaults() {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxAckHold == 0 {
		c.MaxAckHold = DefaultMaxAckHold
	}
	if c.ConnectionName == "" {
		c.ConnectionName = DefaultConnectionName
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Delivery is one message taken from a queue. Exactly one of Ack or Reject should be
// called; after a reconnect both are no-ops, because the broker has already put the
// message back.
type Delivery struct {
	Queue           string
	Exchange        string
	RoutingKey      string
	Redelivered     bool
	ContentType     string
	ContentEncoding string
	Headers         amqp.Table
	Body            []byte
	CorrelationID   string
	ReplyTo         string
	Priority        uint8
	Tag             uint64
	// The other basic properties, which Celery hands to tasks (request.properties).
	DeliveryMode uint8
	Expiration   string
	MessageID    string
	Timestamp    time.Time
	Type         string
	UserID       string
	AppID        string

	acker *acker
}

// Ack acknowledges the delivery (batched with its neighbours).
func (d *Delivery) Ack() { d.acker.ack(d.Tag) }

// Reject rejects the delivery at once; requeue puts it back in its queue.
func (d *Delivery) Reject(requeue bool) { d.acker.nack(d.Tag, requeue) }

// Handler receives deliveries, one goroutine per queue. It may block, which is how
// back-pressure reaches the broker: RabbitMQ stops sending at the prefetch limit. ctx
// is cancelled when consuming stops; a handler that gives up then should leave the
// delivery unsettled.
type Handler func(ctx context.Context, d *Delivery)

// Consumer owns the broker connection.
type Consumer struct {
	cfg Config
	log *zap.Logger

	stopConsuming context.CancelFunc
	consumeCtx    context.Context
	closing       chan struct{}
	done          chan struct{}
	closeOnce     sync.Once
	started       atomic.Bool

	lostConn, lostChannel atomic.Uint64 // connection losses, by cause
	dialer                *Dialer
	hold                  chan struct{} // an acker holds finished tags: tick until none does

	mu   sync.Mutex
	conn *amqp.Connection // current connection, nil while reconnecting
	pub  *amqp.Channel    // confirm-mode channel for Publish, opened on demand
	mand *returnChannel   // confirm-mode channel for mandatory publishes (parks)
	sess *session         // current session, nil while reconnecting
	decl connDecl         // what is declared on conn

	mandMu sync.Mutex // one mandatory publish at a time: a return is matched to it

	queues []Queue // consumed now: cfg.Queues, plus add_consumer, minus cancel_consumer
	handle Handler // set by Start
}

// connDecl is what has been declared on one connection. It starts empty on each new
// connection: after a reconnect (perhaps to another node of a cluster, where a classic
// queue may be missing) everything is declared again before it is used.
type connDecl struct {
	conn      *amqp.Connection
	useNative bool            // the deployment uses native delayed delivery (a quorum queue seen)
	native    bool            // native delayed delivery is set up on conn
	quorum    map[string]bool // consumed queues that are quorum queues
	done      map[string]bool // delay queues, bindings and queues declared on conn
}

func (d *connDecl) reset(conn *amqp.Connection) {
	*d = connDecl{conn: conn, quorum: map[string]bool{}, done: map[string]bool{}}
}

// New checks cfg and returns a Consumer; nothing connects until Start.
func New(cfg Config) (*Consumer, error) {
	if len(cfg.Queues) == 0 {
		return nil, errors.New("prefetch: no queue to consume")
	}
	cfg.rawHeaders = true
	dialer, err := NewDialer(cfg)
	if err != nil {
		return nil, err
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Consumer{
		cfg: cfg, log: cfg.Logger, dialer: dialer, queues: append([]Queue(nil), cfg.Queues...),
		consumeCtx: ctx, stopConsuming: cancel,
		closing: make(chan struct{}), done: make(chan struct{}), hold: make(chan struct{}, 1),
	}, nil
}

// Start connects, declares the queues and starts consuming. The first connection is
// retried with backoff until ctx is done, except for permanent errors, which are
// returned. Later connection losses are retried in the background for ever.
func (c *Consumer) Start(ctx context.Context, handle Handler) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("prefetch: Start called twice")
	}
	c.handle = handle
	s, err := c.connectRetrying(ctx)
	if err != nil {
		c.stopConsuming()
		close(c.done)
		return err
	}
	go c.supervise(s, handle)
	return nil
}

// StopConsuming cancels the consumers: no new deliveries arrive, but the connection
// stays open so that tasks already running can still be acknowledged.
func (c *Consumer) StopConsuming() { c.stopConsuming() }

// Close stops consuming, closes the connection (the broker requeues whatever is
// unacknowledged) and waits for the consumer's goroutines.
func (c *Consumer) Close() error {
	c.stopConsuming()
	c.closeOnce.Do(func() {
		close(c.closing)
		if c.started.CompareAndSwap(false, true) {
			close(c.done) // never started: nothing to wait for, and Start now refuses
		}
	})
	<-c.done
	return nil
}

type session struct {
	conn    *amqp.Connection
	closed  chan *amqp.Error // the connection's close notification
	chClose chan *amqp.Error // any channel's close notification
	wg      sync.WaitGroup   // delivery loops

	mu        sync.Mutex
	consumers []*queueConsumer
}

// queueConsumer is one queue's consumer in a session: its own channel and acker.
type queueConsumer struct {
	q      Queue
	acker  *acker
	cancel context.CancelFunc // cancel_consumer
}

func (s *session) ackers() []*acker {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*acker, len(s.consumers))
	for i, qc := range s.consumers {
		out[i] = qc.acker
	}
	return out
}

// Reconnects counts the reconnections since Start, by cause: "connection" (the
// connection was lost) and "channel" (a channel was closed by the broker).
func (c *Consumer) Reconnects() map[string]uint64 {
	return map[string]uint64{"connection": c.lostConn.Load(), "channel": c.lostChannel.Load()}
}

// Waiting returns how many messages wait (ready, not yet delivered to any consumer) in
// the queues consumed now, read with passive declares on a channel of its own. A worker
// that has seen no task for a while asks it before it leaves (--max-idle): RabbitMQ can
// take a few hundred milliseconds to start or resume delivering from a long queue.
func (c *Consumer) Waiting(ctx context.Context) (int, error) {
	c.mu.Lock()
	conn := c.conn
	queues := append([]Queue(nil), c.queues...)
	c.mu.Unlock()
	if conn == nil {
		return 0, ErrNotConnected
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("prefetch: count waiting messages: %w", err)
	}
	defer ch.Close()
	n := 0
	for _, q := range queues {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		// A passive declare of a missing queue closes the channel; the queue was
		// declared when consuming began, so that is an error worth reporting.
		info, err := ch.QueueDeclarePassive(q.Name, q.Durable, q.AutoDelete, false, false, nil)
		if err != nil {
			return n, fmt.Errorf("prefetch: count waiting messages in %s: %w", q.Name, err)
		}
		n += info.Messages
	}
	return n, nil
}

// Queues returns the queues consumed now (the configured ones, plus add_consumer,
// minus cancel_consumer), in order.
func (c *Consumer) Queues() []Queue {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Queue(nil), c.queues...)
}

// AddQueue declares q and starts consuming it, now if connected and after every
// reconnect (Celery's add_consumer). Adding a queue already consumed does nothing.
func (c *Consumer) AddQueue(q Queue) error {
	c.mu.Lock()
	for _, have := range c.queues {
		if have.Name == q.Name {
			c.mu.Unlock()
			return nil
		}
	}
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		// Declared before it joins the list, so no consumer ever sees it undeclared.
		if err := c.declareConsumed(conn, []Queue{q}); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.queues = append(c.queues, q)
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		c.startConsumer(s, q)
	} // else the next session starts it (and declares it when it connects)
	return nil
}

// CancelQueue stops consuming the named queue (Celery's cancel_consumer). Deliveries
// already handed out finish normally; the ones still in flight are put back.
func (c *Consumer) CancelQueue(name string) error {
	if !c.removeQueue(name) {
		return fmt.Errorf("prefetch: not consuming from %q", name)
	}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, qc := range s.consumers {
		if qc.q.Name == name {
			qc.cancel()
		}
	}
	return nil
}

func (c *Consumer) removeQueue(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, q := range c.queues {
		if q.Name == name {
			c.queues = append(c.queues[:i:i], c.queues[i+1:]...)
			return true
		}
	}
	return false
}

func (c *Consumer) startConsumer(s *session, q Queue) {
	ctx, cancel := context.WithCancel(c.consumeCtx)
	qc := &queueConsumer{q: q, cancel: cancel, acker: newAcker(nil, c.cfg.MaxAckHold, func(err error) {
		c.log.Debug("ack failed (channel closing)", zap.Error(err))
	})}
	qc.acker.batch = batchFor(c.cfg.Prefetch)
	qc.acker.onHold = func() {
		select {
		case c.hold <- struct{}{}:
		default:
		}
	}
	s.mu.Lock()
	s.consumers = append(s.consumers, qc)
	s.wg.Add(1)
	s.mu.Unlock()
	go c.deliverLoop(ctx, s, qc, c.handle)
}

func (c *Consumer) supervise(s *session, handle Handler) {
	defer close(c.done)
	b := backoff.New(c.cfg.Backoff)
	for {
		lost := c.serve(s, handle)
		if !lost {
			return
		}
		for {
			select {
			case <-c.closing:
				return
			case <-time.After(b.Next()):
			}
			var err error
			s, err = c.connect(c.consumeCtx)
			if err == nil {
				c.log.Info("broker connection restored", zap.Int("attempts", b.Attempts()))
				b.Reset()
				break
			}
			if c.consumeCtx.Err() != nil {
				<-c.closing
				return
			}
			c.log.Warn("broker reconnect failed", zap.Int("attempt", b.Attempts()), zap.Error(err))
		}
	}
}

// serve runs one session until the connection is lost (true) or Close is called (false).
func (c *Consumer) serve(s *session, handle Handler) (lost bool) {
	// The straggler ticker runs only while an acker holds finished tags: an idle worker
	// has no reason to wake 20 times a second.
	ticker := time.NewTicker(c.cfg.MaxAckHold / 2)
	ticker.Stop()
	defer ticker.Stop()
	ticking := false
	c.mu.Lock()
	c.sess = s
	queues := append([]Queue(nil), c.queues...)
	c.mu.Unlock()
	for _, q := range queues {
		c.startConsumer(s, q)
	}
	end := func() {
		for _, a := range s.ackers() {
			a.close()
		}
		c.mu.Lock()
		c.conn, c.pub, c.mand, c.sess = nil, nil, nil, nil
		c.mu.Unlock()
		_ = s.conn.Close()
		s.wg.Wait()
	}
	for {
		select {
		case <-c.hold:
			if !ticking {
				ticker.Reset(c.cfg.MaxAckHold / 2)
				ticking = true
			}
		case <-ticker.C:
			held := false
			for _, a := range s.ackers() {
				a.tick()
				held = held || a.holding()
			}
			if !held {
				ticker.Stop()
				ticking = false
			}
		case err := <-s.closed:
			c.lostConn.Add(1)
			c.log.Warn("broker connection lost; reconnecting", zap.Error(err))
			end()
			return true
		case err := <-s.chClose:
			if c.consumeCtx.Err() != nil && err == nil {
				continue // a channel closed by our own cancel
			}
			c.lostChannel.Add(1)
			c.log.Warn("broker channel closed; reconnecting", zap.Error(err))
			end()
			return true
		case <-c.closing:
			for _, a := range s.ackers() {
				a.drain()
			}
			end()
			return false
		}
	}
}

func (c *Consumer) deliverLoop(ctx context.Context, s *session, qc *queueConsumer, handle Handler) {
	defer s.wg.Done()
	q, a := qc.q, qc.acker
	ch, err := s.conn.Channel()
	if err != nil {
		c.reportChannelError(s, err)
		return
	}
	ch.NotifyClose(forward(s.chClose))
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		c.reportChannelError(s, err)
		return
	}
	a.setChannel(ch)
	tag := fmt.Sprintf("ccworker-%s", q.Name)
	msgs, err := ch.ConsumeWithContext(ctx, q.Name, tag, false, false, false, false, nil)
	if err != nil {
		c.reportChannelError(s, err)
		return
	}
	for m := range msgs {
		a.track(m.DeliveryTag)
		if ctx.Err() != nil {
			if c.consumeCtx.Err() == nil {
				a.nack(m.DeliveryTag, true) // this queue was cancelled: give it back now
			}
			continue // shutting down: the broker requeues it when the connection closes
		}
		headers, err := unwrapHeaders(m.Headers)
		if err != nil { // fieldFixConn wraps only tables that decode: not expected
			c.log.Error("cannot decode a message's headers; delivered without them", zap.String("queue", q.Name), zap.Error(err))
		}
		handle(c.consumeCtx, &Delivery{
			Queue: q.Name, Exchange: m.Exchange, RoutingKey: m.RoutingKey, Redelivered: m.Redelivered,
			ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Headers: headers,
			Body: m.Body, CorrelationID: m.CorrelationId, ReplyTo: m.ReplyTo, Priority: m.Priority,
			Tag: m.DeliveryTag, acker: a, DeliveryMode: m.DeliveryMode, Expiration: m.Expiration,
			MessageID: m.MessageId, Timestamp: m.Timestamp, Type: m.Type, UserID: m.UserId, AppID: m.AppId,
		})
	}
}

func (c *Consumer) reportChannelError(s *session, err error) {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) {
		aerr = &amqp.Error{Code: amqp.ChannelError, Reason: err.Error()}
	}
	select {
	case s.chClose <- aerr:
	default:
	}
}

// forward adapts amqp091's close notifications (closed without a value on a clean
// close) to a shared channel.
func forward(dst chan *amqp.Error) chan *amqp.Error {
	src := make(chan *amqp.Error, 1)
	go func() {
		for e := range src {
			select {
			case dst <- e:
			default:
			}
		}
	}()
	return src
}

func (c *Consumer) connectRetrying(ctx context.Context) (*session, error) {
	b := backoff.New(c.cfg.Backoff)
	for attempt := 1; ; attempt++ {
		s, err := c.connect(ctx)
		if err == nil {
			return s, nil
		}
		if errors.Is(err, ErrPermanent) {
			return nil, err
		}
		delay := b.Next()
		c.log.Warn("cannot reach the broker; retrying", zap.Int("attempt", attempt),
			zap.Duration("next_in", delay), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("prefetch: giving up connecting: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}

// connect runs one round of the failover list and declares the queues on the
// connection it opens.
func (c *Consumer) connect(ctx context.Context) (*session, error) {
	conn, err := c.dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.decl.reset(conn)
	c.mu.Unlock()
	if err := c.declareConsumed(conn, c.Queues()); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s := &session{
		conn:    conn,
		closed:  conn.NotifyClose(make(chan *amqp.Error, 1)),
		chClose: make(chan *amqp.Error, 16),
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	return s, nil
}

// Dial opens a connection with cfg's TLS, heartbeat and timeouts, classifying errors
// that retrying cannot fix as ErrPermanent.
func Dial(url string, cfg Config) (*amqp.Connection, error) {
	cfg.setDefaults()
	uri, err := amqp.ParseURI(url)
	if err != nil {
		return nil, fmt.Errorf("%w: broker URL: %v", ErrPermanent, err)
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.ConnectionName)
	props["product"] = "ccworker"
	acfg := amqp.Config{
		Heartbeat:  cfg.Heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial:       amqp.DefaultDial(cfg.ConnectTimeout),
	}
	tlsCfg := cfg.TLS
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
	} else if uri.Scheme == "amqps" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tlsCfg != nil && tlsCfg.ServerName == "" {
		tlsCfg.ServerName = uri.Host // SNI, as amqp091 would set it
	}
	// The socket is ours (TLS included, so that the frames can be fixed after
	// decryption): amqp091 is given a plain amqp:// URL and our connection. Celery users
	// switch TLS on with broker_use_ssl and keep an amqp:// URL (cyberCommons does).
	acfg.Dial = dialer(cfg.ConnectTimeout, tlsCfg, cfg.rawHeaders)
	uri.Scheme = "amqp"
	conn, err := amqp.DialConfig(uri.String(), acfg)
	if err != nil {
		return nil, classify(err)
	}
	return conn, nil
}

// dialer opens the TCP connection, does the TLS handshake when tlsCfg is set, and puts
// fieldFixConn under amqp091.
func dialer(timeout time.Duration, tlsCfg *tls.Config, wrap bool) func(network, addr string) (net.Conn, error) {
	base := amqp.DefaultDial(timeout)
	return func(network, addr string) (net.Conn, error) {
		c, err := base(network, addr)
		if err != nil {
			return nil, err
		}
		if tlsCfg != nil {
			tc := tls.Client(c, tlsCfg)
			_ = c.SetDeadline(time.Now().Add(timeout))
			if err := tc.Handshake(); err != nil {
				_ = c.Close()
				return nil, err
			}
			_ = c.SetDeadline(time.Now().Add(timeout)) // the AMQP handshake's; amqp091 clears it
			c = tc
		}
		return newFieldFixConn(c, wrap), nil
	}
}

// classify marks errors that no retry can fix.
func classify(err error) error {
	var aerr *amqp.Error
	if errors.As(err, &aerr) {
		switch aerr.Code {
		case amqp.AccessRefused:
			return fmt.Errorf("%w: the broker refused the login (ACCESS_REFUSED: check the user, password and vhost permissions): %v", ErrPermanent, err)
		case amqp.NotAllowed:
			return fmt.Errorf("%w: the broker refused the vhost (NOT_ALLOWED: does it exist, may this user use it?): %v", ErrPermanent, err)
		case amqp.PreconditionFailed, amqp.NotFound, amqp.CommandInvalid:
			return fmt.Errorf("%w: %v", ErrPermanent, err)
		case amqp.FrameError:
			// With TLS 1.3 the broker checks the client certificate after the handshake;
			// its alert arrives on the first read, which amqp091 reports as a frame
			// error ("remote error: tls: certificate required").
			if strings.HasPrefix(aerr.Reason, "remote error: tls: ") {
				return fmt.Errorf("%w: the broker refused this client's TLS certificate (check certfile and keyfile in broker_use_ssl: missing, expired, or not signed by the broker's CA): %v", ErrPermanent, err)
			}
		}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return fmt.Errorf("%w: the broker refused the TLS handshake: %v", ErrPermanent, err)
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		alert       tls.AlertError
		record      tls.RecordHeaderError
	)
	if errors.As(err, &unknownAuth) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record) {
		return fmt.Errorf("%w: TLS: %v", ErrPermanent, err)
	}
	if errors.Is(err, amqp.ErrSASL) || errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	return err
}

// Declare declares each queue's exchange, the queue and its binding, in Celery's order
// (exchange.declare, queue.declare, queue.bind). An existing queue of another type is
// used as it is unless q.ArgsSetting says its arguments were asked for; then the
// mismatch is a permanent error naming the queue, the setting and the broker's words.
func Declare(conn *amqp.Connection, queues []Queue) error {
	_, err := declareQueues(conn, queues)
	return err
}

// declareConsumed declares queues to consume on conn, and, when the deployment uses
// native delayed delivery (NativeDelay, or a quorum queue among them), its levels and
// the queues' bindings, as a Celery 5.5+ worker does at start.
func (c *Consumer) declareConsumed(conn *amqp.Connection, queues []Queue) error {
	ds, err := declareQueues(conn, queues)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.decl.conn != conn {
		c.mu.Unlock()
		return ErrNotConnected // a stale connection: the next one declares again
	}
	native := c.cfg.NativeDelay || c.decl.useNative
	for _, d := range ds {
		c.decl.quorum[d.Name] = d.Quorum
		native = native || d.Quorum
	}
	c.decl.useNative = native
	c.mu.Unlock()
	for _, d := range ds {
		if d.Note != "" {
			c.log.Warn(d.Note)
		}
	}
	if !native {
		return nil
	}
	if err := c.setupNative(conn); err != nil {
		// Celery's worker carries on too; ccworker parks in its own delay queues meanwhile.
		c.log.Warn("cannot set up native delayed delivery; far-ETA tasks are parked in ccworker.delay.* queues",
			zap.Error(err))
		return nil
	}
	for _, q := range queues {
		if err := bindNativeDelayed(conn, q); err != nil {
			return err
		}
		c.markDeclared(conn, "bind:"+q.Name)
	}
	return nil
}

// setupNative declares the native delayed delivery levels once per connection.
func (c *Consumer) setupNative(conn *amqp.Connection) error {
	c.mu.Lock()
	done := c.decl.conn == conn && c.decl.native
	c.mu.Unlock()
	if done {
		return nil
	}
	notes, err := declareNativeDelayed(conn, c.cfg.NativeDelayQueueType)
	for _, n := range notes {
		c.log.Info(n)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.decl.conn == conn {
		c.decl.native = true
	}
	c.mu.Unlock()
	return nil
}

func (c *Consumer) declaredOn(conn *amqp.Connection, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.decl.conn == conn && c.decl.done[key]
}

func (c *Consumer) markDeclared(conn *amqp.Connection, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decl.conn == conn {
		c.decl.done[key] = true
	}
}

// forgetDeclared makes the next use on conn declare everything again: something was
// deleted under the worker (a 404, a returned message).
func (c *Consumer) forgetDeclared(conn *amqp.Connection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.decl.conn == conn {
		c.decl.native, c.decl.done = false, map[string]bool{}
	}
}

// Purge declares the queues and deletes their waiting messages (celery worker --purge),
// returning how many were removed. It connects to the first broker of cfg's failover
// list that answers.
func Purge(ctx context.Context, cfg Config) (int, error) {
	d, err := NewDialer(cfg)
	if err != nil {
		return 0, err
	}
	conn, err := d.Dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := Declare(conn, cfg.Queues); err != nil {
		return 0, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	total := 0
	for _, q := range cfg.Queues {
		n, err := ch.QueuePurge(q.Name, false)
		if err != nil {
			return total, fmt.Errorf("purge %q: %w", q.Name, err)
		}
		total += n
	}
	return total, nil
}
