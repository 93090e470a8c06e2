package prefetch

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/internal/testenv"
)

func TestDelayedRoutingKeyAsKombu(t *testing.T) {
	// kombu: '.'.join(list(f'{countdown:028b}')) + f'.{routing_key}'
	assert.Equal(t, strings.Repeat("0.", 25)+"1.0.1.celery", DelayedRoutingKey(5, "celery"))
	assert.Equal(t, strings.Repeat("1.", 28)+"a.b", DelayedRoutingKey(1<<28-1, "a.b"))
	assert.Equal(t, DelayedRoutingKey(1, "q."+parkSuffix), parkKey(1, "q"))
	assert.Equal(t, int64(1), countdownOf(300*time.Millisecond), "at least a second, as kombu requires")
	assert.Equal(t, int64(2), countdownOf(2900*time.Millisecond), "never later than the ETA")
	assert.Equal(t, int64(MaxNativeDelay/time.Second), countdownOf(100*365*24*time.Hour))
}

// vhost makes a fresh vhost for the test (deleted afterwards) and returns its URL: the
// native delayed delivery levels have fixed names.
func vhost(t *testing.T) string {
	t.Helper()
	base := testenv.AMQPURL(t)
	name := testenv.Name(t, "vh")
	rmq(t, "add_vhost", name)
	t.Cleanup(func() { rmq(t, "delete_vhost", name) })
	rmq(t, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + url.PathEscape(name)
	u.RawPath = ""
	return u.String()
}

func dial(t *testing.T, u string) *broker {
	t.Helper()
	conn, err := amqp.Dial(u)
	require.NoError(t, err, "dial %s", u)
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{t: t, url: u, conn: conn}
}

func TestExistingQueueOfAnotherTypeIsUsedAsItIs(t *testing.T) {
	b := newBroker(t)
	quorum, classic := b.queueName("isq"), b.queueName("isc")
	b.celeryDeclare(quorum, amqp.Table{"x-queue-type": "quorum"}) // a Celery 5.6 worker was first
	b.celeryDeclare(classic, nil)

	ds, err := declareQueues(b.conn, []Queue{CeleryQueue(quorum, 0)})
	require.NoError(t, err, "-Q on a quorum queue with the defaults")
	assert.True(t, ds[0].Quorum)
	assert.Contains(t, ds[0].Note, "quorum")

	missing := CeleryQueue(classic, 0)
	missing.Args = amqp.Table{"x-queue-type": "quorum"} // task_create_missing_queue_type = 'quorum'
	ds, err = declareQueues(b.conn, []Queue{missing})
	require.NoError(t, err)
	assert.False(t, ds[0].Quorum)

	listed := CeleryQueue(classic, 0)
	listed.Args, listed.ArgsSetting = amqp.Table{"x-queue-type": "quorum"}, "task_queues"
	err = Declare(b.conn, []Queue{listed})
	require.ErrorIs(t, err, ErrPermanent)
	assert.Contains(t, err.Error(), "task_queues")
	assert.Contains(t, err.Error(), "x-queue-type", "the existing argument is named")

	_, err = declareQueues(b.conn, []Queue{CeleryQueue(quorum, 10)})
	require.ErrorIs(t, err, ErrPermanent, "priority on a quorum queue")
	assert.Contains(t, err.Error(), "task_queue_max_priority")
	assert.Contains(t, err.Error(), "is a quorum queue, which has no x-max-priority")
}

// receive waits for the next delivery.
func receive(t *testing.T, got <-chan *Delivery, timeout time.Duration) *Delivery {
	t.Helper()
	select {
	case d := <-got:
		return d
	case <-time.After(timeout):
		t.Fatal("no delivery")
		return nil
	}
}

func TestNativeParkSurvivesADeletedLevel(t *testing.T) {
	b := dial(t, vhost(t))
	q := Queue{Name: "work", Exchange: "work", ExchangeType: "topic", RoutingKey: "work", Durable: true,
		Args: amqp.Table{"x-queue-type": "quorum"}}
	c := newConsumer(t, b.url, Config{Queues: []Queue{q}})
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()

	// What a Celery 5.6 worker declares.
	out := rmq(t, "list_queues", "-p", strings.TrimPrefix(mustPath(t, b.url), "/"), "name", "type", "arguments")
	assert.Contains(t, out, "celery_delayed_27\tquorum")
	assert.Contains(t, out, `{"x-message-ttl",134217728000}`)
	assert.Contains(t, out, `{"x-dead-letter-strategy","at-least-once"}`)
	assert.Contains(t, out, `{"x-dead-letter-exchange","celery_delayed_delivery"}`)
	bindings := rmq(t, "list_bindings", "-p", strings.TrimPrefix(mustPath(t, b.url), "/"), "source_name", "destination_name", "routing_key")
	assert.Contains(t, bindings, "celery_delayed_delivery\twork\t#.work", "Celery's: to the queue's exchange")
	assert.Contains(t, bindings, "work\twork\t#.work")
	assert.Contains(t, bindings, "celery_delayed_delivery\twork\t"+parkBindingKey("work"))

	// A Celery 5.6 client's countdown comes through.
	ch := b.channel()
	require.NoError(t, ch.Publish(DelayedLevelName(27), DelayedRoutingKey(1, "work"), false, false,
		amqp.Publishing{Body: []byte("celery"), DeliveryMode: amqp.Persistent}))
	d := receive(t, got, 15*time.Second)
	assert.Equal(t, "celery", string(d.Body))
	d.Ack()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	park := func(body string) {
		t.Helper()
		require.NoError(t, ch.Publish("work", "work", false, false, amqp.Publishing{Body: []byte(body)}))
		d := receive(t, got, 10*time.Second)
		require.NoError(t, c.Park(ctx, d, time.Now().Add(2500*time.Millisecond)))
		d.Ack()
		back := receive(t, got, 15*time.Second)
		assert.Equal(t, body, string(back.Body))
		assert.True(t, IsDelayed(back), "exchange %q, routing key %q", back.Exchange, back.RoutingKey)
		back.Ack()
	}
	park("first")
	// Deleted under the running worker: the park is returned, the levels declared again.
	_, err := ch.QueueDelete(DelayedLevelName(1), false, false, false)
	require.NoError(t, err)
	park("second")

	// A retry with a countdown, sent the same way.
	require.NoError(t, c.PublishDelayed(ctx, "work", amqp.Publishing{Body: []byte("retry")}, time.Now().Add(1500*time.Millisecond)))
	back := receive(t, got, 15*time.Second)
	assert.Equal(t, "retry", string(back.Body))
	back.Ack()
}

func TestPublishDelayedNeedsNativeDelay(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("nonative")
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}})
	require.NoError(t, c.Start(context.Background(), func(context.Context, *Delivery) {}))
	defer c.Close()
	err := c.PublishDelayed(context.Background(), name, amqp.Publishing{}, time.Now().Add(time.Minute))
	require.ErrorIs(t, err, ErrNotNative, "a classic deployment: Celery 5.2-5.4 clients and workers know nothing of it")
}

