package python

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
)

// interpreter is Debian's Python, the one with Celery.
const interpreter = "/usr/bin/python3"

func newPool(t *testing.T, mod func(*Config)) (*Pool, *observer.ObservedLogs) {
	t.Helper()
	if err := exec.Command(interpreter, "-c", "import celery").Run(); err != nil {
		t.Skipf("%s cannot import celery: %v", interpreter, err)
	}
	lib, err := filepath.Abs("testdata/pylib")
	require.NoError(t, err)
	core, logs := observer.New(zap.DebugLevel)
	cfg := Config{
		Interpreter: interpreter, Imports: []string{"mylib.tasks"}, Dir: t.TempDir(),
		Env: []string{"PYTHONPATH=" + lib}, Processes: 1, LogLevel: "INFO", Logger: zap.New(core),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := NewPool(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		assert.NoError(t, p.Close(ctx))
	})
	return p, logs
}

func call(id string, args ...any) *tasks.Call {
	return &tasks.Call{Args: args, Request: &protocol.Request{ID: id}, Hostname: "celery@test"}
}

func run(t *testing.T, p *Pool, name string, c *tasks.Call) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.Handler(name)(ctx, c)
}

func decode(t *testing.T, v any) any {
	t.Helper()
	raw, ok := v.(json.RawMessage)
	require.True(t, ok, "result %T %v", v, v)
	var out any
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

func TestTasksDiscovered(t *testing.T) {
	p, _ := newPool(t, nil)
	byName := map[string]TaskInfo{}
	for _, ti := range p.Tasks() {
		byName[ti.Name] = ti
		assert.False(t, strings.HasPrefix(ti.Name, "celery."), ti.Name)
	}
	require.Contains(t, byName, "mylib.tasks.add")
	assert.Equal(t, "Add two numbers.", byName["mylib.tasks.add"].Doc)
	assert.True(t, byName["mylib.tasks.quiet"].IgnoreResult)
	// The decorator's options, which the worker applies as Celery's pool does.
	lim := byName["mylib.tasks.limited"]
	require.NotNil(t, lim.SoftTimeLimit)
	require.NotNil(t, lim.TimeLimit)
	assert.Equal(t, 1.0, *lim.SoftTimeLimit)
	assert.Equal(t, 5.0, *lim.TimeLimit)
	assert.Equal(t, "10/m", lim.RateLimit)
	assert.Nil(t, byName["mylib.tasks.add"].TimeLimit)
	assert.Nil(t, byName["mylib.tasks.add"].RateLimit)
	// acks_late, track_started, reject_on_worker_lost: only what the task sets itself,
	// not the app's defaults that Celery's bind() copies into every task.
	early := byName["mylib.tasks.early"]
	require.NotNil(t, early.AcksLate)
	require.NotNil(t, early.TrackStarted)
	require.NotNil(t, early.RejectOnWorkerLost)
	assert.False(t, *early.AcksLate)
	assert.True(t, *early.TrackStarted)
	assert.True(t, *early.RejectOnWorkerLost)
	assert.Nil(t, byName["mylib.tasks.add"].AcksLate)
	assert.Nil(t, byName["mylib.tasks.add"].TrackStarted)
	assert.Nil(t, byName["mylib.tasks.add"].RejectOnWorkerLost)
	// Plain attributes as str() writes them, for `inspect registered`.
	attrs := lim.Attrs
	assert.Equal(t, "3", attrs["max_retries"])
	assert.Equal(t, "180", attrs["default_retry_delay"])
	assert.Equal(t, "10/m", attrs["rate_limit"])
	assert.Equal(t, "1", attrs["soft_time_limit"])
	assert.Equal(t, "json", attrs["serializer"])
	assert.NotContains(t, attrs, "request", "properties are left out")
	assert.NotContains(t, attrs, "priority", "None is left out")
	assert.NotContains(t, attrs, "run")
}

func TestAddAndRequest(t *testing.T) {
	p, _ := newPool(t, nil)
	v, err := run(t, p, "mylib.tasks.add", call("id-1", 2, 3))
	require.NoError(t, err)
	assert.Equal(t, 5.0, decode(t, v))

	c := &tasks.Call{Args: []any{1, "x"}, Kwargs: map[string]any{"k": "v"},
		Request: &protocol.Request{ID: "id-2", Retries: 4}, Hostname: "celery@test"}
	v, err = run(t, p, "mylib.tasks.request_info", c)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"id": "id-2", "retries": 4.0, "args": []any{1.0, "x"},
		"kwargs": map[string]any{"k": "v"}, "hostname": "celery@test"}, decode(t, v))

	v, err = run(t, p, "mylib.tasks.quiet", call("id-3"))
	require.NoError(t, err)
	assert.Nil(t, v)
}

