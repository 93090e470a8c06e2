package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const node = "celery@unit"

func newTestMailbox(t *testing.T) (*Mailbox, *fakeWorker, *fakeEvents) {
	t.Helper()
	w := newFakeWorker(node)
	ev := &fakeEvents{}
	m, err := NewMailbox(func(ctx context.Context) (*amqp.Connection, error) { return nil, fmt.Errorf("no broker") },
		MailboxConfig{NodeName: node, Worker: w, Events: ev, Revoked: NewRevoked(100, time.Hour)})
	require.NoError(t, err)
	return m, w, ev
}

type fakeEvents struct{ enabled, heartbeats int }

func (f *fakeEvents) EnableTaskEvents() bool  { f.enabled++; return f.enabled == 1 }
func (f *fakeEvents) DisableTaskEvents() bool { return false }
func (f *fakeEvents) SendHeartbeat()          { f.heartbeats++ }

// call sends a request through handleMessage and returns the decoded reply for node (or
// replied=false).
func call(t *testing.T, m *Mailbox, body map[string]any, headers amqp.Table) (reply any, replied bool) {
	t.Helper()
	if _, ok := body["reply_to"]; !ok {
		body["reply_to"] = map[string]any{"exchange": "reply.celery.pidbox", "routing_key": "oid"}
		body["ticket"] = "tick"
	}
	b, err := json.Marshal(body)
	require.NoError(t, err)
	out, to, ticket, ok := m.handleMessage("application/json", b, headers)
	if !ok || to == nil {
		return nil, false
	}
	assert.Equal(t, "tick", ticket)
	enc, err := protocol.AppendJSON(nil, out)
	require.NoError(t, err)
	var got map[string]any
	// Python's json reads Infinity (conf's result_backend_max_retries); Go's does not.
	enc = bytes.ReplaceAll(enc, []byte(": Infinity"), []byte(`: "Infinity"`))
	require.NoError(t, json.Unmarshal(enc, &got))
	require.Contains(t, got, node)
	return got[node], true
}

func method(name string, a map[string]any) map[string]any {
	return map[string]any{"method": name, "arguments": a, "destination": nil, "pattern": nil, "matcher": nil}
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		dest             any
		pattern, matcher string
		want             bool
	}{
		{nil, "", "", true},
		{[]any{}, "", "", true},
		{[]any{node}, "", "", true},
		{[]any{"celery@other"}, "", "", false},
		{[]any{"celery@other"}, "celery@*", "glob", false}, // destination wins
		{nil, "celery@*", "glob", true},
		{nil, "celery@u?it", "glob", true},
		{nil, "celery@[!u]*", "glob", false},
		{nil, "w*", "glob", false},
		{nil, "celery@u", "pcre", true}, // re.match: anchored at the start only
		{nil, "unit", "pcre", false},
		{nil, ".*unit$", "pcre", true},
		{nil, "celery@*", "", true}, // pattern without matcher: everybody
		{nil, "x", "nosuch", false},
		{"celery@unit,celery@b", "", "", true}, // str destination: substring test
	} {
		assert.Equal(t, c.want, matches(node, c.dest, c.pattern, c.matcher), "%v %q %q", c.dest, c.pattern, c.matcher)
	}
}

func TestDispatchRules(t *testing.T) {
	m, _, _ := newTestMailbox(t)
	r, ok := call(t, m, method("ping", nil), nil)
	require.True(t, ok)
	assert.Equal(t, map[string]any{"ok": "pong"}, r)

	body := method("ping", nil)
	body["destination"] = []any{"celery@other"}
	_, ok = call(t, m, body, nil)
	assert.False(t, ok, "not for us")

	// Lamport clock: adjusted from the header, forwarded on receipt.
	before := m.clock.Value()
	_, _ = call(t, m, method("ping", nil), amqp.Table{"clock": int64(1000)})
	assert.Greater(t, m.clock.Value(), max(before, 1000))

	// expires: in the past beyond the grace → dropped; 0 → kept; future → kept.
	m.cfg.ExpiresGrace = time.Millisecond
	past := float64(time.Now().Add(-time.Minute).UnixNano()) / 1e9
	_, ok = call(t, m, method("ping", nil), amqp.Table{"expires": past})
	assert.False(t, ok, "expired request answered")
	_, ok = call(t, m, method("ping", nil), amqp.Table{"expires": 0})
	assert.True(t, ok)
	_, ok = call(t, m, method("ping", nil), amqp.Table{"expires": float64(time.Now().Add(time.Second).UnixNano()) / 1e9})
	assert.True(t, ok)

	// No reply_to: the command runs, nothing is sent.
	b, _ := json.Marshal(method("revoke", map[string]any{"task_id": "cast-1"}))
	_, to, _, ok := m.handleMessage("application/json", b, nil)
	assert.True(t, ok)
	assert.Nil(t, to)
	assert.True(t, m.revoked.Contains("cast-1"))

	// Non-JSON requests are ignored.
	_, _, _, ok = m.handleMessage("application/x-msgpack", []byte{0x80}, nil)
	assert.False(t, ok)
}

