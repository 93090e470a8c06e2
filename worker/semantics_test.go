package worker_test

import (
	"context"
	"errors"
	"go.uber.org/zap/zaptest/observer"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

func TestFarETAIsParkedThenAcked(t *testing.T) {
	h := start(t)
	r := req(tasks.NoopName)
	r.ETA = time.Now().Add(time.Hour).UTC()
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	h.broker.mu.Lock()
	parked := h.broker.parked
	h.broker.mu.Unlock()
	require.Len(t, parked, 1)
	assert.WithinDuration(t, r.ETA, parked[0].until, time.Millisecond)
	assert.Less(t, h.j.index("park 1"), h.j.index("ack 1"), "acked only once the copy is confirmed")
	h.noRecord(20 * time.Millisecond)
}

func TestTooManyHeldETATasksArePark(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.MaxHeld = 1 }))
	first, second := req(tasks.NoopName), req(tasks.NoopName)
	first.ETA = time.Now().Add(3 * time.Second).UTC()
	second.ETA = first.ETA
	h.send(first)
	tag := h.send(second)
	acked(t, h.settlement(), tag) // the second is parked: the store is full
}

// A park the broker refuses (returned, nacked, a deleted delay queue) used to leave the
// message unacked and forgotten: it held a prefetch slot and never ran.
func TestFailedParkHoldsTheTaskAndRunsItAtItsETA(t *testing.T) {
	h := start(t, parkFails(func(int) error { return prefetch.ErrReturned }),
		withConfig(func(c *worker.Config) { c.ETAHold = 100 * time.Millisecond; c.ParkRetry = 200 * time.Millisecond }))
	r := req(tasks.NoopName)
	r.ETA = time.Now().Add(1500 * time.Millisecond).UTC()
	tag := h.send(r)
	h.noSettlement(500 * time.Millisecond)
	rec := h.record()
	assert.Equal(t, results.StatusSuccess, rec.Status)
	assert.False(t, time.Now().Before(r.ETA), "ran at its ETA, not before")
	acked(t, h.settlement(), tag)
	h.broker.mu.Lock()
	assert.GreaterOrEqual(t, h.broker.parkTries, 2, "parking was tried again while held")
	h.broker.mu.Unlock()
}

func TestFailedParkIsRetriedWhileHeld(t *testing.T) {
	h := start(t, parkFails(func(attempt int) error {
		if attempt == 1 {
			return prefetch.ErrNacked
		}
		return nil
	}), withConfig(func(c *worker.Config) { c.ParkRetry = 100 * time.Millisecond }))
	r := req(tasks.NoopName)
	r.ETA = time.Now().Add(time.Hour).UTC()
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	assert.Less(t, h.j.index("park failed 1"), h.j.index("park 1"))
	h.noRecord(20 * time.Millisecond)
}

func TestFailedParkWithTooManyHeldIsRequeued(t *testing.T) {
	h := start(t, parkFails(func(int) error { return errors.New("declare delay queue: 404 NOT_FOUND") }),
		withConfig(func(c *worker.Config) { c.MaxHeld = 1 }))
	held, far := req(tasks.NoopName), req(tasks.NoopName)
	held.ETA = time.Now().Add(5 * time.Second).UTC()
	far.ETA = time.Now().Add(time.Hour).UTC()
	h.send(held)
	tag := h.send(far)
	assert.Equal(t, settlement{tag: tag, requeue: true}, h.settlement(), "back to the queue, not forgotten")
}

func TestParkOfAStaleDeliveryIsLeftToTheBroker(t *testing.T) {
	h := start(t, parkFails(func(int) error { return prefetch.ErrStale }))
	r := req(tasks.NoopName)
	r.ETA = time.Now().Add(time.Hour).UTC()
	h.send(r)
	h.noSettlement(300 * time.Millisecond)
	assert.Equal(t, 0, h.w.Gauges().InFlight, "no longer in flight: the broker redelivers it")
}

