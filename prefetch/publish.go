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

// ErrReturned is returned when the broker could not route a mandatory message to any
// queue (basic.return): a delay queue or binding deleted under the worker.
var ErrReturned = errors.New("prefetch: the broker returned the message (no queue to route it to)")

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
	c.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	if c.declaredOn(conn, "queue:"+q.Name) {
		return nil
	}
	if err := Declare(conn, []Queue{q}); err != nil {
		return err
	}
	c.markDeclared(conn, "queue:"+q.Name)
	return nil
}

// returnChannel is a confirm-mode channel whose returned messages are reported.
type returnChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	closed  chan *amqp.Error
}

// publishMandatory publishes msg with the mandatory flag and waits for the confirm. The
// broker sends basic.return before the confirm of the same message, and amqp091 hands it
// over before it completes the confirm, so with one mandatory publish at a time a return
// found after the confirm is this message's.
func (c *Consumer) publishMandatory(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	c.mandMu.Lock()
	defer c.mandMu.Unlock()
	rc, err := c.returnChannel()
	if err != nil {
		return err
	}
	for len(rc.returns) > 0 {
		<-rc.returns // left by a publish that gave up waiting
	}
	dc, err := rc.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		c.dropReturnChannel(rc)
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		c.dropReturnChannel(rc)
		return err
	}
	select {
	case r, open := <-rc.returns:
		if open {
			return fmt.Errorf("%w: %q/%q: %d %s", ErrReturned, exchange, key, r.ReplyCode, r.ReplyText)
		}
	default:
	}
	if ok {
		return nil
	}
	if rc.ch.IsClosed() {
		// amqp091 fails the confirms of a channel the broker closed (404 NOT_FOUND for a
		// deleted exchange): report why, not a nack.
		c.dropReturnChannel(rc)
		select {
		case aerr, open := <-rc.closed:
			if open && aerr != nil {
				return fmt.Errorf("publish to %q/%q: %w", exchange, key, aerr)
			}
		case <-time.After(time.Second):
		}
		return fmt.Errorf("publish to %q/%q: %w", exchange, key, ErrNotConnected)
	}
	return fmt.Errorf("%w: %q/%q", ErrNacked, exchange, key)
}

func (c *Consumer) returnChannel() (*returnChannel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mand != nil && !c.mand.ch.IsClosed() {
		return c.mand, nil
	}
	ch, err := c.confirmChannel()
	if err != nil {
		return nil, err
	}
	// Buffered: amqp091 delivers returns from the connection's reader, which must never
	// block on us.
	rc := &returnChannel{ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 16)),
		closed: ch.NotifyClose(make(chan *amqp.Error, 1))}
	c.mand = rc
	return rc, nil
}

func (c *Consumer) dropReturnChannel(rc *returnChannel) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mand == rc {
		c.mand = nil
	}
	_ = rc.ch.Close()
}

// publishChannel returns the confirm-mode channel for publishing, opening it on the
// current connection when needed.
func (c *Consumer) publishChannel() (*amqp.Channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pub != nil && !c.pub.IsClosed() {
		return c.pub, nil
	}
	ch, err := c.confirmChannel()
	if err != nil {
		return nil, err
	}
	c.pub = ch
	return ch, nil
}

// confirmChannel opens a channel in confirm mode on the current connection; the caller
// holds c.mu.
func (c *Consumer) confirmChannel() (*amqp.Channel, error) {
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
