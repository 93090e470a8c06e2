package interop

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testharness"
)

// TestAcksLateByDefaultEarlyOnRequest shows the delivery guarantee: a worker killed
// (kill -9) while a task runs leaves the message in the queue by default (at-least-once),
// and loses it with --early-ack (Celery's default, at-most-once).
func TestAcksLateByDefaultEarlyOnRequest(t *testing.T) {
	needCelery(t)
	for _, c := range []struct {
		name  string
		flags []string
		ready int
	}{
		{"default: at-least-once", nil, 1},
		{"--early-ack: Celery's early ack", []string{"--early-ack"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSetup(t)
			w := s.start(t, c.flags...)
			ids := s.publish(t, "ccworker.sleep", "[30]", 1)
			w.WaitLogFunc(t, "task running", 15*time.Second, func(log string) bool { return lineWith(log, "received", ids[0]) })
			time.Sleep(300 * time.Millisecond) // running (and, with --early-ack, acked)
			w.Signal(t, syscall.SIGKILL)
			_, ok := w.Wait(5 * time.Second)
			require.True(t, ok)
			assert.Equal(t, c.ready, testharness.WaitReady(t, s.amqpURL, s.queue, c.ready, 5*time.Second))
		})
	}
}

// TestTrackStarted: with task_track_started the client sees STARTED while the task runs.
func TestTrackStarted(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("task_track_started = True\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	w := s.start(t)
	defer w.Stop(t)
	ids := s.publish(t, "ccworker.sleep", "[2]", 1)
	require.Eventually(t, func() bool {
		return s.countDocs(t, bson.D{{Key: "_id", Value: ids[0]}, {Key: "status", Value: "STARTED"}}) == 1
	}, 10*time.Second, 50*time.Millisecond, "STARTED stored while running")
	raw, err := s.findRaw(t, ids[0])
	require.NoError(t, err)
	assert.Contains(t, raw.Lookup("result").StringValue(), `"hostname"`)
	require.Eventually(t, func() bool {
		return s.countDocs(t, bson.D{{Key: "_id", Value: ids[0]}, {Key: "status", Value: "SUCCESS"}}) == 1
	}, 10*time.Second, 50*time.Millisecond, "then SUCCESS, never STARTED again")
}

// TestEarlyAckedTaskLetsMaxIdleStop is #12's bug seen from outside: with --early-ack a
// finished task stayed in the worker's in-flight table, so --max-idle never ended it
// (and inspect active listed the task for ever).
func TestEarlyAckedTaskLetsMaxIdleStop(t *testing.T) {
	needCelery(t)
	s := newSetup(t)
	ids := s.publish(t, "ccworker.add", "[2, 3]", 1) // queued first: the idle clock cannot win
	w := spawn(t, "--config", s.config, "-Q", s.queue, "-c", "2", "-l", "INFO", "-n", nodePattern,
		"--early-ack", "--max-idle", "3s")
	require.Eventually(t, func() bool {
		return s.countDocs(t, bson.D{{Key: "_id", Value: ids[0]}, {Key: "status", Value: "SUCCESS"}}) == 1
	}, 30*time.Second, 50*time.Millisecond, "the task ran")
	code, ok := w.Wait(30 * time.Second)
	if !ok {
		w.Stop(t)
	}
	require.True(t, ok, "the idle worker did not stop")
	assert.Equal(t, 0, code)
	assert.Equal(t, 0, testharness.ReadyCount(t, s.amqpURL, s.queue), "the message was acked")
}
