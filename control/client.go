package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ClientOptions configures a Client. The zero value talks to Celery's defaults.
type ClientOptions struct {
	Exchange string // control_exchange; "celery" when empty → celery.pidbox / reply.celery.pidbox
	Clock    *Clock // Lamport clock for the `clock` header; a new one when nil
	// QueueExpires and QueueTTL are the reply queue's x-expires and x-message-ttl
	// (control_queue_expires 10 s, control_queue_ttl 300 s).
	QueueExpires, QueueTTL time.Duration
}

// Client is the caller's side of the pidbox protocol (kombu's Mailbox as used by
// celery.app.control.Inspect and Control): it broadcasts requests to celery.pidbox and
// collects the replies that carry its ticket from its own reply queue. It reaches ccworker
// and Python Celery workers alike.
//
// A Client uses one channel on conn (opened on first use) and serializes its calls; it
// does not own conn. Close it when done.
type Client struct {
	conn *amqp.Connection
	opts ClientOptions
	oid  string

	mu         sync.Mutex
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
	replyReady bool
}

// NewClient returns a Client publishing on conn.
func NewClient(conn *amqp.Connection, opts ClientOptions) *Client {
	if opts.Exchange == "" {
		opts.Exchange = "celery"
	}
	if opts.Clock == nil {
		opts.Clock = &Clock{}
	}
	if opts.QueueExpires == 0 {
		opts.QueueExpires = 10 * time.Second
	}
	if opts.QueueTTL == 0 {
		opts.QueueTTL = 300 * time.Second
	}
	return &Client{conn: conn, opts: opts, oid: newUUID()}
}

// ReplyQueue is the client's reply queue, "<oid>.reply.celery.pidbox".
func (c *Client) ReplyQueue() string { return c.oid + ".reply." + c.opts.Exchange + ".pidbox" }

func (c *Client) requestExchange() string { return c.opts.Exchange + ".pidbox" }
func (c *Client) replyExchange() string   { return "reply." + c.opts.Exchange + ".pidbox" }

// Close closes the client's channel; its auto-delete reply queue goes with it.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		return nil
	}
	err := c.ch.Close()
	c.ch, c.deliveries, c.replyReady = nil, nil, false
	return err
}

// Request is one pidbox request as kombu's Mailbox._publish encodes it.
type Request struct {
	Method      string
	Arguments   map[string]any
	Destination []string // nil: every node
	Ticket      string   // "" for a cast (no reply)
	ReplyTo     string   // the reply routing key (the client's oid); "" for a cast
	Timeout     time.Duration
}

// Encode returns the message kombu would publish for r: a JSON body {method, arguments,
// destination, pattern, matcher[, ticket, reply_to]} and headers {clock, expires}, where
// expires is the Unix time now+Timeout as a float (0 without a timeout).
func (r Request) Encode(exchange string, clock int64, now time.Time) amqp.Publishing {
	args := r.Arguments
	if args == nil {
		args = map[string]any{}
	}
	var dest any
	if len(r.Destination) > 0 {
		dest = r.Destination
	}
	body := map[string]any{
		"method": r.Method, "arguments": args, "destination": dest, "pattern": nil, "matcher": nil,
	}
	if r.Ticket != "" {
		body["ticket"] = r.Ticket
		body["reply_to"] = map[string]any{"exchange": "reply." + exchange + ".pidbox", "routing_key": r.ReplyTo}
	}
	b, err := json.Marshal(body)
	if err != nil { // arguments that JSON cannot encode: send what kombu would fail on
		b = []byte(fmt.Sprintf(`{"method":%q,"arguments":{}}`, r.Method))
	}
	expires := 0.0
	if r.Timeout > 0 {
		expires = float64(now.Add(r.Timeout).UnixNano()) / 1e9
	}
	return amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent,
		Headers: amqp.Table{"clock": clock, "expires": expires}, Body: b,
	}
}

