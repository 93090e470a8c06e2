package prefetch

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/internal/testenv"
)

// Integration tests against the RabbitMQ at CCWORKER_TEST_AMQP_URL.

// broker is a plain amqp091 connection for the test's own setup and checks.
type broker struct {
	t    *testing.T
	url  string
	conn *amqp.Connection
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	u := testenv.AMQPURL(t)
	conn, err := amqp.Dial(u)
	require.NoError(t, err, "dial %s", u)
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{t: t, url: u, conn: conn}
}

// channel opens a fresh channel, closed at the end of the test.
func (b *broker) channel() *amqp.Channel {
	b.t.Helper()
	ch, err := b.conn.Channel()
	require.NoError(b.t, err)
	b.t.Cleanup(func() { _ = ch.Close() })
	return ch
}

// queueName returns a fresh name whose queue and exchange are deleted after the test.
func (b *broker) queueName(prefix string) string {
	name := testenv.Name(b.t, prefix)
	b.t.Cleanup(func() {
		conn, err := amqp.Dial(b.url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(name, false, false, false)
			_ = ch.ExchangeDelete(name, false, false)
			_ = ch.Close()
		}
	})
	return name
}

// celeryDeclare declares name as Celery's client does for a missing queue: a durable
// direct exchange, a durable queue and a binding, all named name.
func (b *broker) celeryDeclare(name string, args amqp.Table) {
	b.t.Helper()
	ch := b.channel()
	require.NoError(b.t, ch.ExchangeDeclare(name, "direct", true, false, false, false, nil))
	_, err := ch.QueueDeclare(name, true, false, false, false, args)
	require.NoError(b.t, err)
	require.NoError(b.t, ch.QueueBind(name, name, name, false, nil))
}

func (b *broker) publish(queue string, n int) {
	b.t.Helper()
	ch := b.channel()
	require.NoError(b.t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := range n {
		require.NoError(b.t, ch.Publish("", queue, false, false, amqp.Publishing{
			ContentType: "text/plain", Body: []byte(strconv.Itoa(i)), DeliveryMode: amqp.Persistent,
		}))
	}
	for range n {
		select {
		case c := <-confirms:
			require.True(b.t, c.Ack, "publish nacked")
		case <-time.After(10 * time.Second):
			b.t.Fatal("publish not confirmed")
		}
	}
}

// ready returns the queue's ready count with a passive declare on a fresh channel.
func (b *broker) ready(queue string) int {
	b.t.Helper()
	ch, err := b.conn.Channel()
	require.NoError(b.t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(b.t, err)
	return q.Messages
}

// rmq runs scripts/rmq.sh (rabbitmqctl), skipping the test when it cannot be used.
func rmq(t *testing.T, args ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "rmq.sh")
	out, err := exec.Command(script, append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl unusable (%v): %s", err, out)
	}
	return string(out)
}

// counts returns messages_ready and messages_unacknowledged from rabbitmqctl.
func counts(t *testing.T, queue string) (ready, unacked int) {
	t.Helper()
	for _, line := range strings.Split(rmq(t, "list_queues", "name", "messages_ready", "messages_unacknowledged"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == queue {
			ready, _ = strconv.Atoi(f[1])
			unacked, _ = strconv.Atoi(f[2])
			return ready, unacked
		}
	}
	t.Fatalf("queue %s not listed by rabbitmqctl", queue)
	return 0, 0
}

// eventually polls counts until they match.
func eventuallyCounts(t *testing.T, queue string, ready, unacked int) {
	t.Helper()
	var r, u int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r, u = counts(t, queue); r == ready && u == unacked {
			return
		}
	}
	t.Fatalf("queue %s: %d ready, %d unacked; want %d, %d", queue, r, u, ready, unacked)
}

// connectionPid finds the pid of the connection whose client-provided name is name.
func connectionPid(t *testing.T, name string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, line := range strings.Split(rmq(t, "list_connections", "pid", "client_properties"), "\n") {
			if strings.Contains(line, `"`+name+`"`) {
				return strings.Fields(line)[0]
			}
		}
	}
	t.Fatalf("no connection named %q", name)
	return ""
}

