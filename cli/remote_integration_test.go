package cli

// Integration tests of the operator sub-commands (inspect, control, call, purge) run as the
// real binary against (a) a ccworker worker and (b) a Python Celery 5.2.6 worker. They skip
// unless CCWORKER_TEST_AMQP_URL and CCWORKER_TEST_MONGO_URL are set (make test sets them).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/testenv"
)

const python = "/usr/bin/python3"

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	binErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ccworkerBinary builds ./cmd/ccworker once per test run.
func ccworkerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "ccworker-cli-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "ccworker")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/ccworker").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// remoteEnv is one worker under test and how to run the CLI against it.
type remoteEnv struct {
	bin, broker, backend, queue, node string
	env                               []string
}

// cli runs the ccworker binary with args (plus -b and --result-backend where they apply)
// and returns its exit code, stdout and stderr.
func (e *remoteEnv) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	full := append(append([]string{}, args...), "-b", e.broker, "--result-backend", e.backend)
	// Addressed to the running node, the command returns as soon as it replies; the default
	// 1 s is too short for a Python worker on a loaded machine ("No nodes replied").
	if (args[0] == "inspect" || args[0] == "control") && slices.Contains(args, e.node) && !slices.Contains(args, "-t") {
		full = append(full, "-t", "15")
	}
	cmd := exec.Command(e.bin, full...)
	cmd.Env = e.env
	cmd.Dir = t.TempDir()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, out.String(), errb.String()
}

// waitPing pings the node until it answers.
func (e *remoteEnv) waitPing(t *testing.T, done <-chan struct{}, logs *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if code, _, _ := e.cli(t, "inspect", "ping", "-d", e.node, "-t", "1"); code == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
		select {
		case <-done:
			t.Fatalf("%s exited before answering ping:\n%s", e.node, logs.String())
		default:
		}
	}
	t.Fatalf("%s never answered ping; its output:\n%s", e.node, logs.String())
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func newRemoteEnv(t *testing.T) *remoteEnv {
	broker, mongoURL := testenv.AMQPURL(t), testenv.MongoURL(t)
	db := testenv.Name(t, "cli")
	backend := strings.TrimSuffix(mongoURL, "/") + "/" + db
	e := &remoteEnv{bin: ccworkerBinary(t), broker: broker, backend: backend, queue: testenv.Name(t, "q"),
		node: testenv.Name(t, "n") + "@test"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CELERY_") {
			e.env = append(e.env, kv)
		}
	}
	t.Cleanup(func() {
		// Drop the result database and delete the queue.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if client, err := mongo.Connect(options.Client().ApplyURI(mongoURL)); err == nil {
			_ = client.Database(db).Drop(ctx)
			_ = client.Disconnect(ctx)
		}
		if conn, err := amqp.Dial(broker); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(e.queue, false, false, false)
			}
			_ = conn.Close()
		}
	})
	return e
}

// start runs the worker process and stops it (SIGTERM, then kill) at cleanup.
func start(t *testing.T, e *remoteEnv, name string, args []string, env []string, dir string) (*exec.Cmd, *lockedBuffer, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(append([]string{}, e.env...), env...)
	cmd.Dir = dir
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start(), name)
	// done is closed when the process has exited; cmd.ProcessState then holds the status.
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd, logs, done
}

