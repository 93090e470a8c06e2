package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

const wait = 5 * time.Second

// journal is an ordered log of what happened, shared by the fakes, so tests can check
// the order of writes, acks and the broker's close.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, a ...any) {
	j.mu.Lock()
	j.entries = append(j.entries, fmt.Sprintf(format, a...))
	j.mu.Unlock()
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

func (j *journal) index(entry string) int {
	for i, e := range j.all() {
		if e == entry {
			return i
		}
	}
	return -1
}

// settlement is what became of one delivery.
type settlement struct {
	tag     uint64
	ack     bool
	requeue bool // for a reject
}

// fakeSettler stands in for the AMQP channel: it records acks and rejects.
type fakeSettler struct {
	j       *journal
	gate    chan struct{} // when set, acks and rejects wait for it to close (a slow channel)
	mu      sync.Mutex
	byTag   map[uint64][]settlement
	settled chan settlement
}

func (s *fakeSettler) Ack(tag uint64, multiple bool) error {
	s.record(settlement{tag: tag, ack: true})
	return nil
}

func (s *fakeSettler) Nack(tag uint64, multiple, requeue bool) error {
	s.record(settlement{tag: tag, requeue: requeue})
	return nil
}

func (s *fakeSettler) record(st settlement) {
	if s.gate != nil {
		<-s.gate
	}
	if st.ack {
		s.j.add("ack %d", st.tag)
	} else {
		s.j.add("reject %d requeue=%v", st.tag, st.requeue)
	}
	s.mu.Lock()
	s.byTag[st.tag] = append(s.byTag[st.tag], st)
	s.mu.Unlock()
	s.settled <- st
}

func (s *fakeSettler) of(tag uint64) []settlement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]settlement(nil), s.byTag[tag]...)
}

// fakeBroker implements worker.Broker; the harness plays its owner (node.Node): it
// starts it with the worker's Handle and closes it after the worker has stopped.
type fakeBroker struct {
	j       *journal
	started chan struct{}

	consume context.Context
	cancel  context.CancelFunc
	handle  prefetch.Handler

	stopped, closed atomic.Bool
	waiting         atomic.Int64 // what Waiting reports

	mu         sync.Mutex
	published  []published
	parked     []parkedDelivery
	publishErr error
	parkErr    func(attempt int) error // nil: every park succeeds
	parkTries  int
	native     bool // PublishDelayed works (else prefetch.ErrNotNative)
	delayed    []delayedMessage
}

// delayedMessage is a message sent through native delayed delivery.
type delayedMessage struct {
	queue string
	msg   amqp.Publishing
	until time.Time
}

func (b *fakeBroker) PublishDelayed(_ context.Context, queue string, msg amqp.Publishing, until time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.native {
		return prefetch.ErrNotNative
	}
	b.delayed = append(b.delayed, delayedMessage{queue, msg, until})
	b.j.add("publish delayed %s retries=%v", msg.Headers["id"], msg.Headers["retries"])
	return nil
}

// published is a message the worker sent (a retry).
type published struct {
	exchange, key string
	msg           amqp.Publishing
}

type parkedDelivery struct {
	d     *prefetch.Delivery
	until time.Time
}

func (b *fakeBroker) Publish(_ context.Context, exchange, key string, msg amqp.Publishing) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.publishErr != nil {
		b.j.add("publish failed %s", msg.Headers["id"])
		return b.publishErr
	}
	b.published = append(b.published, published{exchange, key, msg})
	b.j.add("publish %s retries=%v", msg.Headers["id"], msg.Headers["retries"])
	return nil
}

func (b *fakeBroker) Park(_ context.Context, d *prefetch.Delivery, until time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parkTries++
	if b.parkErr != nil {
		if err := b.parkErr(b.parkTries); err != nil {
			b.j.add("park failed %d", d.Tag)
			return err
		}
	}
	b.parked = append(b.parked, parkedDelivery{d, until})
	b.j.add("park %d", d.Tag)
	return nil
}

func (b *fakeBroker) Ensure(q prefetch.Queue) error {
	b.j.add("ensure %s", q.Name)
	return nil
}

func (b *fakeBroker) sent() []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]published(nil), b.published...)
}

func newFakeBroker(j *journal) *fakeBroker {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeBroker{j: j, started: make(chan struct{}), consume: ctx, cancel: cancel}
}