func newConsumer(t *testing.T, url string, cfg Config) *Consumer {
	t.Helper()
	cfg.URLs = []string{url}
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = backoff.Policy{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

func collect(ch <-chan *Delivery, d time.Duration) []*Delivery {
	var out []*Delivery
	timer := time.After(d)
	for {
		select {
		case x := <-ch:
			out = append(out, x)
		case <-timer:
			return out
		}
	}
}

// collectN gathers until n deliveries arrived (then waits grace for extra ones) or
// timeout passed.
func collectN(ch <-chan *Delivery, n int, timeout, grace time.Duration) []*Delivery {
	var out []*Delivery
	timer := time.After(timeout)
	for len(out) < n {
		select {
		case x := <-ch:
			out = append(out, x)
		case <-timer:
			return out
		}
	}
	return append(out, collect(ch, grace)...)
}

func TestDeclareCompatibleWithCelery(t *testing.T) {
	b := newBroker(t)
	t.Run("plain", func(t *testing.T) {
		b := &broker{t: t, url: b.url, conn: b.conn}
		name := b.queueName("decl")
		b.celeryDeclare(name, nil)
		require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
		require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}), "re-declaring is idempotent")
	})
	t.Run("x-max-priority as py-amqp sends it", func(t *testing.T) {
		b := &broker{t: t, url: b.url, conn: b.conn}
		name := b.queueName("prio")
		// py-amqp encodes a small Python int as a signed 32-bit 'I', as amqp091 does an int32.
		b.celeryDeclare(name, amqp.Table{"x-max-priority": int32(10)})
		require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 10)}))
	})
	t.Run("mismatch is permanent", func(t *testing.T) {
		b := &broker{t: t, url: b.url, conn: b.conn}
		name := b.queueName("mism")
		b.celeryDeclare(name, nil)
		err := Declare(b.conn, []Queue{CeleryQueue(name, 10)})
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrPermanent)
		assert.Contains(t, err.Error(), name)
		assert.Contains(t, err.Error(), "406")
	})
	t.Run("consumer start with a mismatch fails fast", func(t *testing.T) {
		b := &broker{t: t, url: b.url, conn: b.conn}
		name := b.queueName("mism")
		b.celeryDeclare(name, nil)
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 10)}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		begin := time.Now()
		err := c.Start(ctx, func(context.Context, *Delivery) {})
		require.ErrorIs(t, err, ErrPermanent)
		assert.Less(t, time.Since(begin), 3*time.Second)
		require.NoError(t, c.Close())
	})
}

func TestConsumeAndAckEndToEnd(t *testing.T) {
	const n = 1000
	b := newBroker(t)
	name := b.queueName("e2e")
	ignore := goleak.IgnoreCurrent()
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, Prefetch: 50})
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
	b.publish(name, n)

	work := make(chan *Delivery, n)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { work <- d }))
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d := <-work:
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					mu.Lock()
					seen[string(d.Body)]++
					mu.Unlock()
					d.Ack()
				case <-done:
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d delivered", got, n)
		time.Sleep(10 * time.Millisecond)
	}
	eventuallyCounts(t, name, 0, 0)
	assert.Equal(t, 0, b.ready(name))
	close(done)
	wg.Wait()
	require.NoError(t, c.Close())
	for k, v := range seen {
		assert.Equal(t, 1, v, "message %s delivered %d times", k, v)
	}
	// Nothing came back after the close: every ack reached the broker.
	assert.Equal(t, 0, b.ready(name))
	goleak.VerifyNone(t, ignore)
}

func TestPrefetchPerConsumer(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("qos")
	ignore := goleak.IgnoreCurrent()
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, Prefetch: 5})
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
	b.publish(name, 20)
	got := make(chan *Delivery, 20)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	ds := collectN(got, 5, 5*time.Second, 500*time.Millisecond)
	assert.Len(t, ds, 5)
	eventuallyCounts(t, name, 15, 5)
	n, err := c.Waiting(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 15, n, "waiting: ready, not the 5 delivered")
	require.NoError(t, c.Close())
	assert.Equal(t, 20, b.ready(name), "unacked deliveries return to the queue on close")
	_, err = c.Waiting(context.Background())
	assert.ErrorIs(t, err, ErrNotConnected)
	goleak.VerifyNone(t, ignore)
}

