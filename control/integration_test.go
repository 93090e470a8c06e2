package control

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/internal/testenv"
)

const python = "/usr/bin/python3"

func dialer(url string) Dialer {
	return func(context.Context) (*amqp.Connection, error) { return amqp.Dial(url) }
}

func startMailbox(t *testing.T, url, nodeName string, w Worker, ev EventControl) *Mailbox {
	t.Helper()
	m, err := NewMailbox(dialer(url), MailboxConfig{NodeName: nodeName, Worker: w, Events: ev,
		Logger: zaptest.NewLogger(t), Version: "test"})
	require.NoError(t, err)
	require.NoError(t, m.Start(context.Background()))
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("mailbox not consuming after 10 s")
	}
	return m
}

func TestIntegrationInspectWithCelery(t *testing.T) {
	url := testenv.AMQPURL(t)
	nodeName := testenv.Name(t, "w") + "@ccworker-test"
	w := newFakeWorker(nodeName)
	ev := &fakeEvents{}
	m := startMailbox(t, url, nodeName, w, ev)

	ops := []string{"ping", "stats", "active", "reserved", "scheduled", "registered", "registered_doc",
		"active_queues", "query_task:act-1", "conf", "clock", "report", "revoke:r-1", "revoke_cast:r-2",
		"terminate:act-1", "revoked", "add_consumer:q-new", "cancel_consumer:q-new", "enable_events",
		"disable_events", "unknown", "pattern_ping:" + nodeName[:6] + "*", "time_limit:ccworker.add",
		"rate_limit:ccworker.add:5/s", "pool_grow", "hello", "shutdown"}
	start := time.Now()
	cmd := exec.Command(python, append([]string{"testdata/pidbox_client.py", url, nodeName}, ops...)...)
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	t.Logf("%d Celery calls in %v", len(ops), time.Since(start))
	var r map[string]any
	require.NoError(t, json.Unmarshal(out, &r), "%s", out)
	mine := func(op string) any {
		v, ok := r[op].(map[string]any)
		require.True(t, ok, "%s: %v", op, r[op])
		require.Contains(t, v, nodeName, op)
		return v[nodeName]
	}
	// broadcast replies come as a list of {node: reply}
	listReply := func(op string) any {
		l, ok := r[op].([]any)
		require.True(t, ok, "%s: %v", op, r[op])
		require.Len(t, l, 1, op)
		return l[0].(map[string]any)[nodeName]
	}
	assert.Equal(t, map[string]any{"ok": "pong"}, mine("ping"))
	st := mine("stats").(map[string]any)
	assert.Equal(t, 16.0, st["prefetch_count"])
	assert.Contains(t, st, "rusage")
	assert.Equal(t, "act-1", mine("active").([]any)[0].(map[string]any)["id"])
	assert.Equal(t, "res-1", mine("reserved").([]any)[0].(map[string]any)["id"])
	assert.Equal(t, "eta-1", mine("scheduled").([]any)[0].(map[string]any)["request"].(map[string]any)["id"])
	assert.Equal(t, []any{"ccworker.add [rate_limit=10/s]", "ccworker.noop", "ccworker.sleep"}, mine("registered"))
	assert.Equal(t, "ccworker.sleep [__doc__=Sleep for n seconds.]", mine("registered_doc").([]any)[2])
	aq := mine("active_queues").([]any)
	require.NotEmpty(t, aq)
	assert.Equal(t, "celery", aq[0].(map[string]any)["exchange"].(map[string]any)["name"])
	assert.Equal(t, "active", mine("query_task:act-1").(map[string]any)["act-1"].([]any)[0])
	assert.Equal(t, "amqp://guest:**@127.0.0.1:5672//", mine("conf").(map[string]any)["broker_url"])
	assert.Contains(t, mine("clock"), "clock")
	assert.Equal(t, map[string]any{"ok": "tasks r-1 flagged as revoked"}, listReply("revoke:r-1"))
	assert.Nil(t, r["revoke_cast:r-2"])
	assert.Equal(t, map[string]any{"ok": "terminate: act-1"}, listReply("terminate:act-1"))
	assert.Equal(t, []any{"r-1", "r-2", "act-1"}, mine("revoked"))
	assert.Equal(t, map[string]any{"ok": "add consumer q-new"}, listReply("add_consumer:q-new"))
	assert.Equal(t, map[string]any{"ok": "no longer consuming from q-new"}, listReply("cancel_consumer:q-new"))
	assert.Equal(t, map[string]any{"ok": "task events enabled"}, listReply("enable_events"))
	assert.Equal(t, map[string]any{"ok": "task events already disabled"}, listReply("disable_events"))
	assert.Equal(t, map[string]any{"error": "KeyError('xyz')"}, listReply("unknown"))
	assert.Equal(t, map[string]any{"ok": "pong"}, listReply("pattern_ping:"+nodeName[:6]+"*"))
	assert.Equal(t, map[string]any{"ok": "time limits set successfully"}, listReply("time_limit:ccworker.add"))
	assert.Equal(t, map[string]any{"ok": "new rate limit set successfully"}, listReply("rate_limit:ccworker.add:5/s"))
	assert.Contains(t, listReply("pool_grow").(map[string]any)["error"], "not supported")
	hello := listReply("hello").(map[string]any)
	assert.Contains(t, hello["revoked"], "r-1")
	assert.True(t, m.Revoked().Contains("peer-rev"))
	assert.Nil(t, r["shutdown"])

	require.Eventually(t, func() bool { _, _, _, _, sd := w.snapshot(); return len(sd) == 1 }, 5*time.Second, 10*time.Millisecond)
	revokes, term, added, cancelled, _ := w.snapshot()
	assert.Contains(t, revokes, []string{"r-2"})
	assert.Equal(t, []string{"act-1:SIGKILL"}, term)
	assert.Equal(t, "q-new", added[0].Queue)
	assert.Equal(t, []string{"q-new"}, cancelled)
	assert.Equal(t, [2]float64{10, 20}, w.timeLimits["ccworker.add"])

	// The celery CLI, without -A.
	cli := exec.Command(python, "-m", "celery", "-b", url, "inspect", "ping", "-d", nodeName)
	cout, err := cli.CombinedOutput()
	require.NoError(t, err, "%s", cout)
	assert.Contains(t, string(cout), nodeName+": OK")
	assert.Contains(t, string(cout), "pong")
}