func TestReplies(t *testing.T) {
	m, w, ev := newTestMailbox(t)
	get := func(name string, a map[string]any) any {
		r, ok := call(t, m, method(name, a), nil)
		require.True(t, ok, name)
		return r
	}
	assert.Equal(t, map[string]any{"error": "KeyError('xyz')"}, get("xyz", nil))

	assert.Equal(t, []any{"ccworker.add [rate_limit=10/s]", "ccworker.noop", "ccworker.sleep"}, get("registered", nil))
	// As Celery: an attribute that is None is left out, so a task without a docstring is
	// its bare name; 'name' is the task's name.
	assert.Equal(t, []any{"ccworker.add", "ccworker.noop",
		"ccworker.sleep [__doc__=Sleep for n seconds.]"}, get("registered", map[string]any{"taskinfoitems": []any{"__doc__"}}))
	assert.Equal(t, []any{"ccworker.add [name=ccworker.add]", "ccworker.noop [name=ccworker.noop]",
		"ccworker.sleep [name=ccworker.sleep __doc__=Sleep for n seconds.]"},
		get("registered", map[string]any{"taskinfoitems": []any{"name", "__doc__", "name"}}))
	assert.Contains(t, get("registered", map[string]any{"builtins": true}), "celery.chord_unlock")

	act := get("active", nil).([]any)
	require.Len(t, act, 1)
	a0 := act[0].(map[string]any)
	assert.Equal(t, "act-1", a0["id"])
	assert.Equal(t, []any{5.0}, a0["args"])
	assert.Equal(t, 1714564800.5, a0["time_start"])
	assert.Equal(t, map[string]any{"exchange": "", "routing_key": "celery", "priority": 0.0, "redelivered": false}, a0["delivery_info"])
	safe := get("active", map[string]any{"safe": true}).([]any)[0].(map[string]any)
	assert.Equal(t, "(5,)", safe["args"])

	res := get("reserved", nil).([]any)[0].(map[string]any)
	assert.Nil(t, res["time_start"])
	assert.Nil(t, res["worker_pid"])
	assert.Nil(t, res["delivery_info"].(map[string]any)["priority"])

	sch := get("scheduled", nil).([]any)[0].(map[string]any)
	assert.Equal(t, "2030-01-02T03:04:05+00:00", sch["eta"])
	assert.Equal(t, "eta-1", sch["request"].(map[string]any)["id"])

	q := get("active_queues", nil).([]any)[0].(map[string]any)
	assert.Equal(t, "celery", q["exchange"].(map[string]any)["name"])
	assert.Equal(t, "direct", q["exchange"].(map[string]any)["type"])
	w.mu.Lock()
	w.queues = nil
	w.mu.Unlock()
	assert.Len(t, get("active_queues", nil), 1, "never empty")

	qt := get("query_task", map[string]any{"ids": []any{"act-1", "eta-1", "nope"}}).(map[string]any)
	assert.Equal(t, "active", qt["act-1"].([]any)[0])
	assert.Equal(t, "reserved", qt["eta-1"].([]any)[0])
	assert.NotContains(t, qt, "nope")

	st := get("stats", nil).(map[string]any)
	assert.Equal(t, float64(pid), st["pid"])
	assert.IsType(t, "", st["clock"])
	assert.Equal(t, 4.0, st["pool"].(map[string]any)["max-concurrency"])
	assert.Equal(t, []any{"amqp://u:**@h2//"}, st["broker"].(map[string]any)["alternates"])
	assert.Contains(t, st["rusage"], "maxrss")

	conf := get("conf", nil).(map[string]any)
	assert.Equal(t, "amqp://guest:**@127.0.0.1:5672//", conf["broker_url"])
	assert.NotContains(t, conf, "__secret")
	assert.Equal(t, "********", conf["mongodb_backend_settings"].(map[string]any)["password"])
	assert.NotContains(t, conf, "worker_hijack_root_logger")
	// with_defaults: Celery's whole settings mapping, the worker's values over it.
	all := get("conf", map[string]any{"with_defaults": true}).(map[string]any)
	assert.Equal(t, true, all["worker_hijack_root_logger"])
	assert.Equal(t, "amqp://guest:**@127.0.0.1:5672//", all["broker_url"])
	assert.Greater(t, len(all), 150)
	assert.Equal(t, "Infinity", all["result_backend_max_retries"]) // float('inf') on the wire

	assert.Equal(t, map[string]any{"ok": "tasks a, b flagged as revoked"}, get("revoke", map[string]any{"task_id": []any{"a", "b", "a"}}))
	assert.Equal(t, map[string]any{"ok": "tasks c flagged as revoked"}, get("revoke", map[string]any{"task_id": "c"}))
	assert.Equal(t, map[string]any{"ok": "terminate: tasks unknown"}, get("revoke", map[string]any{"task_id": "d", "terminate": true}))
	assert.Equal(t, map[string]any{"ok": "terminate: act-1"}, get("terminate", map[string]any{"task_id": "act-1", "signal": "KILL"}))
	_, term, _, _, _ := w.snapshot()
	assert.Equal(t, []string{"act-1:SIGKILL"}, term)
	assert.Equal(t, []any{"a", "b", "c", "d", "act-1"}, get("revoked", nil))

	assert.Equal(t, map[string]any{"ok": "new rate limit set successfully"}, get("rate_limit", map[string]any{"task_name": "ccworker.add", "rate_limit": "5/m"}))
	assert.Equal(t, map[string]any{"ok": "rate limit disabled successfully"}, get("rate_limit", map[string]any{"task_name": "ccworker.add", "rate_limit": ""}))
	assert.Equal(t, map[string]any{"error": "unknown task"}, get("rate_limit", map[string]any{"task_name": "x", "rate_limit": "1/s"}))
	assert.Contains(t, get("rate_limit", map[string]any{"task_name": "ccworker.add", "rate_limit": "fast"}).(map[string]any)["error"], "Invalid rate limit string")
	assert.Equal(t, map[string]any{"ok": "time limits set successfully"}, get("time_limit", map[string]any{"task_name": "ccworker.add", "soft": 10, "hard": 20}))
	assert.Equal(t, [2]float64{10, 20}, w.timeLimits["ccworker.add"])
	assert.Equal(t, map[string]any{"error": "unknown task"}, get("time_limit", map[string]any{"task_name": "x", "soft": 1}))

	assert.Equal(t, map[string]any{"ok": "task events enabled"}, get("enable_events", nil))
	assert.Equal(t, map[string]any{"ok": "task events already enabled"}, get("enable_events", nil))
	assert.Equal(t, map[string]any{"ok": "task events already disabled"}, get("disable_events", nil))
	assert.Nil(t, get("heartbeat", nil))
	assert.Equal(t, 1, ev.heartbeats)

	assert.Equal(t, map[string]any{"ok": "add consumer q1"}, get("add_consumer", map[string]any{"queue": "q1", "exchange": "ex"}))
	assert.Equal(t, map[string]any{"ok": "no longer consuming from q1"}, get("cancel_consumer", map[string]any{"queue": "q1"}))
	_, _, added, cancelled, _ := w.snapshot()
	assert.Equal(t, "ex", added[0].Exchange)
	assert.Equal(t, []string{"q1"}, cancelled)

	assert.Equal(t, map[string]any{"error": "ValueError('Pool restarts not enabled')"}, get("pool_restart", nil))
	assert.Equal(t, map[string]any{"error": "ValueError('Autoscale not enabled')"}, get("autoscale", map[string]any{"max": 3}))
	assert.Contains(t, get("pool_grow", nil).(map[string]any)["error"], "not supported")
	assert.Equal(t, map[string]any{"error": "ImportError('Requires the objgraph library')"}, get("objgraph", nil))
	assert.Contains(t, get("clock", nil), "clock")
	assert.Contains(t, get("report", nil).(map[string]any)["ok"], "ccworker")

	// hello: ignore our own, answer others with revoked + clock, merge theirs.
	assert.Nil(t, get("hello", map[string]any{"from_node": node}))
	h := get("hello", map[string]any{"from_node": "celery@peer", "revoked": map[string]any{"peer-1": []any{monotonicNow() - 5, "peer-1"}}}).(map[string]any)
	assert.Contains(t, h["revoked"], "a")
	assert.Contains(t, h["revoked"], "peer-1")
	assert.IsType(t, 0.0, h["clock"])
	assert.True(t, m.revoked.Contains("peer-1"))
	// A peer's id older than the expiry (3 h by default) is dropped, as LimitedSet.purge does.
	h = get("hello", map[string]any{"from_node": "celery@peer", "revoked": map[string]any{"peer-old": []any{monotonicNow() - 4*3600, "peer-old"}}}).(map[string]any)
	assert.NotContains(t, h["revoked"], "peer-old")
	assert.False(t, m.revoked.Contains("peer-old"))
	assert.True(t, m.revoked.Contains("peer-1"))

	// shutdown: no reply (WorkerShutdown is a SystemExit), the worker is told.
	_, ok := call(t, m, method("shutdown", nil), nil)
	assert.False(t, ok)
	_, _, _, _, sd := w.snapshot()
	assert.Equal(t, []string{"Got shutdown from remote"}, sd)
}

func TestRevokedLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRevoked(3, 10*time.Second)
	r.now = func() time.Time { return now }
	r.Add("a")
	now = now.Add(time.Second)
	r.Add("b", "c") // full: purge runs, nothing expired yet
	assert.Equal(t, []string{"a", "b", "c"}, r.List())
	now = now.Add(time.Second)
	r.Add("d") // over max: oldest dropped
	assert.Equal(t, []string{"b", "c", "d"}, r.List())
	assert.False(t, r.Contains("a"))
	now = now.Add(time.Second)
	r.Add("b") // re-add refreshes
	now = now.Add(time.Second)
	r.Add("e")
	assert.Equal(t, []string{"d", "b", "e"}, r.List())

	// Expiry only applies when the set fills up (LimitedSet purges on add at maxlen).
	r2 := NewRevoked(3, 10*time.Second)
	r2.now = func() time.Time { return now }
	r2.Add("x")
	now = now.Add(time.Minute)
	assert.True(t, r2.Contains("x"), "not full: kept")
	r2.Add("y", "z") // reaches max → purge drops the expired x
	assert.Equal(t, []string{"y", "z"}, r2.List())

	t.Setenv("CELERY_WORKER_REVOKES_MAX", "7")
	t.Setenv("CELERY_WORKER_REVOKE_EXPIRES", "1.5")
	r3 := NewRevokedFromEnv()
	assert.Equal(t, 7, r3.max)
	assert.Equal(t, 1500*time.Millisecond, r3.expires)

	big := NewRevoked(DefaultRevokesMax, DefaultRevokeExpires)
	for i := range 60000 {
		big.Add(fmt.Sprint(i))
	}
	assert.Equal(t, DefaultRevokesMax, big.Len())
	assert.True(t, big.Contains("59999"))
	assert.False(t, big.Contains("9999"))
}

