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

func TestDelayBucket(t *testing.T) {
	for wait, want := range map[time.Duration]time.Duration{
		0: time.Second, 500 * time.Millisecond: time.Second, time.Second: time.Second,
		1999 * time.Millisecond: time.Second, 2 * time.Second: 2 * time.Second,
		100 * time.Second: 64 * time.Second, 1000 * time.Hour: MaxDelayBucket,
	} {
		require.Equal(t, want, DelayBucket(wait), "wait %v", wait)
	}
	require.Equal(t, "ccworker.delay.remote.64s", DelayQueueName("remote", 64*time.Second))
}

func TestParkReturnsTheMessageToItsQueueLater(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("park")
	t.Cleanup(func() {
		ch, err := b.conn.Channel()
		if err == nil {
			_, _ = ch.QueueDelete(DelayQueueName(name, time.Second), false, false, false)
			_ = ch.Close()
		}
	})
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}})
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()
	b.publish(name, 1)

	first := <-got
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	parked := time.Now()
	require.NoError(t, c.Park(ctx, first, time.Now().Add(1500*time.Millisecond)))
	first.Ack()

	select {
	case back := <-got:
		require.GreaterOrEqual(t, time.Since(parked), 900*time.Millisecond)
		require.Equal(t, first.Body, back.Body)
		require.Contains(t, back.Headers, "x-death", "dead-lettered by the delay queue")
		require.NotContains(t, PublishingOf(back).Headers, "x-death")
		back.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("the parked message did not come back")
	}
	eventuallyCounts(t, name, 0, 0)
}

func TestAddAndCancelQueue(t *testing.T) {
	b := newBroker(t)
	first, second := b.queueName("addq1"), b.queueName("addq2")
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(first, 0)}))
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(first, 0)}})
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()

	require.NoError(t, c.AddQueue(CeleryQueue(second, 0)))
	require.NoError(t, c.AddQueue(CeleryQueue(second, 0)), "adding twice is harmless")
	require.Len(t, c.Queues(), 2)
	b.publish(second, 1)
	d := collectN(got, 1, 5*time.Second, 0)
	require.Len(t, d, 1)
	require.Equal(t, second, d[0].Queue)
	d[0].Ack()
	eventuallyCounts(t, second, 0, 0)

	require.NoError(t, c.CancelQueue(second))
	require.Error(t, c.CancelQueue(second), "no longer consumed")
	require.Equal(t, []Queue{CeleryQueue(first, 0)}, c.Queues())
	time.Sleep(100 * time.Millisecond)
	b.publish(second, 2)
	require.Empty(t, collect(got, 300*time.Millisecond), "nothing from a cancelled queue")
	require.Equal(t, 2, b.ready(second))
	b.publish(first, 1)
	d = collectN(got, 1, 5*time.Second, 0)
	require.Len(t, d, 1, "the other queue still flows")
	d[0].Ack()
}
