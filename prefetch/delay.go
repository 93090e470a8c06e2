package prefetch

import (
	"context"
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

// Park moves d, unchanged, to the delay queue that returns it to its queue after
// DelayBucket(time.Until(until)), so a task due later is not held unacked (RabbitMQ's
// consumer_timeout, prefetch slots) and costs no memory meanwhile. The broker has
// confirmed the copy when Park returns nil; then the caller acks d.
func (c *Consumer) Park(ctx context.Context, d *Delivery, until time.Time) error {
	bucket := DelayBucket(time.Until(until))
	name := DelayQueueName(d.Queue, bucket)
	if err := c.declareDelay(name, d.Queue, bucket); err != nil {
		return err
	}
	return c.Publish(ctx, "", name, PublishingOf(d))
}

// declareDelay declares a delay queue once per process (they are durable).
func (c *Consumer) declareDelay(name, target string, bucket time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.delayQueues[name] {
		return nil
	}
	if c.conn == nil || c.conn.IsClosed() {
		return ErrNotConnected
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table{
		"x-message-ttl":             int64(bucket / time.Millisecond),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": target,
	})
	if err != nil {
		return fmt.Errorf("declare delay queue %q: %w", name, classify(err))
	}
	if c.delayQueues == nil {
		c.delayQueues = map[string]bool{}
	}
	c.delayQueues[name] = true
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
