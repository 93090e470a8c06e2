package cli

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/internal/testenv"
)

// loggedAt is the time of the first --log-format json line logged at or after since that
// contains every part.
func loggedAt(logs *lockedBuffer, since time.Time, parts ...string) (time.Time, bool) {
next:
	for _, line := range strings.Split(logs.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		var l struct {
			TS string `json:"ts"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.TS)
		if err == nil && !at.Before(since.Truncate(time.Millisecond)) {
			return at, true
		}
	}
	return time.Time{}, false
}

// TestEventsAndInspectFollowTheConsumerFailover: the worker is given two brokers (two
// proxies to the test broker); the first dies. The task consumer fails over to the second,
// and events (a new worker-online) and remote control (inspect ping) answer within 5 s of
// it (issue #13: they used to dial only the first URL and stayed away for the outage).
func TestEventsAndInspectFollowTheConsumerFailover(t *testing.T) {
	e := newRemoteEnv(t)
	u, err := url.Parse(e.broker)
	require.NoError(t, err)
	first, second := testenv.NewProxy(t, u.Host), testenv.NewProxy(t, u.Host)
	alt := func(p *testenv.Proxy) string { v := *u; v.Host = p.Addr; return v.String() }
	brokers := alt(first) + ";" + alt(second)

	// Worker events, straight from the test broker.
	conn, err := amqp.Dial(e.broker)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("celeryev", "topic", true, false, false, false, nil))
	evq, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(evq.Name, "worker.#", "celeryev", false, nil))
	events, err := ch.Consume(evq.Name, "", true, true, false, false, nil)
	require.NoError(t, err)

	_, logs, done := start(t, e, "ccworker", []string{e.bin, "-b", brokers, "--result-backend", e.backend,
		"-Q", e.queue, "-n", e.node, "-c", "2", "-l", "INFO", "--log-format", "json"}, nil, t.TempDir())
	waitOnline := func(within time.Duration) time.Time {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case d := <-events:
				var ev struct {
					Type     string `json:"type"`
					Hostname string `json:"hostname"`
				}
				if json.Unmarshal(d.Body, &ev) == nil && ev.Type == "worker-online" && ev.Hostname == e.node {
					return time.Now()
				}
			case <-deadline:
				t.Fatalf("no worker-online from %s within %v; worker log:\n%s", e.node, within, logs.String())
			}
		}
	}
	e.waitPing(t, done, logs)
	code, out, errOut := e.cli(t, "call", "ccworker.add", "--args", "[2,3]", "--queue", e.queue, "--wait", "--timeout", "60")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "5\n", out)

	for drained := false; !drained; { // the worker-online of the start
		select {
		case <-events:
		case <-time.After(200 * time.Millisecond):
			drained = true
		}
	}
	killed := time.Now()
	first.Kill()
	online := waitOnline(60 * time.Second)
	e.waitPing(t, done, logs)
	pinged := time.Now()
	code, out, errOut = e.cli(t, "call", "ccworker.add", "--args", "[20,22]", "--queue", e.queue, "--wait", "--timeout", "60")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "42\n", out)

	failover, ok := loggedAt(logs, killed, `"connected to the broker"`, `"connection":"ccworker `+e.node+`"`, second.Addr)
	require.True(t, ok, "the task consumer logged no failover to %s:\n%s", second.Addr, logs.String())
	t.Logf("after the kill: consumer on the second broker %v, worker-online %v, ping answered %v",
		failover.Sub(killed).Round(time.Millisecond), online.Sub(killed).Round(time.Millisecond),
		pinged.Sub(killed).Round(time.Millisecond))
	assert.Less(t, online.Sub(failover), 5*time.Second, "events back within 5 s of the consumer")
	assert.Less(t, pinged.Sub(failover), 5*time.Second, "inspect answered within 5 s of the consumer")
	for _, name := range []string{"ccworker-control " + e.node} { // events share it
		_, ok := loggedAt(logs, killed, `"connected to the broker"`, `"connection":"`+name+`"`, second.Addr)
		assert.True(t, ok, "%s did not fail over to the second broker", name)
	}
}
