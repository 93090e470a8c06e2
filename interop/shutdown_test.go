package interop

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

// publish publishes n tasks with `celery_client.py load --publish-only` and returns their ids.
func (s *setup) publish(t *testing.T, task, args string, n int) []string {
	t.Helper()
	idsFile := filepath.Join(t.TempDir(), "ids")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stdout, stderr, code, err := s.run(ctx, client{}, "load", "--task", task, "--args", args,
		"--n", strconv.Itoa(n), "--publish-only", "--ids-file", idsFile)
	require.NoError(t, err, "celery_client.py load: %s", stderr)
	require.Equal(t, 0, code, "celery_client.py load: %s%s", stdout, stderr)
	return readIDs(t, idsFile)
}

func readIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.Fields(string(b))
}

// idsFilter selects the documents of ids, optionally with a status.
func idsFilter(ids []string, status string) bson.D {
	f := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	if status != "" {
		f = append(f, bson.E{Key: "status", Value: status})
	}
	return f
}

// TestWarmShutdownLosesNothing: SIGTERM in the middle of 200 tasks; every task either has
// its SUCCESS document or is back in the queue, and a second worker finishes the rest.
func TestWarmShutdownLosesNothing(t *testing.T) {
	const n = 200
	s := newSetup(t)
	needCelery(t)
	w := s.start(t)

	ids := s.publish(t, "ccworker.sleep", "[0.2]", n)
	require.Len(t, ids, n)
	time.Sleep(time.Second)
	w.Signal(t, syscall.SIGTERM)
	start := time.Now()
	code, ok := w.Wait(35 * time.Second)
	require.True(t, ok, "ccworker did not exit within the 30 s drain timeout (+5 s); output:\n%s", w.Output())
	require.Equal(t, 0, code, "exit code of a warm shutdown; output:\n%s", w.Output())
	t.Logf("warm shutdown took %v", time.Since(start).Round(time.Millisecond))

	stored := s.countDocs(t, idsFilter(ids, ""))
	succeeded := s.countDocs(t, idsFilter(ids, "SUCCESS"))
	assert.Equal(t, stored, succeeded, "every stored document must be SUCCESS")
	ready := testharness.WaitReady(t, s.amqpURL, s.queue, n-stored, 5*time.Second)
	t.Logf("after the warm shutdown: %d SUCCESS documents, %d messages ready", succeeded, ready)
	require.Equal(t, n, stored+ready, "documents (%d) + messages ready (%d) must be the %d tasks published: "+
		"fewer means lost tasks, more means tasks stored but requeued", stored, ready, n)
	if ready == 0 {
		t.Log("note: every task finished before the shutdown; the drain was not exercised")
	}

	w2 := s.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	idsFile := filepath.Join(t.TempDir(), "ids")
	require.NoError(t, os.WriteFile(idsFile, []byte(strings.Join(ids, "\n")+"\n"), 0o600))
	stdout, stderr, code, err := s.run(ctx, client{}, "wait", "--ids-file", idsFile, "--timeout", "90")
	require.NoError(t, err, stderr)
	assert.Equal(t, 0, code, "celery_client.py wait: %s%s", stdout, stderr)
	assert.Equal(t, n, s.countDocs(t, idsFilter(ids, "SUCCESS")), "SUCCESS documents after the second worker")
	w2.Stop(t)
	assert.Equal(t, 0, testharness.ReadyCount(t, s.amqpURL, s.queue), "messages left")
}