func TestRetryStoresRetryPublishesThenAcks(t *testing.T) {
	h := start(t)
	r := req(tasks.FlakyName, int64(1))
	r.Kwargs = map[string]any{"countdown": int64(5)}
	tag := h.send(r)
	acked(t, h.settlement(), tag)

	rec := h.record()
	assert.Equal(t, results.StatusRetry, rec.Status)
	assert.Equal(t, "RuntimeError", exc(t, rec).Type)
	assert.True(t, rec.DateDone.IsZero() || !rec.Ready(), "RETRY has no date_done")
	j := h.j.all()
	assert.Less(t, h.j.index("write "+r.ID+" RETRY"), h.j.index("publish "+r.ID+" retries=1"), "journal %q", j)
	assert.Less(t, h.j.index("publish "+r.ID+" retries=1"), h.j.index("ack 1"), "journal %q", j)

	sent := h.broker.sent()
	require.Len(t, sent, 1)
	assert.Equal(t, "celery", sent[0].exchange)
	assert.Equal(t, "celery", sent[0].key)
	m := sent[0].msg
	assert.Equal(t, r.ID, m.Headers["id"])
	back, err := protocol.Decode(protocol.Message{ContentType: m.ContentType, Headers: m.Headers, Body: m.Body}, protocol.Accept{})
	require.NoError(t, err)
	assert.Equal(t, 1, back.Retries)
	assert.WithinDuration(t, time.Now().Add(5*time.Second), back.ETA, time.Second)
	assert.Equal(t, r.Args, back.Args)
}

// With native delayed delivery, a retry due after the ETA hold goes through the
// celery_delayed_* levels, as Celery 5.5+ sends a countdown; a sooner one goes to its queue.
func TestRetryBeyondTheHoldGoesThroughNativeDelay(t *testing.T) {
	h := start(t, func(_ *worker.Config, h *harness) { h.broker.native = true })
	r := req(tasks.FlakyName, int64(2))
	r.Kwargs = map[string]any{"countdown": int64(60)}
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	assert.Less(t, h.j.index("publish delayed "+r.ID+" retries=1"), h.j.index("ack 1"))
	h.broker.mu.Lock()
	delayed := h.broker.delayed
	h.broker.mu.Unlock()
	require.Len(t, delayed, 1)
	assert.Equal(t, "celery", delayed[0].queue)
	assert.WithinDuration(t, time.Now().Add(time.Minute), delayed[0].until, 2*time.Second)
	assert.Empty(t, h.broker.sent())

	soon := req(tasks.FlakyName, int64(2))
	soon.Kwargs = map[string]any{"countdown": int64(1)}
	tag = h.send(soon)
	acked(t, h.settlement(), tag)
	assert.Len(t, h.broker.sent(), 1, "within the hold: straight to its queue")
}

func TestRetriesExhaustedFail(t *testing.T) {
	h := start(t, withTask("t.always", func(context.Context, *tasks.Call) (any, error) {
		return nil, &tasks.Retry{MaxRetries: 2}
	}))
	r := req("t.always")
	r.Retries = 2
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	rec := h.record()
	assert.Equal(t, results.StatusFailure, rec.Status)
	e := exc(t, rec)
	assert.Equal(t, "MaxRetriesExceededError", e.Type)
	assert.Equal(t, "celery.exceptions", e.Module)
	assert.Contains(t, e.Message[0], "Can't retry t.always["+r.ID+"]")
	assert.Empty(t, h.broker.sent())
}

func TestRetryPublishFailureRequeues(t *testing.T) {
	h := start(t)
	h.broker.publishErr = errors.New("connection lost")
	tag := h.send(req(tasks.FlakyName, int64(1)))
	assert.Equal(t, settlement{tag: tag, requeue: true}, h.settlement(), "the original goes back to the queue")
}

func TestEarlyAckAcksBeforeTheResult(t *testing.T) {
	h := start(t, manualWrites, withConfig(func(c *worker.Config) { c.EarlyAck = true }))
	tag := h.send(req(tasks.AddName, int64(1), int64(2)))
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusSuccess, h.record().Status)
	h.writer.answer(nil)
	h.noSettlement(20 * time.Millisecond) // not acked twice
}

// TestEarlyAckedTaskIsForgottenWhenDone: a task acked early (task_acks_late = False)
// once left the in-flight table for ever, because its early ack used up the settle-once
// and the final settle, which forgets, did nothing: inspect active listed it and
// --max-idle never ended the worker.
func TestEarlyAckedTaskIsForgottenWhenDone(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.EarlyAck = true }))
	tag := h.send(req(tasks.AddName, int64(2), int64(3)))
	acked(t, h.settlement(), tag)
	assert.Equal(t, "5", h.record().Result)
	h.settled()
	h.noSettlement(20 * time.Millisecond) // not acked twice
}

