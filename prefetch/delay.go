package prefetch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// MaxDelayBucket is the longest a message waits in one delay queue; a later ETA makes
// the message pass through several.
const MaxDelayBucket = 1 << 20 * time.Second // about 12 days

// DelayQueueName is the delay queue for messages of queue that wait bucket: a durable
// queue whose message TTL dead-letters them back to queue.
func DelayQueueName(queue string, bucket time.Duration) string {
	return fmt.Sprintf("ccworker.delay.%s.%ds", queue, int64(bucket/time.Second))
}

// DelayBucket is the largest power-of-two number of seconds not longer than wait (at
// least 1 s, at most MaxDelayBucket): a message never comes back after its ETA, and a
// long wait takes a handful of hops.
func DelayBucket(wait time.Duration) time.Duration {
	b := time.Second
	for b*2 <= wait && b < MaxDelayBucket {
		b *= 2
	}
	return b
}

// ErrStale is returned by Park for a delivery whose channel is gone: the broker has put
// the message back in its queue already, and a parked copy would run it twice.
var ErrStale = errors.New("prefetch: the delivery's channel is closed; the broker has requeued it")

// Stale says whether d's channel is gone (after a reconnect): Ack and Reject do nothing,
// the broker has put the message back.
func (d *Delivery) Stale() bool { return d.acker == nil || d.acker.isClosed() }

