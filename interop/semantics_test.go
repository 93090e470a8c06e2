package interop

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/prefetch"

	"github.com/ccworker/ccworker/internal/testharness"
)

// Retries, ETA (held and parked in a broker-side delay queue) and expiry, sent by
// Celery's own client.
func TestRetryETAAndExpiry(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	t.Cleanup(func() {
		for _, b := range []time.Duration{time.Second, 2 * time.Second} {
			testharness.DeleteQueue(t, s.amqpURL, prefetch.DelayQueueName(s.queue, b))
		}
	})
	p := s.start(t, "--eta-hold", "1s")
	defer p.Stop(t)

	type result struct {
		out     callOut
		err     error
		elapsed time.Duration
	}
	calls := map[string][]string{
		"flaky":   {"ccworker.flaky", "[2]", "{}"},
		"eta":     {"ccworker.add", "[1, 2]", "{}", "--countdown", "3"},
		"expired": {"ccworker.add", "[1, 2]", "{}", "--countdown", "3", "--expires", "1.5"},
	}
	got := make(chan struct {
		name string
		result
	}, len(calls))
	for name, c := range calls {
		go func() {
			start := time.Now()
			stdout, stderr, code, err := s.run(t.Context(), client{}, append([]string{"call", c[0], "--args", c[1],
				"--kwargs", c[2], "--timeout", "30"}, c[3:]...)...)
			r := result{err: err, elapsed: time.Since(start)}
			if err == nil {
				r.out, r.err = parseCallOut(stdout)
				r.out.code, r.out.stderr = code, stderr
			}
			got <- struct {
				name string
				result
			}{name, r}
		}()
	}
	res := map[string]result{}
	for range calls {
		g := <-got
		require.NoError(t, g.err, g.name)
		res[g.name] = g.result
	}

	flaky := res["flaky"].out
	assert.Equal(t, "SUCCESS", flaky.State, "flaky: %+v\n%s", flaky, p.Output())
	assert.Equal(t, json.Number("2"), flaky.Result)
	raw, err := s.findRaw(t, flaky.ID)
	require.NoError(t, err)
	assert.EqualValues(t, 2, raw.Lookup("retries").Int32(), "the last run is the second retry")

	eta := res["eta"]
	assert.Equal(t, "SUCCESS", eta.out.State, "eta: %+v", eta.out)
	assert.GreaterOrEqual(t, eta.elapsed, 3*time.Second, "ran no earlier than its ETA")
	assert.Less(t, eta.elapsed, 8*time.Second, "and soon after it")
	// Due in 3 s with a 1 s hold window: it went through the 2 s delay queue.
	assert.Zero(t, testharness.ReadyCount(t, s.amqpURL, prefetch.DelayQueueName(s.queue, 2*time.Second)),
		"the delay queue exists and is empty again")

	expired := res["expired"].out
	assert.Equal(t, "TaskRevokedError", expired.ExcType, "expired: %+v", expired)
	assert.Equal(t, []any{"expired"}, expired.ExcMessage)
	assert.Equal(t, 1, s.countDocs(t, bson.D{{Key: "_id", Value: expired.ID}, {Key: "status", Value: "REVOKED"}}))
}

// task_annotations rate_limit: 5/s spaces ccworker.noop 0.2 s apart in this worker.
func TestRateLimitFromAnnotations(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("task_annotations = {'ccworker.noop': {'rate_limit': '5/s'}}\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	p := s.start(t)
	defer p.Stop(t)

	stdout, stderr, code, err := s.run(t.Context(), client{}, "load", "--task", "ccworker.noop", "--n", "6", "--timeout", "30")
	require.NoError(t, err)
	require.Zero(t, code, "stdout %s stderr %s", stdout, stderr)
	var sum struct {
		AllDone bool    `json:"all_done"`
		Elapsed float64 `json:"elapsed_s"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout)), &sum))
	require.True(t, sum.AllDone)
	require.GreaterOrEqual(t, sum.Elapsed, 0.95, "six tasks at 5/s take at least 1 s")
}

// Time limits sent in the message by Celery's client: soft → SoftTimeLimitExceeded
// raised into the task, hard → TimeLimitExceeded(limit).
func TestTimeLimitsFromTheMessage(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	p := s.start(t)
	defer p.Stop(t)
	stdout, _, _, err := s.run(t.Context(), client{}, "call", "ccworker.sleep", "--args", "[30]",
		"--soft-time-limit", "0.5", "--time-limit", "5", "--timeout", "20")
	require.NoError(t, err)
	soft, err := parseCallOut(stdout)
	require.NoError(t, err)
	assert.Equal(t, "SoftTimeLimitExceeded", soft.ExcType, "%+v", soft)
	assert.Equal(t, "billiard.exceptions", soft.ExcModule)

	stdout, _, _, err = s.run(t.Context(), client{}, "call", "ccworker.sleep", "--args", "[30]",
		"--time-limit", "1", "--timeout", "20")
	require.NoError(t, err)
	hard, err := parseCallOut(stdout)
	require.NoError(t, err)
	assert.Equal(t, "TimeLimitExceeded", hard.ExcType, "%+v", hard)
	// Celery's argument is the limit as the message carries it: the client sent 1.
	assert.Equal(t, []any{json.Number("1")}, hard.ExcMessage)
}

// A Python client's 64-bit integer header (py-amqp writes the AMQP type 'L', which
// amqp091-go cannot parse) must not wedge the queue: the task runs like any other.
func TestPyAmqpLongHeader(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	p := s.start(t)
	defer p.Stop(t)
	stdout, stderr, _, err := s.run(t.Context(), client{}, "call", "ccworker.add", "--args", "[1, 2]",
		"--headers", `{"big": 1099511627776, "nested": {"n": 1099511627776}}`, "--timeout", "20")
	require.NoError(t, err, stderr)
	out, err := parseCallOut(stdout)
	require.NoError(t, err)
	assert.Equal(t, "SUCCESS", out.State, "%+v\n%s", out, p.Output())
	assert.NotContains(t, p.Output(), "connection lost")
}