// TestEarlyAckedTaskLetsMaxIdleStop is the bug as seen from outside: --max-idle never
// ended a worker that had run one task with early ack.
func TestEarlyAckedTaskLetsMaxIdleStop(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) {
		c.EarlyAck = true
		c.MaxIdle = 100 * time.Millisecond
	}))
	tag := h.send(req(tasks.AddName, int64(2), int64(3)))
	acked(t, h.settlement(), tag)
	h.stopsByItself("the idle worker did not stop")
}

// TestAckGuardedTaskIsForgottenWhenDone: the ack guard's early ack had the same flaw.
func TestAckGuardedTaskIsForgottenWhenDone(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.AckGuard = 50 * time.Millisecond }))
	tag := h.send(req(tasks.SleepName, 0.3))
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusSuccess, h.record().Status)
	h.settled()
	h.noSettlement(20 * time.Millisecond)
}

func TestRejectOnFailure(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.RejectOnFailure = true }))
	tag := h.send(req(tasks.FailName, "x"))
	rejected(t, h.settlement(), tag)
	assert.False(t, h.settler.of(tag)[0].requeue)
	assert.Equal(t, results.StatusFailure, h.record().Status)
}

func TestTrackStarted(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.TrackStarted = true }))
	tag := h.send(req(tasks.AddName, int64(1), int64(2)))
	acked(t, h.settlement(), tag)
	started, done := h.record(), h.record()
	assert.Equal(t, results.StatusStarted, started.Status)
	assert.Contains(t, started.Result, `"hostname": "celery@test"`)
	assert.Equal(t, results.StatusSuccess, done.Status)
}

func TestRevokedAtReceipt(t *testing.T) {
	h := start(t)
	r := req(tasks.AddName, int64(1), int64(2))
	assert.Empty(t, h.w.Revoke([]string{r.ID}, false, "SIGTERM"))
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	rec := h.record()
	assert.Equal(t, results.StatusRevoked, rec.Status)
	assert.Equal(t, []any{"revoked"}, exc(t, rec).Message)
}

func TestRevokeTerminateStopsARunningTask(t *testing.T) {
	h := start(t)
	r := req(tasks.SleepName, int64(60))
	tag := h.send(r)
	require.Eventually(t, func() bool { return len(h.w.Running()) == 1 }, wait, time.Millisecond)
	assert.Equal(t, []string{r.ID}, h.w.Running())
	assert.Equal(t, []string{r.ID}, h.w.Revoke([]string{r.ID}, true, "SIGKILL"))
	acked(t, h.settlement(), tag)
	rec := h.record()
	assert.Equal(t, results.StatusRevoked, rec.Status)
	assert.Equal(t, "TaskRevokedError", exc(t, rec).Type)
	assert.Equal(t, []any{"terminated"}, exc(t, rec).Message)
}

func TestMaxIdleStopsTheWorker(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.MaxIdle = 100 * time.Millisecond }))
	tag := h.send(req(tasks.SleepName, 0.2)) // busy for longer than MaxIdle: not idle
	acked(t, h.settlement(), tag)
	h.stopsByItself("the idle worker did not stop")
	assert.Equal(t, results.StatusSuccess, h.record().Status, "the task finished first")
}

func TestMaxTasksStopsAfterN(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.MaxTasks = 2 }))
	t1 := h.send(req(tasks.NoopName))
	t2 := h.send(req(tasks.NoopName))
	t3 := h.send(req(tasks.NoopName)) // over the limit
	got := map[uint64]bool{}
	for range 2 {
		got[h.settlement().tag] = true
	}
	assert.Equal(t, map[uint64]bool{t1: true, t2: true}, got)
	h.stopsByItself("the worker did not stop after --max-tasks")
	assert.Empty(t, h.settler.of(t3), "the third goes back to the queue")
}