// DecodeReply decodes one reply body ({node: result}) and reports whether its ticket
// header matches ticket; replies to other requests (late ones included) are not ours.
func DecodeReply(contentType string, headers amqp.Table, body []byte, ticket string) (map[string]json.RawMessage, bool, error) {
	if t, _ := headers["ticket"].(string); t != ticket {
		return nil, false, nil
	}
	if contentType != "" && contentType != "application/json" {
		return nil, true, fmt.Errorf("control: reply in %s (only JSON is supported)", contentType)
	}
	var out map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&out); err != nil {
		return nil, true, fmt.Errorf("control: cannot decode a reply: %w", err)
	}
	return out, true, nil
}

// Cast sends method to the nodes in dest (every node when empty) without asking for a
// reply (Control.broadcast(reply=False)).
func (c *Client) Cast(ctx context.Context, method string, args map[string]any, dest []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.open(); err != nil {
		return err
	}
	return c.publish(ctx, Request{Method: method, Arguments: args, Destination: dest})
}

// Broadcast sends method with args to the nodes in dest (every node when empty) and
// collects their replies for up to timeout, or until limit replies came (limit ≤ 0: no
// limit; with dest and no limit, len(dest) as Celery does). It returns the replies by node
// name; a node's handler error is its reply {"error": "..."}. No reply is not an error:
// the map is empty. Replies another node sent twice are merged (the last one wins).
func (c *Client) Broadcast(ctx context.Context, method string, args map[string]any, dest []string,
	timeout time.Duration, limit int) (map[string]json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.open(); err != nil {
		return nil, err
	}
	if err := c.declareReply(); err != nil {
		return nil, err
	}
	if limit <= 0 && len(dest) > 0 {
		limit = len(dest)
	}
	ticket := newUUID()
	if err := c.publish(ctx, Request{Method: method, Arguments: args, Destination: dest,
		Ticket: ticket, ReplyTo: c.oid, Timeout: timeout}); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	count := 0
	for {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-timer:
			return out, nil
		case d, ok := <-c.deliveries:
			if !ok {
				c.ch, c.deliveries, c.replyReady = nil, nil, false
				return out, errors.New("control: reply channel closed")
			}
			if clk, ok := numArg(d.Headers["clock"]); ok {
				c.opts.Clock.Adjust(int64(clk))
			}
			reply, mine, err := DecodeReply(d.ContentType, d.Headers, d.Body, ticket)
			if !mine || err != nil {
				continue
			}
			for node, v := range reply {
				out[node] = v
			}
			count++
			if limit > 0 && count >= limit {
				return out, nil
			}
		}
	}
}

func (c *Client) open() error {
	if c.ch != nil && !c.ch.IsClosed() {
		return nil
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(c.requestExchange(), "fanout", false, false, false, false, nil); err != nil {
		return fmt.Errorf("control: declare %s: %w", c.requestExchange(), err)
	}
	c.ch, c.deliveries, c.replyReady = ch, nil, false
	return nil
}

// declareReply declares the reply exchange and queue (kombu's Mailbox.get_reply_queue)
// and starts consuming it, once.
func (c *Client) declareReply() error {
	if c.replyReady {
		return nil
	}
	ex := c.replyExchange()
	if err := c.ch.ExchangeDeclare(ex, "direct", false, false, false, false, nil); err != nil {
		return fmt.Errorf("control: declare %s: %w", ex, err)
	}
	q, err := c.ch.QueueDeclare(c.ReplyQueue(), false, true, false, false, amqp.Table{
		"x-expires":     int32(c.opts.QueueExpires / time.Millisecond),
		"x-message-ttl": int32(c.opts.QueueTTL / time.Millisecond),
	})
	if err != nil {
		return fmt.Errorf("control: declare %s: %w", c.ReplyQueue(), err)
	}
	if err := c.ch.QueueBind(q.Name, c.oid, ex, false, nil); err != nil {
		return fmt.Errorf("control: bind %s: %w", q.Name, err)
	}
	d, err := c.ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("control: consume %s: %w", q.Name, err)
	}
	c.deliveries, c.replyReady = d, true
	return nil
}

func (c *Client) publish(ctx context.Context, r Request) error {
	msg := r.Encode(c.opts.Exchange, c.opts.Clock.Forward(), time.Now())
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.ch.PublishWithContext(pctx, c.requestExchange(), "", false, false, msg); err != nil {
		return fmt.Errorf("control: publish %s: %w", r.Method, err)
	}
	return nil
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
