package allocate

import (
	"context"
	"errors"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueState is what the broker says about one queue.
type QueueState struct {
	Name      string
	Ready     int  // messages waiting to be handed to a consumer
	Consumers int  // consumers attached
	Missing   bool // the queue does not exist (yet): nothing waits
}

// Broker reports the watched queues.
type Broker interface {
	Queues(ctx context.Context) ([]QueueState, error)
}

// AMQPBroker reads ready and consumer counts with a passive queue.declare, which needs no
// management plugin and creates nothing. It dials on first use and again after the
// connection is lost.
type AMQPBroker struct {
	Dial   func() (*amqp.Connection, error)
	Names  []string
	mu     sync.Mutex
	conn   *amqp.Connection
	ch     *amqp.Channel
	closed bool
}

// Queues declares each watched queue passively. A missing queue is reported as
// Missing (RabbitMQ closes the channel on a 404; a new one is opened).
func (b *AMQPBroker) Queues(ctx context.Context) ([]QueueState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("broker watcher closed")
	}
	out := make([]QueueState, 0, len(b.Names))
	for _, name := range b.Names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ch, err := b.channel()
		if err != nil {
			return nil, err
		}
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		var aerr *amqp.Error
		switch {
		case err == nil:
			out = append(out, QueueState{Name: name, Ready: q.Messages, Consumers: q.Consumers})
		case errors.As(err, &aerr) && aerr.Code == amqp.NotFound:
			out = append(out, QueueState{Name: name, Missing: true})
		default:
			b.reset()
			return nil, fmt.Errorf("queue %q: %w", name, err)
		}
	}
	return out, nil
}

func (b *AMQPBroker) channel() (*amqp.Channel, error) {
	if b.conn == nil || b.conn.IsClosed() {
		b.reset()
		conn, err := b.Dial()
		if err != nil {
			return nil, err
		}
		b.conn = conn
	}
	if b.ch == nil || b.ch.IsClosed() {
		ch, err := b.conn.Channel()
		if err != nil {
			b.reset()
			return nil, fmt.Errorf("open channel: %w", err)
		}
		b.ch = ch
	}
	return b.ch, nil
}

func (b *AMQPBroker) reset() {
	if b.conn != nil {
		_ = b.conn.Close()
	}
	b.conn, b.ch = nil, nil
}

// Close closes the connection.
func (b *AMQPBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.reset()
	return nil
}