func TestException(t *testing.T) {
	p, _ := newPool(t, nil)
	_, err := run(t, p, "mylib.tasks.fail", call("id-1"))
	var exc *tasks.Exception
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "builtins", exc.Module)
	assert.Equal(t, "ValueError", exc.Type)
	assert.Equal(t, []any{"bad"}, exc.Args)
	assert.True(t, strings.HasPrefix(exc.Traceback, "Traceback (most recent call last):"), exc.Traceback)
	assert.Contains(t, exc.Traceback, "raise ValueError('bad')")
	assert.True(t, strings.HasSuffix(exc.Traceback, "ValueError: bad\n"), exc.Traceback)
	// Like Celery's: the task's frames, none of the bridge's.
	assert.NotContains(t, exc.Traceback, `File "<string>"`)
	assert.Contains(t, exc.Traceback, "mylib/tasks.py")
}

// A returned AsyncResult is stored as Celery's backend stores it: as_tuple().
func TestReturnsAsyncResult(t *testing.T) {
	p, _ := newPool(t, nil)
	v, err := run(t, p, "mylib.tasks.returns_result", call("id-1", "other-id"))
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"other-id", nil}, nil}, decode(t, v))
}

// A task revoked or expired while it waited for a child is not run: Ready is checked
// when a child takes it, and the child stays usable.
func TestReadyCheckedWhenAChildTakesTheTask(t *testing.T) {
	p, _ := newPool(t, nil)
	revoked := errors.New("revoked meanwhile")
	c := call("id-1", 2, 3)
	c.Ready = func() error { return revoked }
	_, err := run(t, p, "mylib.tasks.add", c)
	require.ErrorIs(t, err, revoked)
	v, err := run(t, p, "mylib.tasks.add", call("id-2", 2, 3))
	require.NoError(t, err)
	assert.Equal(t, 5.0, decode(t, v))
}

func TestRetry(t *testing.T) {
	p, _ := newPool(t, nil)
	for retries := range 2 {
		c := call("id-r")
		c.Request.Retries = retries
		_, err := run(t, p, "mylib.tasks.retrying", c)
		var r *tasks.Retry
		require.ErrorAs(t, err, &r)
		assert.Equal(t, 100*time.Millisecond, r.Countdown)
		assert.Equal(t, -1, r.MaxRetries)
		assert.Nil(t, r.Exc)
	}
	c := call("id-r")
	c.Request.Retries = 2
	v, err := run(t, p, "mylib.tasks.retrying", c)
	require.NoError(t, err)
	assert.Equal(t, 2.0, decode(t, v))
}

func TestAutoretry(t *testing.T) {
	p, _ := newPool(t, nil)
	for retries := range 3 {
		c := call("id-a", "k")
		c.Request.Retries = retries
		_, err := run(t, p, "mylib.tasks.autoretrying", c)
		if retries < 2 {
			var r *tasks.Retry
			require.ErrorAs(t, err, &r, "retries %d", retries)
			require.NotNil(t, r.Exc)
			assert.Equal(t, "KeyError", r.Exc.Type)
			assert.Equal(t, []any{"k"}, r.Exc.Args)
			assert.Equal(t, 100*time.Millisecond, r.Countdown)
			continue
		}
		// max_retries=2 used up: the original exception.
		var exc *tasks.Exception
		require.ErrorAs(t, err, &exc)
		assert.Equal(t, "KeyError", exc.Type)
		assert.Equal(t, "builtins", exc.Module)
	}
}