// TestSecondSignalRequeues: a second signal during the drain stops at once with a
// non-zero code, and the running tasks' messages go back to the queue. A SIGTERM repeated
// within 2 s is a duplicate (Slurm sends those) and changes nothing.
func TestSecondSignalRequeues(t *testing.T) {
	const n = 4
	s := newSetup(t)
	needCelery(t)
	w := s.start(t)

	ids := s.publish(t, "ccworker.sleep", "[30]", n)
	w.WaitLogFunc(t, "all tasks received", 15*time.Second, func(log string) bool {
		got := 0
		for _, id := range ids {
			if lineWith(log, "received", id) {
				got++
			}
		}
		return got == n
	})
	w.Signal(t, syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	w.Signal(t, syscall.SIGTERM) // a duplicate: still draining
	_, exited := w.Wait(time.Second)
	require.False(t, exited, "a duplicate SIGTERM must not cut the drain short; output:\n%s", w.Output())
	w.Signal(t, syscall.SIGINT)
	start := time.Now()
	code, ok := w.Wait(5 * time.Second)
	require.True(t, ok, "ccworker did not exit within 5 s of the second SIGTERM; output:\n%s", w.Output())
	t.Logf("exited %v after the second signal with code %d", time.Since(start).Round(time.Millisecond), code)
	assert.NotEqual(t, 0, code, "a cut-short shutdown must exit non-zero; output:\n%s", w.Output())

	assert.Equal(t, n, testharness.WaitReady(t, s.amqpURL, s.queue, n, 5*time.Second),
		"the running tasks' messages must be back in the queue")
	assert.Equal(t, 0, s.countDocs(t, idsFilter(ids, "")),
		"no result may be stored for tasks cut short by a cold shutdown (they run again)")
}

// TestBrokerPasswordNotLogged: a refused login ends the worker quickly, says why, and
// never prints the password.
func TestBrokerPasswordNotLogged(t *testing.T) {
	amqpURL, mongoURL := env(t)
	const password = "s3cret-pw"
	u, err := url.Parse(amqpURL)
	require.NoError(t, err)
	user := "guest"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	bad := u.String()
	require.Contains(t, bad, password)

	check := func(t *testing.T, args ...string) {
		p := spawn(t, append(args, "-Q", "interop_never_declared", "-c", "8", "-l", "DEBUG", "-n", nodePattern)...)
		code, ok := p.Wait(15 * time.Second)
		out := p.Output()
		require.True(t, ok, "ccworker still running 15 s after a refused login; output:\n%s", out)
		assert.NotEqual(t, 0, code, "exit code; output:\n%s", out)
		// RabbitMQ closes the socket after a refused login; amqp091-go reports it as
		// ErrCredentials, "username or password not allowed" (no ACCESS_REFUSED text).
		assert.Regexp(t, regexp.MustCompile(`(?i)authenticat|access.refused|username or password`), out,
			"the error must name the refused login")
		assert.NotContains(t, out, password, "the output leaks the broker password")
	}
	t.Run("flag", func(t *testing.T) {
		check(t, "-b", bad)
	})
	t.Run("config", func(t *testing.T) {
		// ccworker may create its index before it meets the broker: a database to drop.
		db := testenv.Database(t)
		check(t, "--config", writeConfig(t, bad, mongoURL, db.Name(), []string{"json"}))
	})
}

// TestReadyOnlyWhenConnected: Celery logs "<node> ready." once it consumes; scripts and
// tests wait for that line. With the broker unreachable ccworker must not claim it.
func TestReadyOnlyWhenConnected(t *testing.T) {
	env(t)
	// Port 1 on loopback: connection refused at once, so ccworker keeps retrying.
	p := spawn(t, "-b", "amqp://guest:guest@127.0.0.1:1//", "-Q", "interop_never_declared", "-c", "8",
		"-l", "INFO", "-n", nodePattern)
	p.WaitLog(t, "cannot reach the broker", 15*time.Second)
	time.Sleep(500 * time.Millisecond)
	assert.NotContains(t, p.Output(), "ready.",
		"ccworker logs ready. before it has a broker connection")
	p.Signal(t, syscall.SIGTERM)
	code, ok := p.Wait(10 * time.Second)
	require.True(t, ok, "ccworker did not exit within 10 s of SIGTERM while connecting; output:\n%s", p.Output())
	t.Logf("SIGTERM while connecting: exit code %d", code)
}