func (b *fakeBroker) Start(handle prefetch.Handler) error {
	b.handle = handle
	close(b.started)
	return nil
}

func (b *fakeBroker) Waiting(context.Context) (int, error) { return int(b.waiting.Load()), nil }

func (b *fakeBroker) StopConsuming() {
	b.stopped.Store(true)
	b.j.add("stop consuming")
	b.cancel()
}

func (b *fakeBroker) Close() error {
	b.closed.Store(true)
	b.j.add("close")
	b.cancel()
	return nil
}

// fakeWriter implements worker.ResultWriter. In auto mode it answers each write at once
// with autoErr; otherwise callbacks wait for answer() or Stop.
type fakeWriter struct {
	j       *journal
	auto    bool
	autoErr error

	mu      sync.Mutex
	recs    []*results.Record
	pending []func(error)
	stopped bool
	written chan *results.Record
}

func (w *fakeWriter) Write(_ context.Context, rec *results.Record, done func(error)) error {
	w.j.add("write %s %s", rec.TaskID, rec.Status)
	w.mu.Lock()
	w.recs = append(w.recs, rec)
	if !w.auto {
		w.pending = append(w.pending, done)
	}
	w.mu.Unlock()
	w.written <- rec
	if w.auto {
		done(w.autoErr)
	}
	return nil
}

// answer answers every pending write with err.
func (w *fakeWriter) answer(err error) int {
	w.mu.Lock()
	p := w.pending
	w.pending = nil
	w.mu.Unlock()
	for _, done := range p {
		done(err)
	}
	return len(p)
}

func (w *fakeWriter) Stop(context.Context) error {
	w.j.add("results stop")
	w.answer(nil) // a flush: everything pending becomes durable
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	return nil
}

func (w *fakeWriter) records() []*results.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*results.Record(nil), w.recs...)
}

// harness runs a Worker over the fakes.
type harness struct {
	t        *testing.T
	j        *journal
	broker   *fakeBroker
	writer   *fakeWriter
	settler  *fakeSettler
	reg      *tasks.Registry
	log      *zap.Logger // nil: no logging
	w        *worker.Worker
	ctx      context.Context
	cancel   context.CancelFunc
	kill     context.CancelFunc
	runErr   chan error
	tag      atomic.Uint64
	finished bool
}

type option func(*worker.Config, *harness)

func manualWrites(_ *worker.Config, h *harness) { h.writer.auto = false }

func noBackend(_ *worker.Config, h *harness) { h.writer = nil }

func writeError(err error) option {
	return func(_ *worker.Config, h *harness) { h.writer.autoErr = err }
}

func withConfig(f func(*worker.Config)) option {
	return func(c *worker.Config, _ *harness) { f(c) }
}

func parkFails(f func(attempt int) error) option {
	return func(_ *worker.Config, h *harness) { h.broker.parkErr = f }
}

// withLogs records the worker's log lines.
func withLogs(logs **observer.ObservedLogs) option {
	return func(_ *worker.Config, h *harness) {
		core, l := observer.New(zap.DebugLevel)
		h.log, *logs = zap.New(core), l
	}
}

func withTask(name string, fn tasks.Handler) option {
	return func(_ *worker.Config, h *harness) { require.NoError(h.t, h.reg.Register(name, fn)) }
}

// start builds the worker and starts Run; it checks for leaked goroutines at the end.
func start(t *testing.T, opts ...option) *harness {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	j := &journal{}
	h := &harness{
		t: t, j: j, broker: newFakeBroker(j),
		writer:  &fakeWriter{j: j, auto: true, written: make(chan *results.Record, 100)},
		settler: &fakeSettler{j: j, byTag: map[uint64][]settlement{}, settled: make(chan settlement, 100)},
		reg:     tasks.NewRegistry(),
		runErr:  make(chan error, 1),
	}
	require.NoError(t, tasks.RegisterBuiltins(h.reg))
	cfg := worker.Config{NodeName: "celery@test", Concurrency: 4, DrainTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg, h)
	}
	var rw worker.ResultWriter
	if h.writer != nil {
		rw = h.writer
	}
	w, err := worker.New(cfg, h.reg, h.broker, rw, h.log)
	require.NoError(t, err)
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	kill, killCancel := context.WithCancel(context.Background())
	h.ctx, h.cancel, h.kill = ctx, cancel, killCancel
	require.NoError(t, w.Start(ctx))
	go func() {
		select { // as Run does, but started before the test delivers
		case <-ctx.Done():
		case <-w.Done():
		}
		err := w.Stop(kill)
		// The owner's part, after the worker: flush the results, close the broker.
		if h.writer != nil {
			_ = h.writer.Stop(context.Background())
		}
		_ = h.broker.Close()
		h.runErr <- err
	}()
	require.NoError(t, h.broker.Start(w.Handle))
	// Registered after goleak's check, so it runs first.
	t.Cleanup(func() {
		if !h.finished {
			_ = h.shutdown()
		}
		h.nothingLeft()
	})
	return h
}

