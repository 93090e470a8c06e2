package prefetch

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/internal/testenv"
)

func TestCheckStrategy(t *testing.T) {
	for _, s := range []string{"", RoundRobin, Shuffle} {
		assert.NoError(t, CheckStrategy(s), s)
	}
	err := CheckStrategy("random")
	assert.ErrorIs(t, err, ErrFailoverStrategy)
	assert.Contains(t, err.Error(), `"random"`)
	_, err = NewDialer(Config{URLs: []string{"amqp://h//"}, FailoverStrategy: "priority"})
	assert.ErrorIs(t, err, ErrFailoverStrategy)
	_, err = New(Config{URLs: []string{"amqp://h//"}, Queues: []Queue{CeleryQueue("q", 0)}, FailoverStrategy: "x"})
	assert.ErrorIs(t, err, ErrFailoverStrategy)
	_, err = NewDialer(Config{})
	assert.Error(t, err)
}

func TestDialerOrder(t *testing.T) {
	urls := []string{"amqp://a//", "amqp://b//", "amqp://c//"}
	d, err := NewDialer(Config{URLs: urls})
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1, 2}, d.order(), "round-robin starts at the head")
	d.last = 0
	assert.Equal(t, []int{1, 2, 0}, d.order(), "after a connection to a, b first and a last")
	d.last = 2
	assert.Equal(t, []int{0, 1, 2}, d.order())

	s, err := NewDialer(Config{URLs: urls, FailoverStrategy: Shuffle})
	require.NoError(t, err)
	firsts := map[int]bool{}
	for range 200 {
		o := s.order()
		assert.ElementsMatch(t, []int{0, 1, 2}, o)
		firsts[o[0]] = true
	}
	assert.Len(t, firsts, 3, "shuffle starts anywhere")
	s.last = 1
	for range 50 {
		o := s.order()
		assert.ElementsMatch(t, []int{0, 1, 2}, o)
		assert.Equal(t, 1, o[2], "the previous broker comes last")
	}
}

// deadURL is an AMQP URL on a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "amqp://guest:guest@" + addr + "/"
}

// viaProxy returns the test broker's URL through a new proxy.
func viaProxy(t *testing.T, live string) (*testenv.Proxy, string) {
	u, err := url.Parse(live)
	require.NoError(t, err)
	p := testenv.NewProxy(t, u.Host)
	u.Host = p.Addr
	return p, u.String()
}

func TestDialerFailsOverInOrder(t *testing.T) {
	live := testenv.AMQPURL(t)
	dead1, dead2 := deadURL(t), deadURL(t)
	d, err := NewDialer(Config{URLs: []string{dead1, live, dead2}, ConnectionName: "ccworker failover-test"})
	require.NoError(t, err)
	conn, err := d.Dial(context.Background())
	require.NoError(t, err)
	_ = conn.Close()
	assert.Equal(t, 1, d.last)

	// Nothing answers: every URL's error, credentials hidden, not permanent.
	d, err = NewDialer(Config{URLs: []string{dead1, dead2}})
	require.NoError(t, err)
	_, err = d.Dial(context.Background())
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrPermanent)
	assert.Contains(t, err.Error(), Address(dead1))
	assert.Contains(t, err.Error(), Address(dead2))
	assert.NotContains(t, err.Error(), "guest:guest")
}

func TestDialerPermanentOnlyWhenEveryBrokerRefuses(t *testing.T) {
	live, err := url.Parse(testenv.AMQPURL(t))
	require.NoError(t, err)
	live.User = url.UserPassword("guest", "wrong-password")
	bad := live.String()

	d, err := NewDialer(Config{URLs: []string{bad}})
	require.NoError(t, err)
	_, err = d.Dial(context.Background())
	assert.ErrorIs(t, err, ErrPermanent, "refused by the only broker")

	d, err = NewDialer(Config{URLs: []string{bad, deadURL(t)}})
	require.NoError(t, err)
	_, err = d.Dial(context.Background())
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrPermanent, "one broker is down: it may accept when it is back")
	assert.Contains(t, err.Error(), "ACCESS_REFUSED")
}

// TestConsumerFailsOverToTheNextBroker: the consumer's broker dies (its port refuses, its
// connections are reset); the consumer goes on with the next URL and gets the messages.
func TestConsumerFailsOverToTheNextBroker(t *testing.T) {
	b := newBroker(t)
	q := b.queueName("failover")
	b.celeryDeclare(q, nil)
	first, firstURL := viaProxy(t, b.url)
	_, secondURL := viaProxy(t, b.url)

	c, err := New(Config{URLs: []string{firstURL, secondURL}, Queues: []Queue{CeleryQueue(q, 0)},
		Backoff: backoff.Policy{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	require.NoError(t, err)
	got := make(chan *Delivery, 100)
	require.NoError(t, c.Start(context.Background(), func(_ context.Context, d *Delivery) { got <- d }))
	defer c.Close()

	b.publish(q, 3)
	for _, d := range collectN(got, 3, 20*time.Second, 0) {
		d.Ack()
	}
	first.Kill()
	b.publish(q, 5)
	// The first three may come again (their batched ack may have died with the
	// connection): at least once, never lost.
	ds := collectN(got, 5, 30*time.Second, time.Second)
	bodies := map[string]int{}
	for _, d := range ds {
		bodies[string(d.Body)]++
		d.Ack()
	}
	for i := range 5 {
		assert.GreaterOrEqual(t, bodies[strconv.Itoa(i)], 1, "message %d after the failover", i)
	}
	eventuallyCounts(t, q, 0, 0)
	assert.Equal(t, uint64(1), c.Reconnects()["connection"])
	assert.Equal(t, 1, c.dialer.last, "on the second broker")
}

func ExampleAddress() {
	fmt.Println(Address("amqp://user:secret@rabbit-2.example.org:5671/prod"))
	// Output: rabbit-2.example.org:5671/prod
}