func TestAckGuardAcksLongTasksEarly(t *testing.T) {
	h := start(t, manualWrites, withConfig(func(c *worker.Config) { c.AckGuard = 50 * time.Millisecond }))
	tag := h.send(req(tasks.SleepName, 0.3))
	start := time.Now()
	acked(t, h.settlement(), tag)
	assert.Less(t, time.Since(start), 250*time.Millisecond, "acked by the guard while still running")
	assert.Equal(t, results.StatusSuccess, h.record().Status, "the task still finishes and stores its result")
	h.writer.answer(nil)
	h.noSettlement(50 * time.Millisecond) // not acked twice
}

func TestOversizedMessageIsRejected(t *testing.T) {
	var logs *observer.ObservedLogs
	h := start(t, withConfig(func(c *worker.Config) { c.MaxMessageSize = 150 }), withLogs(&logs))
	r := req(tasks.EchoName, strings.Repeat("x", 200))
	tag := h.send(r)
	s := h.settlement()
	assert.Equal(t, settlement{tag: tag}, s, "rejected without requeue")
	line := logs.FilterMessageSnippet("rejected without requeue").All()
	require.Len(t, line, 1)
	assert.Equal(t, r.ID, line[0].ContextMap()["task_id"], "the error line names the task from its headers")
	assert.Equal(t, tasks.EchoName, line[0].ContextMap()["task"])
	h.noRecord(20 * time.Millisecond)
	tag = h.send(req(tasks.NoopName)) // and the worker goes on
	acked(t, h.settlement(), tag)
}

// The rest of the bad-input catalogue (docs/reliability.md): each case is settled as
// Celery would, logged, and the worker goes on.
func TestBadInputCatalogue(t *testing.T) {
	good, err := protocol.EncodeV2(req(tasks.NoopName))
	require.NoError(t, err)
	withBody := func(body string) protocol.Message {
		m := good
		m.Body = []byte(body)
		return m
	}
	h := start(t)

	// args not a list: rejected without requeue.
	tag := h.deliver(withBody(`[{"a": 1}, {}, {}]`))
	assert.Equal(t, settlement{tag: tag}, h.settlement(), "args not a list")
	// invalid UTF-8 in a JSON body: undecodable, acked and dropped with a log line, as
	// Celery does (json.loads raises, on_decode_error acks).
	tag = h.deliver(withBody("[[], {}, {\"callbacks\": null, \"x\": \"\xff\xfe\"}]"))
	acked(t, h.settlement(), tag)

	// a task name with control characters: unknown, FAILURE NotRegistered, rejected.
	r := req("ccworker.add\n\x1b[31m")
	tag = h.send(r)
	rec := h.record()
	assert.Equal(t, "NotRegistered", exc(t, rec).Type)
	assert.Equal(t, settlement{tag: tag}, h.settlement())

	// an absurd ETA (the year 9999) is parked, not held: no memory, no unacked message.
	r = req(tasks.NoopName)
	r.ETA = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	tag = h.send(r)
	acked(t, h.settlement(), tag)

	// an expiry long past: REVOKED 'expired'.
	r = req(tasks.NoopName)
	r.Expires = time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC)
	tag = h.send(r)
	assert.Equal(t, []any{"expired"}, exc(t, h.record()).Message)
	acked(t, h.settlement(), tag)

	// and the worker goes on.
	tag = h.send(req(tasks.AddName, int64(1), int64(2)))
	acked(t, h.settlement(), tag)
}

// As Celery 5.6.2+: a revoke for a task the worker holds (here an ETA task not yet due)
// stores REVOKED at once; the message is settled when the task comes due.
func TestRevokeOfAHeldTaskStoresRevokedAtOnce(t *testing.T) {
	h := start(t)
	r := req(tasks.NoopName)
	r.ETA = time.Now().Add(3 * time.Second).UTC() // held in memory
	tag := h.send(r)
	require.Eventually(t, func() bool { return len(h.w.ReservedTasks())+len(h.w.ScheduledTasks()) == 1 },
		10*time.Second, 5*time.Millisecond)
	assert.Empty(t, h.w.Revoke([]string{r.ID, "not-held"}, false, "SIGTERM"))
	rec := h.record()
	assert.Equal(t, results.StatusRevoked, rec.Status)
	assert.Equal(t, r.ID, rec.TaskID)
	assert.Equal(t, excInfo{Type: "TaskRevokedError", Message: []any{"revoked"}, Module: "celery.exceptions"}, exc(t, rec))
	h.noSettlement(50 * time.Millisecond) // not yet: the message waits for its time
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusRevoked, h.record().Status)
	require.NoError(t, h.shutdown())
}