func TestReconnectRedeliversAndDropsStaleAcks(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("recon")
	ignore := goleak.IgnoreCurrent()
	connName := "ccworker-test-" + name
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, Prefetch: 5, ConnectionName: connName})
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
	b.publish(name, 5)
	got := make(chan *Delivery, 100)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))

	before := collectN(got, 5, 5*time.Second, 100*time.Millisecond)
	require.Len(t, before, 5)
	for _, d := range before {
		assert.False(t, d.Redelivered)
	}
	rmq(t, "close_connection", connectionPid(t, connName), "ccworker test: simulated connection loss")

	after := collectN(got, 5, 10*time.Second, 100*time.Millisecond)
	require.Len(t, after, 5, "the in-flight messages come back after the reconnect")
	bodies := func(ds []*Delivery) []string {
		var out []string
		for _, d := range ds {
			out = append(out, string(d.Body))
		}
		return out
	}
	assert.ElementsMatch(t, bodies(before), bodies(after))
	for _, d := range after {
		assert.True(t, d.Redelivered, "message %s redelivered", d.Body)
	}

	// Stale deliveries share tag numbers with the new ones; acking them must not ack
	// the new messages, nor send an unknown tag that would close the channel.
	for _, d := range before {
		d.Ack()
		d.Reject(true)
	}
	time.Sleep(300 * time.Millisecond) // more than MaxAckHold: any ack would have gone
	_, unacked := counts(t, name)
	assert.Equal(t, 5, unacked, "a stale ack settled a new delivery")

	for _, d := range after {
		d.Ack()
	}
	eventuallyCounts(t, name, 0, 0)

	// Deliveries resume on the new connection, and the channel is still healthy.
	b.publish(name, 3)
	more := collectN(got, 3, 5*time.Second, 100*time.Millisecond)
	require.Len(t, more, 3)
	for _, d := range more {
		assert.False(t, d.Redelivered)
		d.Ack()
	}
	eventuallyCounts(t, name, 0, 0)
	assert.Empty(t, collect(got, 200*time.Millisecond), "nothing redelivered: no channel error")

	done := make(chan error)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	goleak.VerifyNone(t, ignore)
}

func TestStopConsumingKeepsConnectionForAcks(t *testing.T) {
	b := newBroker(t)
	name := b.queueName("stop")
	ignore := goleak.IgnoreCurrent()
	c := newConsumer(t, b.url, Config{Queues: []Queue{CeleryQueue(name, 0)}, Prefetch: 2})
	require.NoError(t, Declare(b.conn, []Queue{CeleryQueue(name, 0)}))
	b.publish(name, 4)
	got := make(chan *Delivery, 10)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	ds := collectN(got, 2, 5*time.Second, 300*time.Millisecond)
	require.Len(t, ds, 2)
	c.StopConsuming()
	for _, d := range ds {
		d.Ack()
	}
	assert.Empty(t, collect(got, 300*time.Millisecond), "no delivery after StopConsuming")
	// The acks went through on the open connection. (Messages the broker sent before it
	// processed the cancel may sit unacked until the close; they are not handled.)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ready, unacked := counts(t, name)
		if ready+unacked == 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d ready + %d unacked; want 2 in all", ready, unacked)
	}
	require.NoError(t, c.Close())
	assert.Equal(t, 2, b.ready(name))
	goleak.VerifyNone(t, ignore)
}

func TestWrongPasswordIsPermanent(t *testing.T) {
	u, err := url.Parse(testenv.AMQPURL(t))
	require.NoError(t, err)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	u.User = url.UserPassword(u.User.Username(), "definitely-not-the-password")
	c := newConsumer(t, u.String(), Config{Queues: []Queue{CeleryQueue("never", 0)}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	err = c.Start(ctx, func(context.Context, *Delivery) {})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrPermanent)
	assert.Less(t, time.Since(begin), 10*time.Second, "gave up at once")
	require.NoError(t, c.Close())
}

func TestUnreachableRetriesUntilContextDone(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newConsumer(t, "amqp://guest:guest@127.0.0.1:1/", Config{
		Queues: []Queue{CeleryQueue("never", 0)}, ConnectTimeout: 200 * time.Millisecond,
		Backoff: backoff.Policy{Min: 20 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := c.Start(ctx, func(context.Context, *Delivery) {})
	elapsed := time.Since(begin)
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrPermanent), "connection refused is not permanent: %v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, elapsed, 650*time.Millisecond, "kept retrying until ctx was done")
	assert.Less(t, elapsed, 3*time.Second)
	require.NoError(t, c.Close())
}

func TestCloseWithoutStartDoesNotHang(t *testing.T) {
	c := newConsumer(t, "amqp://guest:guest@127.0.0.1:1/", Config{Queues: []Queue{CeleryQueue("never", 0)}})
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Error("Close before Start hangs: nothing ever closes c.done")
	}
}

func TestNewChecksConfig(t *testing.T) {
	_, err := New(Config{Queues: []Queue{CeleryQueue("q", 0)}})
	assert.Error(t, err)
	_, err = New(Config{URLs: []string{"amqp://localhost/"}})
	assert.Error(t, err)
	_, err = New(Config{URLs: []string{"http://x"}, Queues: []Queue{CeleryQueue("q", 0)}})
	assert.Error(t, err)
}