func TestSoftTimeLimit(t *testing.T) {
	p, _ := newPool(t, nil)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 300*time.Millisecond, pool.ErrSoftTimeLimitExceeded)
	defer cancel()
	start := time.Now()
	_, err := p.Handler("mylib.tasks.slow")(ctx, call("id-s", 10))
	assert.Less(t, time.Since(start), 5*time.Second)
	var exc *tasks.Exception
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "billiard.exceptions", exc.Module)
	assert.Equal(t, "SoftTimeLimitExceeded", exc.Type)
	assert.Equal(t, []any{}, exc.Args)
	// The same child goes on.
	v, err := run(t, p, "mylib.tasks.add", call("id-2", 1, 1))
	require.NoError(t, err)
	assert.Equal(t, 2.0, decode(t, v))
}

func TestHardLimitAfterSoft(t *testing.T) {
	p, _ := newPool(t, func(c *Config) {
		c.HardLimit = func(string) time.Duration { return 500 * time.Millisecond }
	})
	before := pidOf(t, p)
	// The task ignores SIGUSR1 for 10 s: a soft limit it "catches".
	ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, pool.ErrSoftTimeLimitExceeded)
	defer cancel()
	c := call("id-h", "import signal, time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); time.sleep(10)")
	_, err := p.Handler("mylib.tasks.execute")(ctx, c)
	require.ErrorIs(t, err, pool.ErrTimeLimitExceeded)
	assert.NotEqual(t, before, pidOf(t, p))
}

func TestOutputForwarded(t *testing.T) {
	p, logs := newPool(t, nil)
	v, err := run(t, p, "mylib.tasks.chatty", call("id-c", "hello"))
	require.NoError(t, err)
	assert.Equal(t, "id-c", decode(t, v))
	require.Eventually(t, func() bool {
		return logs.FilterMessageSnippet("printed: hello").Len() == 1 &&
			logs.FilterMessageSnippet("mylib.tasks.chatty[id-c]: logged: hello").Len() == 1
	}, 5*time.Second, 10*time.Millisecond, "logs: %v", logs.All())
	for _, e := range logs.All() {
		assert.NotContains(t, e.Message, "\x1b", "no colour codes from Python's loggers")
	}
	e := logs.FilterMessageSnippet("printed: hello").All()[0]
	assert.Equal(t, zap.WarnLevel, e.Level)
	assert.Equal(t, int64(p.pidsForTest()[0]), e.ContextMap()["pid"])
}

func TestStripColor(t *testing.T) {
	assert.Equal(t, "[WARNING] logged", stripColor("\x1b[33m[WARNING] logged\x1b[0m"))
	assert.Equal(t, "plain", stripColor("plain"))
}

func TestWorkerLost(t *testing.T) {
	p, _ := newPool(t, nil)
	before := pidOf(t, p)
	_, err := run(t, p, "mylib.tasks.crash", call("id-x"))
	var lost *WorkerLostError
	require.ErrorAs(t, err, &lost)
	assert.Equal(t, "exitcode 1", lost.Status)
	assert.Regexp(t, `^Worker exited prematurely: exitcode 1 Job: \d+\.$`, lost.Error())
	var exc *tasks.Exception
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "billiard.exceptions", exc.Module)
	assert.Equal(t, "WorkerLostError", exc.Type)
	// A fresh child takes over.
	assert.NotEqual(t, before, pidOf(t, p))
}

func TestKilledChild(t *testing.T) {
	p, _ := newPool(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := run(t, p, "mylib.tasks.slow", call("id-k", 30))
		done <- err
	}()
	require.Eventually(t, func() bool { return len(p.busyForTest()) == 1 }, 5*time.Second, 10*time.Millisecond)
	pid := p.busyForTest()[0]
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, syscallKill(pid))
	err := <-done
	var lost *WorkerLostError
	require.ErrorAs(t, err, &lost)
	assert.Equal(t, "Worker exited prematurely: signal 9 (SIGKILL) Job: 1.", lost.Error())
}

func TestMaxTasksPerChild(t *testing.T) {
	p, _ := newPool(t, func(c *Config) { c.MaxTasksPerChild = 2 })
	a, b, c := pidOf(t, p), pidOf(t, p), pidOf(t, p)
	assert.Equal(t, a, b)
	assert.NotEqual(t, b, c)
}

