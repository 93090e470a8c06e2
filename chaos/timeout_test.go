package chaos

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/taskload"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
)

// TestConsumerTimeout (issue #7, part 4): the private node's consumer_timeout is lowered to
// one minute (scripts/chaos/rmq.sh). A 2-minute task and a task with a 2-minute ETA both
// complete, and the broker never closes the worker's channel: the running task's message is
// acked by --ack-guard before the timeout, and the ETA task waits in broker-side delay queues,
// never unacked for long. (With Celery's acks_late both would loop for ever, #6760.)
func TestConsumerTimeout(t *testing.T) {
	const queue = "chaos_consumer_timeout"
	var delayQueues []string
	for _, b := range []time.Duration{1, 2, 4, 8, 16, 32, 64} {
		delayQueues = append(delayQueues, prefetch.DelayQueueName(queue, b*time.Second))
	}
	conn := freshQueue(t, queue, delayQueues...)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *protocol.Request) {
		msg, err := taskload.Publishing(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Publish("", queue, false, false, msg); err != nil {
			t.Fatal(err)
		}
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	long := &protocol.Request{ID: "long-task-" + suffix, Task: "ccworker.sleep", Args: []any{int64(120)}, Kwargs: map[string]any{}}
	later := &protocol.Request{ID: "eta-task-" + suffix, Task: "ccworker.add", Args: []any{int64(1), int64(2)},
		Kwargs: map[string]any{}, ETA: time.Now().Add(120 * time.Second).UTC()}
	send(long)
	send(later)

	coll := freshResults(t, queue, options.Client().SetTimeout(10*time.Second))

	w := startWorker(t, "consumer-timeout", newLedger(), "-b", ccworkerBrokerURL,
		"--result-backend", mongoURL+queue, "-Q", queue, "-c", "4", "-n", "timeout@chaos", "-l", "INFO",
		"--log-format", "json", "--ack-guard", "30s")
	start := time.Now()
	done := testharness.WaitFor(600*time.Second, time.Second, func() bool {
		ctx, cancel := ctxTimeout(5 * time.Second)
		defer cancel()
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "status", Value: "SUCCESS"}})
		return err == nil && n == 2
	})
	t.Logf("both tasks done after %.0f s: %v", time.Since(start).Seconds(), done)
	out := w.Output()
	if !done {
		t.Errorf("the 2-minute task and the 2-minute ETA task did not both succeed within 600 s\n%s", testharness.Tail(out, 30))
	}
	for _, bad := range []string{"channel closed", "connection lost", "PRECONDITION_FAILED"} {
		if strings.Contains(out, bad) {
			t.Errorf("the broker closed the worker's channel (%q in its log):\n%s", bad, testharness.Tail(out, 30))
		}
	}
	if !strings.Contains(out, "--ack-guard") {
		t.Errorf("the long task was not acked by the guard:\n%s", testharness.Tail(out, 30))
	}
	if strings.Count(out, "Task ccworker.sleep["+long.ID+"] received") != 1 {
		t.Errorf("the long task was delivered more than once:\n%s", testharness.Tail(out, 30))
	}
	_ = w.Cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := w.Wait(90 * time.Second); !ok || code != 0 {
		t.Errorf("SIGTERM: exit %d (exited %v)", code, ok)
	}
}