// nothingLeft checks that every task has left the worker's bookkeeping once Run has
// returned: whatever became of a task (settled, or left for redelivery), it is no
// longer in flight, running or active.
// stopsByItself waits for the worker to stop on its own (--max-idle, --max-tasks) and
// exit cleanly; msg says what did not happen.
func (h *harness) stopsByItself(msg string) {
	h.t.Helper()
	select {
	case err := <-h.runErr:
		require.NoError(h.t, err)
		h.finished = true
	case <-time.After(wait):
		h.t.Fatalf("%s: %+v", msg, h.w.Gauges())
	}
}

func (h *harness) nothingLeft() {
	h.t.Helper()
	g := h.w.Gauges()
	assert.Zero(h.t, g.InFlight, "tasks still in flight after Run returned")
	assert.Zero(h.t, g.Running, "tasks still running after Run returned")
	assert.Zero(h.t, g.Held, "tasks still held after Run returned")
	assert.Empty(h.t, h.w.ActiveTasks(), "tasks still active after Run returned")
	assert.Empty(h.t, h.w.ReservedTasks(), "tasks still reserved after Run returned")
	assert.Empty(h.t, h.w.ScheduledTasks(), "tasks still scheduled after Run returned")
}

// settled waits until no task is in flight: a finished task leaves the worker's
// bookkeeping (and its body leaves memory) without waiting for the shutdown.
func (h *harness) settled() {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.w.Gauges().InFlight == 0 }, wait, time.Millisecond,
		"tasks still in flight: %+v; journal: %q", h.w.Gauges(), h.j.all())
	assert.Empty(h.t, h.w.ActiveTasks())
}

// shutdown asks for a warm shutdown and returns Run's error.
func (h *harness) shutdown() error {
	h.t.Helper()
	h.finished = true
	h.cancel()
	defer h.kill()
	select {
	case err := <-h.runErr:
		return err
	case <-time.After(3 * wait):
		h.t.Fatal("Run did not return after the shutdown")
		return nil
	}
}

// deliver hands a delivery to the worker's handler the way the consumer does and
// returns its tag.
func (h *harness) deliver(m protocol.Message) uint64 {
	h.t.Helper()
	tag := h.tag.Add(1)
	d := prefetch.NewDelivery(prefetch.Delivery{
		Queue: "celery", Exchange: "celery", RoutingKey: "celery",
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Headers: amqp.Table(m.Headers),
		Body: m.Body, CorrelationID: m.CorrelationID, ReplyTo: m.ReplyTo, Priority: m.Priority, Tag: tag,
	}, h.settler)
	h.broker.handle(h.broker.consume, d)
	return tag
}

func (h *harness) send(r *protocol.Request) uint64 {
	h.t.Helper()
	m, err := protocol.EncodeV2(r)
	require.NoError(h.t, err)
	return h.deliver(m)
}

func (h *harness) settlement() settlement {
	h.t.Helper()
	select {
	case s := <-h.settler.settled:
		return s
	case <-time.After(wait):
		h.t.Fatalf("no ack or reject; journal: %q", h.j.all())
		return settlement{}
	}
}

func (h *harness) noSettlement(d time.Duration) {
	h.t.Helper()
	select {
	case s := <-h.settler.settled:
		h.t.Fatalf("unexpected settlement %+v; journal: %q", s, h.j.all())
	case <-time.After(d):
	}
}

func (h *harness) record() *results.Record {
	h.t.Helper()
	select {
	case r := <-h.writer.written:
		return r
	case <-time.After(wait):
		h.t.Fatalf("no result written; journal: %q", h.j.all())
		return nil
	}
}