func TestMaxMemoryPerChild(t *testing.T) {
	p, _ := newPool(t, func(c *Config) { c.MaxMemoryPerChild = 200 * 1024 })
	first := pidOf(t, p)
	v, err := run(t, p, "mylib.tasks.grow", call("id-g", 300*1024))
	require.NoError(t, err)
	assert.Equal(t, float64(first), decode(t, v))
	assert.NotEqual(t, first, pidOf(t, p))
}

func TestCancelKillsChild(t *testing.T) {
	p, _ := newPool(t, nil)
	before := pidOf(t, p)
	ctx, cancel := context.WithCancelCause(context.Background())
	errTerminated := errors.New("terminated")
	time.AfterFunc(200*time.Millisecond, func() { cancel(errTerminated) })
	start := time.Now()
	_, err := p.Handler("mylib.tasks.slow")(ctx, call("id-t", 30))
	require.ErrorIs(t, err, errTerminated)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.False(t, processExists(before), "child %d still alive", before)
	assert.NotEqual(t, before, pidOf(t, p))
}

func TestWaitForChildHonoursContext(t *testing.T) {
	p, _ := newPool(t, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = run(t, p, "mylib.tasks.slow", call("id-1", 1))
	}()
	require.Eventually(t, func() bool { return len(p.busyForTest()) == 1 }, 5*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Handler("mylib.tasks.add")(ctx, call("id-2", 1, 2))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	<-done
}

func TestImportError(t *testing.T) {
	if err := exec.Command(interpreter, "-c", "import celery").Run(); err != nil {
		t.Skipf("%s cannot import celery: %v", interpreter, err)
	}
	_, err := NewPool(context.Background(), Config{Interpreter: interpreter, Imports: []string{"no_such_module_xyz"},
		Dir: t.TempDir(), Processes: 2})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "No module named 'no_such_module_xyz'")

	_, err = NewPool(context.Background(), Config{Interpreter: filepath.Join(t.TempDir(), "nope"), Processes: 1})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestCeleryConfigApp(t *testing.T) {
	// A celeryconfig.py in the working directory is read, and its imports are imported.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "celeryconfig.py"),
		[]byte("imports = ('mylib.tasks',)\ntask_default_queue = 'elsewhere'\n"), 0o600))
	p, _ := newPool(t, func(c *Config) { c.Dir, c.Imports = dir, nil })
	var names []string
	for _, ti := range p.Tasks() {
		names = append(names, ti.Name)
	}
	assert.Contains(t, names, "mylib.tasks.add")
}

func pidOf(t *testing.T, p *Pool) int {
	t.Helper()
	v, err := run(t, p, "mylib.tasks.pid", call("id-pid"))
	require.NoError(t, err)
	return int(decode(t, v).(float64))
}

// Every header of the message reaches the task's request as under Celery: a protocol 2
// message's headers become attributes (cyberCommons' authenticated_user), the properties
// are request.properties; a protocol 1 message's headers are request.headers.
func TestRequestHeadersAndProperties(t *testing.T) {
	p, _ := newPool(t, nil)
	m, err := protocol.EncodeV2(&protocol.Request{ID: "id-h", Task: "mylib.tasks.request_headers",
		Headers: map[string]any{"authenticated_user": map[string]any{"username": "admin"}}})
	require.NoError(t, err)
	m.Properties = protocol.Properties{DeliveryMode: 2, AppID: "1234"}
	req, err := protocol.Decode(m, protocol.Accept{})
	require.NoError(t, err)
	c := &tasks.Call{Args: req.Args, Kwargs: req.Kwargs, Request: req, Hostname: "celery@test",
		Delivery: tasks.Delivery{Exchange: "", RoutingKey: "celery"}}
	v, err := run(t, p, "mylib.tasks.request_headers", c)
	require.NoError(t, err)
	got := decode(t, v).(map[string]any)
	assert.Equal(t, map[string]any{"username": "admin"}, got["authenticated_user"])
	assert.Equal(t, "py", got["lang"])
	assert.Nil(t, got["headers"])
	props := got["properties"].(map[string]any)
	assert.Equal(t, "1234", props["app_id"])
	assert.Equal(t, 2.0, props["delivery_mode"])
	assert.Equal(t, "application/json", props["content_type"])
	assert.Equal(t, "id-h", props["correlation_id"])
	assert.Equal(t, map[string]any{"username": "admin"}, props["application_headers"].(map[string]any)["authenticated_user"])
	assert.Equal(t, map[string]any{"exchange": "", "routing_key": "celery", "priority": 0.0, "redelivered": false},
		got["delivery_info"])

	v1, err := protocol.Decode(protocol.Message{ContentType: "application/json",
		Headers: map[string]any{"authenticated_user": "bob"},
		Body:    []byte(`{"task": "mylib.tasks.request_headers", "id": "id-1", "args": [], "kwargs": {}}`)},
		protocol.Accept{})
	require.NoError(t, err)
	v, err = run(t, p, "mylib.tasks.request_headers", &tasks.Call{Request: v1, Hostname: "celery@test"})
	require.NoError(t, err)
	got = decode(t, v).(map[string]any)
	assert.Nil(t, got["authenticated_user"])
	assert.Equal(t, map[string]any{"authenticated_user": "bob"}, got["headers"])
}

