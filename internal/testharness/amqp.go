package testharness

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Dial connects to the broker and opens a channel; the caller closes the connection.
func Dial(t testing.TB, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		t.Fatalf("channel: %v", err)
	}
	return conn, ch
}

// ReadyCount is the queue's number of ready messages (a passive declare); -1 if the queue
// does not exist.
func ReadyCount(t testing.TB, url, queue string) int {
	t.Helper()
	conn, ch := Dial(t, url)
	defer func() { _ = conn.Close() }()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return q.Messages
}

// WaitReady polls ReadyCount until it is want (the broker requeues the unacked messages
// of a closed connection asynchronously) and returns the last count.
func WaitReady(t testing.TB, url, queue string, want int, timeout time.Duration) int {
	t.Helper()
	n := -1
	WaitFor(timeout, 100*time.Millisecond, func() bool {
		n = ReadyCount(t, url, queue)
		return n == want
	})
	return n
}

// WaitConsumer waits until the queue exists and has a consumer; it fails the test when p
// (the process expected to consume, may be nil) exits first or on timeout.
func WaitConsumer(t testing.TB, url, queue string, p *Proc, timeout time.Duration) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer func() { _ = conn.Close() }()
	deadline := time.Now().Add(timeout)
	for {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("channel: %v", err)
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil {
			_ = ch.Close()
			if q.Consumers > 0 {
				return
			}
		}
		if (p != nil && p.Exited()) || time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.Output()
			}
			t.Fatalf("no consumer on queue %s within %v; output:\n%s", queue, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DeleteQueue deletes the queue and the exchange of the same name (a test cleanup: errors
// are logged, not fatal).
func DeleteQueue(t testing.TB, url, queue string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Logf("cleanup: cannot delete queue %s: %v", queue, err)
		return
	}
	defer func() { _ = conn.Close() }()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(queue, false, false)
	}
}
