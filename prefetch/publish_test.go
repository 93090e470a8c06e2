package prefetch

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

func TestPublishIsConfirmedAndSurvivesAReconnect(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("pub")
	target := b.queueName("pubtarget")
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0), {Name: target, Durable: true}}))
	connName := "ccworker-test-" + name
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, ConnectionName: connName})
	require.NoError(t, c.Start(context.Background(), func(context.Context, *Delivery) {}))
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := amqp.Publishing{ContentType: "text/plain", Body: []byte("one"), DeliveryMode: amqp.Persistent}
	require.NoError(t, c.Publish(ctx, "", target, msg))
	require.Equal(t, 1, b.ready(target), "confirmed means enqueued")

	rmq(t, "close_connection", connectionPid(t, connName), "ccworker test: publish across a reconnect")
	msg.Body = []byte("two")
	require.NoError(t, c.Publish(ctx, "", target, msg), "waits for the new connection")
	require.Equal(t, 2, b.ready(target))

	// A missing exchange is an error at once, not a retry loop, and the next publish works.
	err := c.Publish(ctx, "no-such-exchange-"+name, "x", msg)
	require.Error(t, err)
	require.NoError(t, c.Publish(ctx, "", target, msg))
}

func TestPublishGivesUpWhenNotConnected(t *testing.T) {
	c, err := New(Config{URLs: []string{"amqp://guest:guest@127.0.0.1:1/"}, Queues: []Queue{{Name: "q"}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = c.Publish(ctx, "", "q", amqp.Publishing{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, ErrNotConnected.Error())
	require.NoError(t, c.Close())
}