func TestUTCOffset(t *testing.T) {
	at := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		zone string
		want int
	}{
		{"UTC", 0}, {"Europe/Berlin", -2}, {"America/New_York", 4}, {"Asia/Kolkata", -6},
		{"America/St_Johns", 2}, // UTC-2:30 in summer: 9000 // 3600 = 2
		{"Asia/Tokyo", -9},
	} {
		loc, err := time.LoadLocation(c.zone)
		if err != nil {
			t.Skipf("no tzdata: %v", err)
		}
		assert.Equal(t, c.want, UTCOffset(at.In(loc)), c.zone)
	}
	assert.Equal(t, 5, UTCOffset(time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("EST", -5*3600))))
	assert.Equal(t, -1, UTCOffset(time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 1800))), "UTC+0:30: -1800 // 3600 = -1")
}

func TestEventBuffer(t *testing.T) {
	e, err := NewEvents(func(context.Context) (*amqp.Connection, error) { return nil, fmt.Errorf("none") },
		EventsConfig{NodeName: node, MaxBuffered: 30})
	require.NoError(t, err)
	e.TaskStarted("off") // disabled: dropped silently, not counted
	assert.Empty(t, e.buf)
	assert.True(t, e.EnableTaskEvents())
	assert.False(t, e.EnableTaskEvents())
	for i := range 23 {
		e.TaskStarted(fmt.Sprint(i))
	}
	assert.Empty(t, e.kick, "below the buffer limit")
	e.TaskSucceeded("23", "5", 10*time.Millisecond)
	assert.Len(t, e.kick, 1, "24 events: flush requested")
	for i := range 10 {
		e.TaskFailed(fmt.Sprint(100+i), "ValueError('bad')", "tb")
	}
	assert.Len(t, e.buf, 30)
	assert.Equal(t, uint64(4), e.Dropped())
	assert.Equal(t, "4", e.buf[0]["uuid"], "oldest dropped")
	ev := e.buf[len(e.buf)-1]
	assert.Equal(t, "task-failed", ev["type"])
	assert.Equal(t, node, ev["hostname"])
	assert.Equal(t, pid, ev["pid"])
	assert.Equal(t, UTCOffset(time.Now()), ev["utcoffset"])
	assert.Equal(t, "task.failed", routingKey("task-failed"))
	assert.Equal(t, "worker.heartbeat", routingKey("worker-heartbeat"))
}