// Park moves d, unchanged, to broker-side delay queues that bring it back to its queue
// at until (or up to a second earlier), so a task due later is not held unacked
// (RabbitMQ's consumer_timeout, prefetch slots) and costs no memory meanwhile. When the
// deployment uses native delayed delivery the copy goes through the celery_delayed_*
// levels exactly as a Celery 5.5+ client publishes a countdown (quorum queues: it
// survives the loss of a node); otherwise through ccworker.delay.<queue>.<N>s.
//
// The copy is published mandatory and confirmed: Park returns nil only once the broker
// has routed it to a queue and confirmed it; then the caller acks d. A returned, nacked
// or failed copy is an error, and d is still the caller's to hold or reject. A copy that
// could not be routed makes the declarations of this connection be made again, and is
// tried once more.
func (c *Consumer) Park(ctx context.Context, d *Delivery, until time.Time) error {
	delay := 50 * time.Millisecond
	redeclared := false
	for {
		if d.Stale() {
			return ErrStale
		}
		conn, err := c.parkOnce(ctx, d, until)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrReturned) || isCode(err, amqp.NotFound) {
			c.forgetDeclared(conn)
			if redeclared {
				return err
			}
			redeclared = true
			continue
		}
		if errors.Is(err, ErrNacked) || errors.Is(err, ErrPermanent) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("park: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

func (c *Consumer) parkOnce(ctx context.Context, d *Delivery, until time.Time) (*amqp.Connection, error) {
	c.mu.Lock()
	conn, quorum := c.conn, c.decl.quorum[d.Queue]
	native := c.decl.useNative
	c.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		return conn, ErrNotConnected
	}
	wait := time.Until(until)
	if native {
		if err := c.setupNative(conn); err == nil {
			if !c.declaredOn(conn, "bind:"+d.Queue) {
				if err := bindNativeDelayed(conn, c.queueNamed(d.Queue)); err != nil {
					return conn, err
				}
				c.markDeclared(conn, "bind:"+d.Queue)
			}
			return conn, c.publishMandatory(ctx, DelayedLevelName(DelayedLevels-1),
				parkKey(countdownOf(wait), d.Queue), PublishingOf(d))
		} else if isCode(err, amqp.NotFound) || errors.Is(err, ErrNotConnected) {
			return conn, err
		}
		// Levels refused (another process declared them otherwise): fall back.
	}
	bucket := DelayBucket(wait)
	name := DelayQueueName(d.Queue, bucket)
	if !c.declaredOn(conn, name) {
		if err := declareDelayQueue(conn, name, d.Queue, bucket, quorum); err != nil {
			return conn, err
		}
		c.markDeclared(conn, name)
	}
	return conn, c.publishMandatory(ctx, "", name, PublishingOf(d))
}

// ErrNotNative is returned by PublishDelayed when the deployment does not use native
// delayed delivery: the caller publishes the message as it is, with its ETA.
var ErrNotNative = errors.New("prefetch: native delayed delivery is not in use")

// PublishDelayed publishes msg (a retry with a countdown) so that it arrives in queue at
// until, through the celery_delayed_* levels as a Celery 5.5+ client publishes a
// countdown, mandatory and confirmed. Without native delayed delivery it returns
// ErrNotNative and publishes nothing.
func (c *Consumer) PublishDelayed(ctx context.Context, queue string, msg amqp.Publishing, until time.Time) error {
	c.mu.Lock()
	conn, native := c.conn, c.decl.useNative
	c.mu.Unlock()
	if !native {
		return ErrNotNative
	}
	if conn == nil || conn.IsClosed() {
		return ErrNotConnected
	}
	send := func() error {
		if err := c.setupNative(conn); err != nil {
			return err
		}
		if !c.declaredOn(conn, "bind:"+queue) {
			if err := bindNativeDelayed(conn, c.queueNamed(queue)); err != nil {
				return err
			}
			c.markDeclared(conn, "bind:"+queue)
		}
		return c.publishMandatory(ctx, DelayedLevelName(DelayedLevels-1),
			parkKey(countdownOf(time.Until(until)), queue), msg)
	}
	err := send()
	if errors.Is(err, ErrReturned) || isCode(err, amqp.NotFound) {
		c.forgetDeclared(conn)
		err = send()
	}
	return err
}

// queueNamed is the consumed queue called name (for its exchange and routing key), or
// Celery's missing queue.
func (c *Consumer) queueNamed(name string) Queue {
	for _, q := range c.Queues() {
		if q.Name == name {
			return q
		}
	}
	return Queue{Name: name}
}

// declareDelayQueue declares a ccworker delay queue: messages wait bucket, then are
// dead-lettered to target through the default exchange. For a quorum target it is a
// quorum queue dead-lettering at-least-once, like Celery's levels; an older classic one
// of the same name is used as it is.
func declareDelayQueue(conn *amqp.Connection, name, target string, bucket time.Duration, quorum bool) error {
	args := amqp.Table{
		"x-message-ttl":             int64(bucket / time.Millisecond),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": target,
	}
	if quorum {
		args["x-queue-type"] = QueueQuorum
		args["x-overflow"] = "reject-publish"
		args["x-dead-letter-strategy"] = "at-least-once"
	}
	dc := &declarer{conn: conn}
	defer dc.close()
	if _, err := declareQueue(dc, Queue{Name: name, Durable: true, Args: args}); err != nil {
		return fmt.Errorf("declare delay queue %q: %w", name, err)
	}
	return nil
}

// PublishingOf copies d into a message to publish again: the same properties, body and
// headers, less the per-message TTL (the worker checks expiry itself, and stores
// REVOKED rather than letting the broker drop the message silently) and the headers
// RabbitMQ adds when dead-lettering.
func PublishingOf(d *Delivery) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers))
	for k, v := range d.Headers {
		if k == "x-death" || strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") {
			continue
		}
		h[k] = v
	}
	return amqp.Publishing{
		Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority,
		CorrelationId: d.CorrelationID, ReplyTo: d.ReplyTo, Body: d.Body,
	}
}

// Table converts a header map built outside amqp091 (nested map[string]any values)
// into the amqp.Table the library accepts.
func Table(m map[string]any) amqp.Table {
	t := make(amqp.Table, len(m))
	for k, v := range m {
		t[k] = tableValue(v)
	}
	return t
}

func tableValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return Table(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = tableValue(e)
		}
		return out
	case int:
		return int64(x)
	}
	return v
}