// raise self.replace(sig) publishes the replacement (here to an in-memory broker) and
// ends the task with Ignore, as in a Celery worker, not with the eager path's TypeError.
func TestReplace(t *testing.T) {
	p, _ := newPool(t, func(c *Config) { c.Env = append(c.Env, "CELERY_BROKER_URL=memory://") })
	c := call("id-r", 2)
	c.Request.Chain = []any{map[string]any{"task": "mylib.tasks.add", "args": []any{1}, "kwargs": map[string]any{},
		"options": map[string]any{}, "subtask_type": nil, "immutable": false}}
	_, err := run(t, p, "mylib.tasks.replaced", c)
	require.ErrorIs(t, err, tasks.ErrIgnore)
	v, err := run(t, p, "mylib.tasks.add", call("id-2", 2, 3))
	require.NoError(t, err)
	assert.Equal(t, 5.0, decode(t, v))
}

// The app's settings are not a task's own options (Celery's bind copies them into every
// task class), but its task_annotations are.
func TestOwnOptionsFromAnnotationsNotSettings(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "celeryconfig.py"), []byte(
		"imports = ('mylib.tasks',)\ntask_acks_late = True\ntask_track_started = True\n"+
			"task_annotations = {'mylib.tasks.add': {'acks_late': False}, 'mylib.tasks.early': {'track_started': False}}\n"), 0o600))
	p, _ := newPool(t, func(c *Config) { c.Dir, c.Imports = dir, nil })
	byName := map[string]TaskInfo{}
	for _, ti := range p.Tasks() {
		byName[ti.Name] = ti
	}
	add, early, other := byName["mylib.tasks.add"], byName["mylib.tasks.early"], byName["mylib.tasks.limited"]
	require.NotNil(t, add.AcksLate)
	assert.False(t, *add.AcksLate)
	assert.Nil(t, add.TrackStarted)
	require.NotNil(t, early.TrackStarted)
	assert.False(t, *early.TrackStarted, "the annotation wins over the decorator, as in Celery")
	require.Contains(t, byName, "mylib.tasks.limited")
	assert.Nil(t, other.AcksLate, "task_acks_late is the worker's setting, not the task's")
}

// The worker's broker (CELERY_BROKER_URL, broker_use_ssl, broker_failover_strategy)
// reaches the task's app, over a celeryconfig.py that names another broker.
func TestWorkerBrokerReachesTheApp(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "celeryconfig.py"),
		[]byte("imports = ('mylib.tasks',)\nbroker_url = 'amqp://elsewhere//'\n"), 0o600))
	p, _ := newPool(t, func(c *Config) {
		c.Dir, c.Imports = dir, nil
		c.Env = append(c.Env, "CELERY_BROKER_URL=amqps://u:p@a:5671//;amqps://u:p@b:5671//",
			EnvBrokerUseSSL+`={"ca_certs": "/ca.pem", "cert_reqs": 2}`, EnvBrokerFailoverStrategy+"=shuffle")
	})
	v, err := run(t, p, "mylib.tasks.broker_conf", call("b1"))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"broker_url": "amqps://u:p@a:5671//;amqps://u:p@b:5671//",
		"broker_use_ssl":           map[string]any{"ca_certs": "/ca.pem", "cert_reqs": 2.0},
		"broker_failover_strategy": "shuffle"}, decode(t, v))
}