func mustPath(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	require.NoError(t, err)
	return p.Path
}

// Before parks were mandatory and declarations per connection, a delay queue deleted
// under the worker swallowed the next parked task: the broker confirmed an unroutable
// message, and the original was acked.
func TestClassicParkRedeclaresADeletedDelayQueue(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("repark")
	delay := DelayQueueName(name, time.Second)
	t.Cleanup(func() {
		if ch, err := b.conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(delay, false, false, false)
			_ = ch.Close()
		}
	})
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}})
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 2 {
		b.publish(name, 1)
		d := receive(t, got, 10*time.Second)
		require.NoError(t, c.Park(ctx, d, time.Now().Add(1500*time.Millisecond)), "park %d", i)
		d.Ack()
		back := receive(t, got, 10*time.Second)
		assert.Equal(t, d.Body, back.Body)
		back.Ack()
		ch := b.channel()
		_, err := ch.QueueDelete(delay, false, false, false)
		require.NoError(t, err)
	}
}

// -Q on a queue a Celery 5.5+ worker declared as quorum, with ccworker's defaults (a
// classic missing queue): the queue is used as it is, and native delayed delivery is
// switched on as Celery's worker has it.
func TestExistingQuorumQueueSwitchesNativeDelayOn(t *testing.T) {
	b := dial(t, vhost(t))
	b.celeryDeclare("work", amqp.Table{"x-queue-type": "quorum"})
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue("work", 0)}})
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.PublishDelayed(ctx, "work", amqp.Publishing{Body: []byte("x")}, time.Now().Add(time.Second)))
	d := receive(t, got, 15*time.Second)
	assert.Equal(t, "x", string(d.Body))
	d.Ack()
}

// A delay queue deleted while the worker was reconnecting (a classic queue whose node
// went away) is declared again on the new connection: the process-wide memory of
// declared queues used to make the next park vanish, confirmed and unroutable.
func TestParkAfterAReconnectDeclaresAgain(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("reconnpark")
	delay := DelayQueueName(name, time.Second)
	t.Cleanup(func() {
		if ch, err := b.conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(delay, false, false, false)
			_ = ch.Close()
		}
	})
	connName := "ccworker-test-" + name
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, ConnectionName: connName})
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	park := func() {
		t.Helper()
		b.publish(name, 1)
		d := receive(t, got, 10*time.Second)
		require.NoError(t, c.Park(ctx, d, time.Now().Add(1500*time.Millisecond)))
		d.Ack()
		back := receive(t, got, 10*time.Second)
		back.Ack()
	}
	park()
	ch := b.channel()
	_, err := ch.QueueDelete(delay, false, false, false)
	require.NoError(t, err)
	rmq(t, "close_connection", connectionPid(t, connName), "ccworker test: park after a reconnect")
	park() // delivered on the new connection
}