func TestIntegrationEventsWithCelery(t *testing.T) {
	url := testenv.AMQPURL(t)
	nodeName := testenv.Name(t, "w") + "@ccworker-test"
	clock := &Clock{}
	ev, err := NewEvents(dialer(url), EventsConfig{NodeName: nodeName, Clock: clock, SWVersion: "test",
		Counters: func() (int, int) { return 1, 3 }, Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	startMailbox(t, url, nodeName, newFakeWorker(nodeName), ev)

	cmd := exec.Command(python, "testdata/events_client.py", url, nodeName, "t-ok=SUCCESS", "t-bad=FAILURE", "t-rev=REVOKED")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 10)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "events_client.py ended early: %s", stderr.String())
			require.True(t, strings.HasPrefix(l, prefix), "want %s, got %s", prefix, l)
			return strings.TrimPrefix(l, prefix)
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s line: %s", prefix, stderr.String())
		}
		return ""
	}
	next("READY")
	require.NoError(t, ev.Start(context.Background()))
	stopped := false
	defer func() {
		if !stopped {
			_ = ev.Stop(context.Background())
		}
	}()

	ev.TaskStarted("before-enable") // disabled: not sent
	require.True(t, ev.EnableTaskEvents())
	ev.TaskReceived("t-ok", "ccworker.add", "(1, 2)", "{}", "t-ok", "", 0, time.Time{}, time.Time{})
	ev.TaskStarted("t-ok")
	ev.TaskSucceeded("t-ok", "3", 5*time.Millisecond)
	ev.TaskReceived("t-bad", "ccworker.fail", "()", "{}", "", "", 0, time.Time{}, time.Time{})
	ev.TaskStarted("t-bad")
	ev.TaskFailed("t-bad", "ValueError('bad')", "Traceback ...")
	ev.TaskReceived("t-rev", "ccworker.sleep", "(9,)", "{}", "", "", 0, time.Now().Add(time.Hour), time.Time{})
	ev.TaskRevoked("t-rev", true, 15, false)

	var res struct {
		Alive        bool     `json:"alive"`
		AliveWorkers []string `json:"alive_workers"`
		Worker       map[string]any
		Tasks        map[string]map[string]any
		Seen         struct {
			Types      []string `json:"types"`
			UTCOffset  *int     `json:"utcoffset"`
			Heartbeats int      `json:"heartbeats"`
			Multi      int      `json:"multi"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(next("RESULT ")), &res))
	assert.True(t, res.Alive)
	assert.Contains(t, res.AliveWorkers, nodeName)
	assert.Equal(t, "ccworker", res.Worker["sw_ident"])
	assert.Equal(t, 2.0, res.Worker["freq"])
	assert.Equal(t, 3.0, res.Worker["processed"])
	assert.Equal(t, "SUCCESS", res.Tasks["t-ok"]["state"])
	assert.Equal(t, "ccworker.add", res.Tasks["t-ok"]["name"])
	assert.Equal(t, "3", res.Tasks["t-ok"]["result"])
	assert.Equal(t, nodeName, res.Tasks["t-ok"]["worker"])
	assert.Equal(t, "FAILURE", res.Tasks["t-bad"]["state"])
	assert.Equal(t, "ValueError('bad')", res.Tasks["t-bad"]["exception"])
	assert.Equal(t, "REVOKED", res.Tasks["t-rev"]["state"])
	require.NotNil(t, res.Seen.UTCOffset)
	assert.Equal(t, UTCOffset(time.Now()), *res.Seen.UTCOffset)
	assert.Contains(t, res.Seen.Types, "worker-online")
	assert.Positive(t, res.Seen.Multi, "task events arrive as task.multi lists")
	assert.Zero(t, ev.Dropped())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	require.NoError(t, ev.Stop(ctx))
	cancel()
	stopped = true
	var off struct {
		Alive bool `json:"alive"`
		Seen  struct {
			Types []string `json:"types"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(next("OFFLINE ")), &off))
	assert.False(t, off.Alive)
	assert.Contains(t, off.Seen.Types, "worker-offline")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The mailbox heals itself when its connection dies.
func TestIntegrationMailboxReconnects(t *testing.T) {
	url := testenv.AMQPURL(t)
	nodeName := testenv.Name(t, "w") + "@ccworker-test"
	var mu sync.Mutex
	var conns []*amqp.Connection
	m, err := NewMailbox(func(context.Context) (*amqp.Connection, error) {
		c, err := amqp.Dial(url)
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return c, err
	}, MailboxConfig{NodeName: nodeName, Worker: newFakeWorker(nodeName), Logger: zaptest.NewLogger(t),
		Backoff: backoff.Policy{Min: 50 * time.Millisecond}})
	require.NoError(t, err)
	require.NoError(t, m.Start(context.Background()))
	defer func() { _ = m.Stop(context.Background()) }()
	<-m.Ready()
	mu.Lock()
	_ = conns[0].Close()
	mu.Unlock()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(conns) == 2 }, 5*time.Second, 20*time.Millisecond)
	out, err := exec.Command(python, "testdata/pidbox_client.py", url, nodeName, "ping").Output()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), `"ok": "pong"`)
}