// A handler that ends with tasks.ErrIgnore (Celery's Ignore, raised by Task.replace)
// leaves no result and sends no callback; the message is acked.
func TestIgnoredTaskIsAckedWithoutResult(t *testing.T) {
	h := start(t, withTask("t.replaced", func(context.Context, *tasks.Call) (any, error) { return nil, tasks.ErrIgnore }))
	r := req("t.replaced")
	r.Callbacks = []any{map[string]any{"task": tasks.NoopName, "args": []any{}, "kwargs": map[string]any{},
		"options": map[string]any{}, "subtask_type": nil, "immutable": false}}
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	h.noRecord(100 * time.Millisecond)
	require.NoError(t, h.shutdown())
}

func withOptions(name string, fn tasks.Handler, o tasks.Options) option {
	return func(_ *worker.Config, h *harness) { require.NoError(h.t, h.reg.RegisterWith(name, fn, o)) }
}

func add(_ context.Context, c *tasks.Call) (any, error) { return int64(len(c.Args)), nil }

// A task's own acks_late=False (its decorator's) acks at start on a worker that acks late.
func TestTaskAcksLateFalseAcksEarly(t *testing.T) {
	no := false
	h := start(t, manualWrites, withOptions("own.early", add, tasks.Options{AcksLate: &no}))
	tag := h.send(req("own.early"))
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusSuccess, h.record().Status)
	h.writer.answer(nil)
}

// A task's own acks_late=True keeps it late on a worker that acks early.
func TestTaskAcksLateTrueOverridesEarlyAck(t *testing.T) {
	yes := true
	h := start(t, manualWrites, withConfig(func(c *worker.Config) { c.EarlyAck = true }),
		withOptions("own.late", add, tasks.Options{AcksLate: &yes}))
	tag := h.send(req("own.late"))
	assert.Equal(t, results.StatusSuccess, h.record().Status)
	h.noSettlement(50 * time.Millisecond) // not before the result is stored
	h.writer.answer(nil)
	acked(t, h.settlement(), tag)
}

func TestTaskTrackStarted(t *testing.T) {
	yes, no := true, false
	h := start(t, withOptions("own.tracked", add, tasks.Options{TrackStarted: &yes}),
		withOptions("own.untracked", add, tasks.Options{TrackStarted: &no}),
		withConfig(func(c *worker.Config) { c.TrackStarted = false }))
	tag := h.send(req("own.tracked"))
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusStarted, h.record().Status)
	assert.Equal(t, results.StatusSuccess, h.record().Status)
	tag = h.send(req("own.untracked"))
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusSuccess, h.record().Status)
}

func TestTaskRejectOnWorkerLost(t *testing.T) {
	yes := true
	lost := func(context.Context, *tasks.Call) (any, error) { return nil, tasks.ErrWorkerLost }
	h := start(t, withOptions("own.lost", lost, tasks.Options{RejectOnWorkerLost: &yes}),
		withOptions("plain.lost", lost, tasks.Options{}))
	tag := h.send(req("own.lost"))
	assert.Equal(t, settlement{tag: tag, requeue: true}, h.settlement())
	tag = h.send(req("plain.lost"))
	acked(t, h.settlement(), tag)
	assert.Equal(t, results.StatusFailure, h.record().Status)
}

// TestMaxIdleWaitsWhileMessagesWait: no task for MaxIdle is not idle while the broker
// reports messages waiting in the queues (RabbitMQ can take longer than a short MaxIdle
// to start delivering from a long queue); the worker stops once they are gone.
func TestMaxIdleWaitsWhileMessagesWait(t *testing.T) {
	h := start(t, withConfig(func(c *worker.Config) { c.MaxIdle = 50 * time.Millisecond }))
	h.broker.waiting.Store(39000)
	select {
	case <-h.runErr:
		t.Fatal("the worker stopped with 39,000 messages waiting")
	case <-time.After(500 * time.Millisecond): // 10 x MaxIdle
	}
	h.broker.waiting.Store(0)
	h.stopsByItself("the idle worker did not stop once the queue was dry")
}
