package prefetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrNotConnected is returned by Publish while no connection is up and ctx ends first.
var ErrNotConnected = errors.New("prefetch: not connected to the broker")

// ErrNacked is returned when the broker refuses a published message (publisher confirm
// negative).
var ErrNacked = errors.New("prefetch: broker did not confirm the message")

// Publish sends msg to exchange with routing key on the consumer's connection and waits
// for the broker's publisher confirm, so a caller may ack the message it replaces (a
// retry, a parked ETA task) only once the new one is safe. While the connection is down
// it waits for the reconnect; it gives up when ctx ends.
func (c *Consumer) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	delay := 50 * time.Millisecond
	for {
		err := c.publishOnce(ctx, exchange, key, msg)
		if err == nil || errors.Is(err, ErrNacked) {
			return err
		}
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
			return fmt.Errorf("publish to %q/%q: %w", exchange, key, err) // retrying cannot help
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish to %q/%q: %w (last error: %v)", exchange, key, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

func (c *Consumer) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	ch, err := c.publishChannel()
	if err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		c.dropPublishChannel(ch)
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		c.dropPublishChannel(ch)
		return err
	}
	if !ok {
		return ErrNacked
	}
	return nil
}

// Ensure declares q (exchange, queue, binding) the first time it is used on the current
// connection, as kombu does before publishing to a queue (declare=[queue]): a message
// for a queue nobody declared would otherwise be confirmed and dropped.
func (c *Consumer) Ensure(q Queue) error {
	c.mu.Lock()
	conn := c.conn
	done := c.ensured[q.Name] && c.ensuredConn == conn
	c.mu.Unlock()
	if done {
		return nil
	}
	if conn == nil {
		return ErrNotConnected
	}
	if err := Declare(conn, []Queue{q}); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ensuredConn != conn {
		c.ensured, c.ensuredConn = map[string]bool{}, conn
	}
	c.ensured[q.Name] = true
	return nil
}

// publishChannel returns the confirm-mode channel for publishing, opening it on the
// current connection when needed.
func (c *Consumer) publishChannel() (*amqp.Channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pub != nil && !c.pub.IsClosed() {
		return c.pub, nil
	}
	if c.conn == nil || c.conn.IsClosed() {
		return nil, ErrNotConnected
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	c.pub = ch
	return ch, nil
}

func (c *Consumer) dropPublishChannel(ch *amqp.Channel) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pub == ch {
		c.pub = nil
	}
	_ = ch.Close()
}