func TestPyHelpers(t *testing.T) {
	assert.Equal(t, `'a'`, pyStr("a"))
	assert.Equal(t, `"it's"`, pyStr("it's"))
	assert.Equal(t, `'a\'"b'`, pyStr(`a'"b`))
	assert.Equal(t, `'\n\x00é'`, pyStr("\n\x00é"))
	assert.Equal(t, "2024-01-02T03:04:05.123456+01:00", pyISO(time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.FixedZone("", 3600))))
	assert.Equal(t, "amqp://g:**@h:1/v", maskURL("amqp://g:p@h:1/v"))
	assert.Equal(t, "amqp://h//", maskURL("amqp://h//"))
}

// TestLifecycleShape: the mailbox and the events dispatcher stop before Start, twice,
// and after a Start whose context has since ended (it only bounds starting).
func TestLifecycleShape(t *testing.T) {
	m, _, _ := newTestMailbox(t)
	e, err := NewEvents(func(context.Context) (*amqp.Connection, error) { return nil, fmt.Errorf("none") },
		EventsConfig{NodeName: node, Backoff: backoff.Policy{Min: time.Millisecond, Max: time.Millisecond}})
	require.NoError(t, err)
	ctx := context.Background()
	for _, s := range []interface {
		Start(context.Context) error
		Stop(context.Context) error
	}{m, e} {
		require.NoError(t, s.Stop(ctx), "before Start")
		startCtx, cancel := context.WithCancel(ctx)
		require.NoError(t, s.Start(startCtx))
		require.NoError(t, s.Start(startCtx), "a second Start does nothing")
		cancel() // the part runs on until Stop
		stopCtx, cancelStop := context.WithTimeout(ctx, 5*time.Second)
		require.NoError(t, s.Stop(stopCtx))
		require.NoError(t, s.Stop(stopCtx), "twice")
		cancelStop()
		done, cancelDone := context.WithCancel(ctx)
		cancelDone()
		require.Error(t, s.Start(done), "a Start whose context has ended fails")
	}
}

// loadAvg reads sysinfo(2): the same figures as /proc/loadavg (read before and after, as
// the kernel updates them every 5 s).
func TestLoadAvgMatchesProcLoadavg(t *testing.T) {
	read := func() []string {
		b, err := os.ReadFile("/proc/loadavg") // Linux, as sysinfo(2) is
		require.NoError(t, err)
		return strings.Fields(string(b))[:3]
	}
	before := read()
	got := loadAvg()
	after := read()
	// /proc/loadavg rounds to 0.01 its own way (gVisor's too): within one step of either reading.
	near := func(v float64, s string) bool {
		f, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		return math.Abs(v-f) <= 0.0101
	}
	for i, v := range got {
		if !near(v, before[i]) && !near(v, after[i]) {
			t.Errorf("load %d: %.4f, /proc/loadavg %s then %s", i, v, before[i], after[i])
		}
	}
}