func (h *harness) noRecord(d time.Duration) {
	h.t.Helper()
	select {
	case r := <-h.writer.written:
		h.t.Fatalf("unexpected record %+v", r)
	case <-time.After(d):
	}
}

var ids atomic.Uint64

func req(task string, args ...any) *protocol.Request {
	if args == nil {
		args = []any{}
	}
	return &protocol.Request{ID: fmt.Sprintf("id-%d", ids.Add(1)), Task: task, Args: args, Kwargs: map[string]any{}}
}

type excInfo struct {
	Type    string `json:"exc_type"`
	Message []any  `json:"exc_message"`
	Module  string `json:"exc_module"`
}

func exc(t *testing.T, r *results.Record) excInfo {
	t.Helper()
	var e excInfo
	require.NoError(t, json.Unmarshal([]byte(r.Result), &e), "result %q", r.Result)
	return e
}

func acked(t *testing.T, s settlement, tag uint64) {
	t.Helper()
	assert.Equal(t, settlement{tag: tag, ack: true}, s)
}

func rejected(t *testing.T, s settlement, tag uint64) {
	t.Helper()
	assert.Equal(t, settlement{tag: tag, ack: false, requeue: false}, s)
}

// blocker is a task that waits until released or its context ends.
func blocker(started chan<- string, release <-chan struct{}) tasks.Handler {
	return func(ctx context.Context, c *tasks.Call) (any, error) {
		started <- c.Request.ID
		select {
		case <-release:
			return "released", nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func TestSuccessIsStoredThenAcked(t *testing.T) {
	h := start(t, manualWrites)
	r := req(tasks.AddName, int64(2), int64(3))
	tag := h.send(r)

	rec := h.record()
	assert.Equal(t, r.ID, rec.TaskID)
	assert.Equal(t, results.StatusSuccess, rec.Status)
	assert.Equal(t, "5", rec.Result)
	assert.Equal(t, "celery@test", rec.Worker)
	assert.Equal(t, tasks.AddName, rec.Name)
	assert.Equal(t, "celery", rec.Queue)
	assert.Empty(t, rec.Traceback)

	h.noSettlement(100 * time.Millisecond) // not before the write is durable
	require.Equal(t, 1, h.writer.answer(nil))
	acked(t, h.settlement(), tag)
	assert.Less(t, h.j.index("write "+r.ID+" SUCCESS"), h.j.index(fmt.Sprintf("ack %d", tag)))

	require.NoError(t, h.shutdown())
	assert.Len(t, h.settler.of(tag), 1, "settled exactly once")
	assert.EqualValues(t, 1, h.w.Counters().Succeeded.Load())
}

func TestIgnoreResultHeaderStoresNothing(t *testing.T) {
	h := start(t)
	r := req(tasks.AddName, int64(1), int64(1))
	r.IgnoreResult = true
	tag := h.send(r)
	acked(t, h.settlement(), tag)
	h.noRecord(50 * time.Millisecond)
	require.NoError(t, h.shutdown())
}

func TestIgnoreResultHeaderStillStoresErrors(t *testing.T) {
	h := start(t)
	r := req(tasks.FailName, "boom")
	r.IgnoreResult = true
	tag := h.send(r)
	assert.Equal(t, results.StatusFailure, h.record().Status)
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestTaskIgnoreResultConfig(t *testing.T) {
	t.Run("nothing stored", func(t *testing.T) {
		h := start(t, withConfig(func(c *worker.Config) { c.IgnoreResult = true }))
		ok := h.send(req(tasks.AddName, int64(1), int64(1)))
		acked(t, h.settlement(), ok)
		fail := h.send(req(tasks.FailName, "boom"))
		acked(t, h.settlement(), fail)
		h.noRecord(50 * time.Millisecond)
		require.NoError(t, h.shutdown())
	})
	t.Run("errors stored when StoreErrorsEvenIfIgnored", func(t *testing.T) {
		h := start(t, withConfig(func(c *worker.Config) { c.IgnoreResult, c.StoreErrorsEvenIfIgnored = true, true }))
		ok := h.send(req(tasks.AddName, int64(1), int64(1)))
		acked(t, h.settlement(), ok)
		h.noRecord(50 * time.Millisecond)
		r := req(tasks.FailName, "boom")
		fail := h.send(r)
		rec := h.record()
		assert.Equal(t, r.ID, rec.TaskID)
		assert.Equal(t, results.StatusFailure, rec.Status)
		acked(t, h.settlement(), fail)
		require.NoError(t, h.shutdown())
	})
}

func TestFailureStoresExceptionAndTraceback(t *testing.T) {
	h := start(t)
	r := req(tasks.FailName, "boom")
	tag := h.send(r)
	rec := h.record()
	assert.Equal(t, results.StatusFailure, rec.Status)
	assert.Equal(t, excInfo{Type: "ValueError", Message: []any{"boom"}, Module: "builtins"}, exc(t, rec))
	assert.True(t, strings.HasPrefix(rec.Traceback, "Traceback (most recent call last):\n"), rec.Traceback)
	assert.True(t, strings.HasSuffix(rec.Traceback, "ValueError: boom\n"), rec.Traceback)
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
	assert.EqualValues(t, 1, h.w.Counters().Failed.Load())
}

func TestGoErrorIsBuiltinsException(t *testing.T) {
	h := start(t, withTask("t.goerr", func(context.Context, *tasks.Call) (any, error) {
		return nil, errors.New("disk on fire")
	}))
	tag := h.send(req("t.goerr"))
	rec := h.record()
	assert.Equal(t, excInfo{Type: "Exception", Message: []any{"disk on fire"}, Module: "builtins"}, exc(t, rec))
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestUnknownTaskStoresNotRegisteredThenRejects(t *testing.T) {
	h := start(t, manualWrites)
	r := req("no.such.task")
	tag := h.send(r)
	rec := h.record()
	assert.Equal(t, results.StatusFailure, rec.Status)
	assert.Equal(t, excInfo{Type: "NotRegistered", Message: []any{"no.such.task"}, Module: "celery.exceptions"}, exc(t, rec))
	h.noSettlement(50 * time.Millisecond)
	h.writer.answer(nil)
	rejected(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestUnknownTaskWithoutBackendRejects(t *testing.T) {
	h := start(t, noBackend)
	tag := h.send(req("no.such.task"))
	rejected(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestExpiredIsRevokedAndAcked(t *testing.T) {
	ran := make(chan struct{}, 1)
	h := start(t, withTask("t.never", func(context.Context, *tasks.Call) (any, error) {
		ran <- struct{}{}
		return nil, nil
	}))
	r := req("t.never")
	r.Expires = time.Now().Add(-time.Minute).UTC()
	tag := h.send(r)
	rec := h.record()
	assert.Equal(t, results.StatusRevoked, rec.Status)
	assert.Equal(t, excInfo{Type: "TaskRevokedError", Message: []any{"expired"}, Module: "celery.exceptions"}, exc(t, rec))
	acked(t, h.settlement(), tag)
	select {
	case <-ran:
		t.Fatal("an expired task ran")
	default:
	}
	require.NoError(t, h.shutdown())
	assert.EqualValues(t, 1, h.w.Counters().Revoked.Load())
}

func TestETARunsAfterItsETA(t *testing.T) {
	ranAt := make(chan time.Time, 1)
	h := start(t, withTask("t.when", func(context.Context, *tasks.Call) (any, error) {
		ranAt <- time.Now()
		return nil, nil
	}))
	r := req("t.when")
	eta := time.Now().Add(50 * time.Millisecond)
	r.ETA = eta.UTC()
	tag := h.send(r)
	returned := time.Now()
	select {
	case at := <-ranAt:
		assert.False(t, at.Before(eta), "ran %v before its ETA", eta.Sub(at))
		assert.True(t, returned.Before(at), "the handler must not block until the ETA")
	case <-time.After(wait):
		t.Fatal("ETA task never ran")
	}
	assert.Equal(t, results.StatusSuccess, h.record().Status)
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestETAHeldAtShutdownIsLeftUnsettled(t *testing.T) {
	h := start(t)
	r := req(tasks.NoopName)
	r.ETA = time.Now().Add(5 * time.Second).UTC() // within the hold window
	h.send(r)
	require.NoError(t, h.shutdown())
	h.noSettlement(20 * time.Millisecond)
	assert.Empty(t, h.writer.records())
}

func TestBadMessagesAreSettledLikeCelery(t *testing.T) {
	good, err := protocol.EncodeV2(req(tasks.NoopName))
	require.NoError(t, err)
	withBody := func(ct string, body string) protocol.Message {
		m := good
		m.ContentType, m.Body = ct, []byte(body)
		return m
	}
	cases := []struct {
		name string
		msg  protocol.Message
		ack  bool
	}{
		{"undecodable body is acked", withBody("application/json", `[[], {}, {"callbacks": nu`), true},
		{"disallowed content type is rejected", withBody("application/x-python-serialize", "\x80\x04N."), false},
		{"invalid structure is rejected", withBody("application/json", `[1, {}, {}]`), false},
		{"kwargs not a map is rejected", withBody("application/json", `[[], [], {}]`), false},
		{"not a task message is rejected", protocol.Message{ContentType: "application/json", Body: []byte(`{"hello": 1}`)}, false},
	}
	h := start(t)
	for _, c := range cases {
		tag := h.deliver(c.msg)
		s := h.settlement()
		assert.Equal(t, settlement{tag: tag, ack: c.ack}, s, c.name)
	}
	h.noRecord(20 * time.Millisecond)
	// The worker keeps going.
	tag := h.send(req(tasks.AddName, int64(1), int64(2)))
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
	assert.EqualValues(t, len(cases), h.w.Counters().Rejected.Load())
}

func waitOnContext(ctx context.Context, _ *tasks.Call) (any, error) {
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

func TestHardTimeLimitFromHeader(t *testing.T) {
	h := start(t, withTask("t.forever", waitOnContext))
	r := req("t.forever")
	r.TimeLimit = 50 * time.Millisecond
	tag := h.send(r)
	rec := h.record()
	assert.Equal(t, results.StatusFailure, rec.Status)
	assert.Equal(t, excInfo{Type: "TimeLimitExceeded", Message: []any{0.05}, Module: "billiard.exceptions"}, exc(t, rec))
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestSoftTimeLimitFromHeader(t *testing.T) {
	h := start(t, withTask("t.forever", waitOnContext))
	r := req("t.forever")
	r.SoftTimeLimit = 50 * time.Millisecond
	tag := h.send(r)
	rec := h.record()
	assert.Equal(t, results.StatusFailure, rec.Status)
	assert.Equal(t, excInfo{Type: "SoftTimeLimitExceeded", Message: []any{}, Module: "billiard.exceptions"}, exc(t, rec))
	acked(t, h.settlement(), tag)
	require.NoError(t, h.shutdown())
}

func TestTimeLimitPrecedence(t *testing.T) {
	h := start(t, withTask("t.forever", waitOnContext), withTask("t.other", waitOnContext),
		withConfig(func(c *worker.Config) {
			c.TimeLimit = 250 * time.Millisecond
			c.TaskLimits = map[string]worker.Limits{"t.forever": {Hard: 150 * time.Millisecond}}
		}))
	limitOf := func(r *protocol.Request) float64 {
		t.Helper()
		h.send(r)
		e := exc(t, h.record())
		h.settlement()
		require.Equal(t, "TimeLimitExceeded", e.Type)
		require.Len(t, e.Message, 1)
		return e.Message[0].(float64)
	}
	withHeader := req("t.forever")
	withHeader.TimeLimit = 50 * time.Millisecond
	assert.Equal(t, 0.05, limitOf(withHeader), "the message's header wins")
	assert.Equal(t, 0.15, limitOf(req("t.forever")), "then the task's annotation")
	assert.Equal(t, 0.25, limitOf(req("t.other")), "then the config default")
	require.NoError(t, h.shutdown())
}

func TestSoftLimitPrecedence(t *testing.T) {
	h := start(t, withTask("t.forever", waitOnContext), withTask("t.other", waitOnContext),
		withConfig(func(c *worker.Config) {
			c.TimeLimit = 2 * time.Second // hard limits far away: only the soft one fires
			c.SoftTimeLimit = 500 * time.Millisecond
			c.TaskLimits = map[string]worker.Limits{"t.forever": {Soft: 150 * time.Millisecond}}
		}))
	elapsed := func(r *protocol.Request) time.Duration {
		t.Helper()
		begin := time.Now()
		h.send(r)
		e := exc(t, h.record())
		d := time.Since(begin)
		h.settlement()
		require.Equal(t, "SoftTimeLimitExceeded", e.Type)
		return d
	}
	withHeader := req("t.forever")
	withHeader.SoftTimeLimit = 30 * time.Millisecond
	d := elapsed(withHeader)
	assert.Less(t, d, 140*time.Millisecond, "header soft limit 30ms, took %v", d)
	d = elapsed(req("t.forever"))
	assert.True(t, d >= 150*time.Millisecond && d < 450*time.Millisecond, "annotation soft limit 150ms, took %v", d)
	d = elapsed(req("t.other"))
	assert.True(t, d >= 500*time.Millisecond, "config soft limit 500ms, took %v", d)
	require.NoError(t, h.shutdown())
}

func TestPanicIsFailureAndWorkerKeepsGoing(t *testing.T) {
	h := start(t, withTask("t.panic", func(context.Context, *tasks.Call) (any, error) {
		panic("kaboom")
	}), withConfig(func(c *worker.Config) { c.Concurrency = 1 }))
	tag := h.send(req("t.panic"))
	rec := h.record()
	assert.Equal(t, results.StatusFailure, rec.Status)
	e := exc(t, rec)
	assert.Equal(t, "RuntimeError", e.Type)
	assert.Equal(t, "builtins", e.Module)
	assert.Contains(t, fmt.Sprint(e.Message), "kaboom")
	assert.Contains(t, rec.Traceback, "kaboom")
	acked(t, h.settlement(), tag)

	for range 3 {
		tag := h.send(req(tasks.AddName, int64(1), int64(1)))
		assert.Equal(t, results.StatusSuccess, h.record().Status)
		acked(t, h.settlement(), tag)
	}
	require.NoError(t, h.shutdown())
}

func TestWriteErrorLeavesMessageUnsettled(t *testing.T) {
	h := start(t, writeError(errors.New("mongo down")))
	h.send(req(tasks.AddName, int64(1), int64(1)))
	h.record()
	h.send(req(tasks.FailName, "x"))
	h.record()
	h.send(req("no.such.task"))
	h.record()
	h.noSettlement(100 * time.Millisecond)
	require.NoError(t, h.shutdown())
	h.noSettlement(10 * time.Millisecond)
}

func TestWarmShutdownWaitsForRunningTaskAndFlushes(t *testing.T) {
	started, release := make(chan string, 1), make(chan struct{})
	h := start(t, manualWrites, withTask("t.block", blocker(started, release)))
	r := req("t.block")
	tag := h.send(r)
	<-started

	h.cancel()
	select {
	case err := <-h.runErr:
		t.Fatalf("Run returned (%v) while a task was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	assert.True(t, h.broker.stopped.Load(), "consuming stops at once")
	assert.False(t, h.broker.closed.Load(), "the connection stays open for the running task's ack")

	close(release)
	h.record()
	select {
	case err := <-h.runErr:
		t.Fatalf("Run returned (%v) before the result was durable", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.Equal(t, 1, h.writer.answer(nil))
	var err error
	select {
	case err = <-h.runErr:
	case <-time.After(wait):
		t.Fatal("Run did not return after the task finished")
	}
	h.finished = true
	h.kill()
	require.NoError(t, err)
	rec := h.writer.records()
	require.Len(t, rec, 1)
	assert.Equal(t, results.StatusSuccess, rec[0].Status)
	require.Equal(t, []settlement{{tag: tag, ack: true}}, h.settler.of(tag))
	ack, stopped := h.j.index(fmt.Sprintf("ack %d", tag)), h.j.index("results stop")
	assert.True(t, ack >= 0 && ack < stopped, "acked before Run returns: %q", h.j.all())
}

func TestKillCutsShutdownShort(t *testing.T) {
	started := make(chan string, 1)
	h := start(t, withTask("t.block", blocker(started, nil)),
		withConfig(func(c *worker.Config) { c.DrainTimeout = time.Minute }))
	tag := h.send(req("t.block"))
	<-started

	h.cancel()
	time.Sleep(50 * time.Millisecond)
	begin := time.Now()
	h.kill()
	var err error
	select {
	case err = <-h.runErr:
	case <-time.After(wait):
		t.Fatal("Run did not return after kill")
	}
	h.finished = true
	assert.Less(t, time.Since(begin), 4*time.Second)
	require.Error(t, err, "a drain cut short is an error")
	assert.True(t, h.broker.closed.Load())
	// The task was abandoned: its message must go back to the queue, so it is neither
	// acked nor stored as a FAILURE of its own cancellation.
	assert.Empty(t, h.settler.of(tag), "journal: %q", h.j.all())
	assert.Empty(t, h.writer.records(), "journal: %q", h.j.all())
}

func TestDrainTimeoutCutsShutdownShort(t *testing.T) {
	started := make(chan string, 1)
	h := start(t, withTask("t.block", blocker(started, nil)),
		withConfig(func(c *worker.Config) { c.DrainTimeout = 100 * time.Millisecond }))
	h.send(req("t.block"))
	<-started
	err := h.shutdown()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not finish")
}

func TestStopBeforeStartAndTwice(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := &journal{}
	b := newFakeBroker(j)
	w := &fakeWriter{j: j, auto: true, written: make(chan *results.Record, 1)}
	wk, err := worker.New(worker.Config{Concurrency: 1}, tasks.NewRegistry(), b, w, nil)
	require.NoError(t, err)
	require.NoError(t, wk.Stop(context.Background()))
	require.NoError(t, wk.Stop(context.Background()))
	assert.True(t, b.stopped.Load(), "consuming stopped")
	assert.False(t, b.closed.Load(), "the broker is its owner's to close")
}

func TestNewRejectsZeroConcurrency(t *testing.T) {
	_, err := worker.New(worker.Config{}, tasks.NewRegistry(), newFakeBroker(&journal{}), nil, nil)
	require.Error(t, err)
}

func TestBackPressureBlocksHandlerWhenPoolFull(t *testing.T) {
	started, release := make(chan string, 4), make(chan struct{})
	h := start(t, withTask("t.block", blocker(started, release)),
		withConfig(func(c *worker.Config) { c.Concurrency = 2 }))
	h.send(req("t.block"))
	h.send(req("t.block"))
	<-started
	<-started
	returned := make(chan struct{})
	go func() {
		h.send(req("t.block"))
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("the handler accepted a third task with two slots busy")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-returned
	for range 3 {
		h.settlement()
	}
	require.NoError(t, h.shutdown())
}

// TestSlowAckDoesNotHoldTheResultWriter: the writer reports a durable document and goes
// on; the ack runs on the worker's completion goroutine, so a slow AMQP channel does not
// stall the writer's loop.
func TestSlowAckDoesNotHoldTheResultWriter(t *testing.T) {
	h := start(t, manualWrites)
	h.settler.gate = make(chan struct{})
	tag := h.send(req(tasks.AddName, int64(2), int64(3)))
	h.record()
	answered := make(chan int)
	go func() { answered <- h.writer.answer(nil) }()
	select {
	case n := <-answered:
		assert.Equal(t, 1, n)
	case <-time.After(wait):
		t.Fatal("the writer's report waited for the ack")
	}
	close(h.settler.gate)
	acked(t, h.settlement(), tag)
	h.settled()
}

// TestRunReturnsWhenTheWorkerAsksToStop: Run (for a worker whose broker the caller runs)
// stops when the worker asks to (here --max-tasks), after the task has been acked.
func TestRunReturnsWhenTheWorkerAsksToStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := &journal{}
	b := newFakeBroker(j)
	settler := &fakeSettler{j: j, byTag: map[uint64][]settlement{}, settled: make(chan settlement, 1)}
	reg := tasks.NewRegistry()
	require.NoError(t, tasks.RegisterBuiltins(reg))
	w, err := worker.New(worker.Config{Concurrency: 1, MaxTasks: 1}, reg, b, nil, nil)
	require.NoError(t, err)
	require.NoError(t, b.Start(w.Handle))
	ran := make(chan error, 1)
	go func() { ran <- w.Run(context.Background(), context.Background()) }()
	m, err := protocol.EncodeV2(req(tasks.NoopName))
	require.NoError(t, err)
	b.handle(b.consume, prefetch.NewDelivery(prefetch.Delivery{Queue: "celery", ContentType: m.ContentType,
		ContentEncoding: m.ContentEncoding, Headers: amqp.Table(m.Headers), Body: m.Body, Tag: 1}, settler))
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(wait):
		t.Fatal("Run did not return after --max-tasks")
	}
	assert.Equal(t, []settlement{{tag: 1, ack: true}}, settler.of(1))
	assert.Zero(t, w.Gauges().InFlight)
}