// exercise runs the operator commands against the node e.node and stops it.
func exercise(t *testing.T, e *remoteEnv, done <-chan struct{}, logs *lockedBuffer) {
	timed := func(name string, f func()) {
		t0 := time.Now()
		f()
		t.Logf("%-28s %v", name, time.Since(t0).Round(time.Millisecond))
	}
	timed("inspect ping", func() {
		code, out, errOut := e.cli(t, "inspect", "ping", "-d", e.node)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "->  "+e.node+": OK\n        pong\n")
		assert.Contains(t, out, "\n1 node online.\n")
	})
	timed("inspect ping -j", func() {
		code, out, _ := e.cli(t, "inspect", "ping", "-d", e.node, "-j")
		require.Equal(t, 0, code)
		var m map[string]map[string]string
		require.NoError(t, json.Unmarshal([]byte(out), &m), out)
		assert.Equal(t, "pong", m[e.node]["ok"])
	})
	timed("inspect stats/registered/...", func() {
		code, out, _ := e.cli(t, "inspect", "stats", "-d", e.node, "-j")
		require.Equal(t, 0, code)
		var stats map[string]map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &stats))
		assert.Contains(t, stats[e.node], "pool")
		code, out, _ = e.cli(t, "inspect", "registered", "-d", e.node)
		require.Equal(t, 0, code)
		assert.Contains(t, out, "* ccworker.add")
		code, out, _ = e.cli(t, "inspect", "active_queues", "-d", e.node, "-j")
		require.Equal(t, 0, code)
		assert.Contains(t, out, `"name":"`+e.queue+`"`)
		for _, m := range []string{"active", "reserved", "scheduled"} {
			code, out, _ = e.cli(t, "inspect", m, "-d", e.node)
			require.Equal(t, 0, code, m)
			assert.Contains(t, out, "->  "+e.node+": OK", m)
		}
	})
	timed("call --wait", func() {
		code, out, errOut := e.cli(t, "call", "ccworker.add", "--args", "[2,3]", "--queue", e.queue, "--wait", "--timeout", "30")
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, "5\n", out)
	})
	timed("call -n 20 --wait", func() {
		code, out, errOut := e.cli(t, "call", "ccworker.add", "--args", "[1,1]", "--queue", e.queue, "--wait", "-n", "20", "--timeout", "60")
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, strings.Repeat("2\n", 20), out)
		assert.Contains(t, errOut, "20/20 done (100.0%)")
	})
	timed("call failing task", func() {
		code, out, errOut := e.cli(t, "call", "ccworker.add", "--args", `["a", 1]`, "--queue", e.queue, "--wait", "--timeout", "30")
		assert.Equal(t, 1, code, out+errOut)
		assert.Contains(t, errOut, "FAILURE")
	})
	timed("call without --wait", func() {
		code, out, _ := e.cli(t, "call", "ccworker.add", "--args", "[1,2]", "--queue", e.queue, "--countdown", "0")
		require.Equal(t, 0, code)
		assert.Regexp(t, `^[0-9a-f-]{36}\n$`, out)
	})
	timed("inspect unknown node", func() {
		code, _, errOut := e.cli(t, "inspect", "ping", "-d", "nobody@nowhere", "-t", "0.3")
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "No nodes replied")
	})
	timed("control cancel/add_consumer", func() {
		extra := testenv.Name(t, "extra")
		code, out, errOut := e.cli(t, "control", "add_consumer", extra, "-d", e.node)
		require.Equal(t, 0, code, out+errOut)
		assert.Contains(t, out, "->  "+e.node+": OK")
		code, out, errOut = e.cli(t, "control", "cancel_consumer", extra, "-d", e.node)
		require.Equal(t, 0, code, out+errOut)
		// Deleted when the test ends, not now: a Celery worker whose consumer of the
		// queue is not yet cancelled sees the deletion as a consumer cancel and
		// reconnects, and the broadcasts sent meanwhile never reach it.
		t.Cleanup(func() {
			if conn, err := amqp.Dial(e.broker); err == nil {
				if ch, err := conn.Channel(); err == nil {
					_, _ = ch.QueueDelete(extra, false, false, false)
					_ = ch.ExchangeDelete(extra, false, false)
				}
				_ = conn.Close()
			}
		})
	})
	timed("control revoke", func() {
		code, out, errOut := e.cli(t, "control", "revoke", "0000-not-a-task", "-d", e.node)
		require.Equal(t, 0, code, out+errOut)
		assert.Contains(t, out, "0000-not-a-task")
	})
	timed("control shutdown", func() {
		code, out, errOut := e.cli(t, "control", "shutdown", "-d", e.node)
		require.Equal(t, 0, code, out+errOut)
		assert.Contains(t, out, "->  "+e.node+": OK")
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop after control shutdown:\n%s", e.node, logs.String())
		}
	})
}

func TestRemoteCommandsAgainstCCWorker(t *testing.T) {
	e := newRemoteEnv(t)
	metricsAddr := freePort(t)
	proc, logs, done := start(t, e, "ccworker", []string{e.bin, "-b", e.broker, "--result-backend", e.backend,
		"-Q", e.queue, "-n", e.node, "-c", "4", "-l", "INFO", "--metrics-addr", metricsAddr}, nil, t.TempDir())
	t0 := time.Now()
	e.waitPing(t, done, logs)
	t.Logf("ccworker answered ping after %v", time.Since(t0).Round(time.Millisecond))

	t.Run("purge", func(t *testing.T) {
		code, out, errOut := e.cli(t, "purge", "-Q", e.queue) // not confirmed: stdin is empty
		assert.Equal(t, 1, code, out+errOut)
		code, out, _ = e.cli(t, "purge", "-f", "-Q", e.queue+"-missing,"+e.queue)
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "from 2 queues")
	})

	// Scrape first: exercise ends with control shutdown.
	code, out, errOut := e.cli(t, "call", "ccworker.add", "--args", "[20,22]", "--queue", e.queue, "--wait", "--timeout", "30")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "42\n", out)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Contains(t, string(body), `ccworker_tasks_total{state="succeeded",task="ccworker.add"} 1`)
	assert.Contains(t, string(body), `ccworker_tasks_received_total{task="ccworker.add"} 1`)
	assert.Contains(t, string(body), `ccworker_task_runtime_seconds_count 1`)
	assert.Contains(t, string(body), `ccworker_broker_reconnects_total{cause="connection"} 0`)
	assert.Contains(t, string(body), `ccworker_pool_capacity 4`)
	assert.Contains(t, string(body), `ccworker_result_documents_total`)
	exercise(t, e, done, logs)
	<-done
	assert.Equal(t, 0, proc.ProcessState.ExitCode(), "ccworker exit status after control shutdown:\n%s", logs.String())
	assert.Contains(t, logs.String(), "shutdown")
}

func TestRemoteCommandsAgainstPythonCelery(t *testing.T) {
	e := newRemoteEnv(t)
	if out, err := exec.Command(python, "-c", "import celery, pymongo").CombinedOutput(); err != nil {
		t.Skipf("no Python Celery: %v %s", err, out)
	}
	dir, err := filepath.Abs("testdata")
	require.NoError(t, err)
	_, logs, done := start(t, e, "celery", []string{python, "-m", "celery", "-A", "cliapp", "worker",
		"-Q", e.queue, "-P", "solo", "-n", e.node, "-l", "WARNING", "--without-mingle", "--without-gossip"},
		[]string{"CCW_BROKER=" + e.broker, "CCW_BACKEND=" + e.backend, "PYTHONPATH=" + dir}, dir)
	t0 := time.Now()
	e.waitPing(t, done, logs)
	t.Logf("celery answered ping after %v", time.Since(t0).Round(time.Millisecond))
	exercise(t, e, done, logs)
}
