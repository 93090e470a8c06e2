// Package interop tests the real ccworker binary against real Python Celery: it builds
// ./cmd/ccworker once, starts it as a subprocess (its own queue and result database per
// test, a cyberCommons-shaped celeryconfig.py written by the test), sends tasks with
// scripts/celery_client.py (Debian's Celery 5.2.6 under /usr/bin/python3) or raw AMQP
// publishes, and checks what the Celery client sees, the MongoDB documents ccworker wrote,
// what is left in the queue, and how the process shuts down.
//
// Run it with the rest of the tests through `make test` (which starts RabbitMQ and the
// MongoDB-wire server and sets the variables), or against running services:
//
//	CCWORKER_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672// \
//	CCWORKER_TEST_MONGO_URL=mongodb://127.0.0.1:27017/ \
//	go test -race -count=1 ./interop/
//
// Without the two variables (or without /usr/bin/python3 with Celery) every test skips and
// says why. Queue and database names come from testenv.Name, so runs never collide; the
// databases are dropped when each test ends.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

const (
	python      = testharness.Python
	collection  = "tombstone"
	nodePattern = "interop@%h"
)

var (
	binary    string // the ccworker built by TestMain; "" when the services are not configured
	buildErr  error
	celeryErr error // why the Python Celery client cannot run, if it cannot
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv(testenv.AMQPVar) != "" && os.Getenv(testenv.MongoVar) != "" {
		var remove func()
		binary, remove, buildErr = testharness.Build()
		defer remove()
		celeryErr = testharness.CheckCelery()
	}
	code := m.Run()
	if code == 0 {
		// The helpers' goroutines (output copiers, AMQP and MongoDB clients) must be gone.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "interop: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// env returns the services' URLs (skipping the test when they are not configured) and
// fails the test if the binary did not build.
func env(t *testing.T) (amqpURL, mongoURL string) {
	t.Helper()
	amqpURL, mongoURL = testenv.AMQPURL(t), testenv.MongoURL(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return amqpURL, mongoURL
}

// needCelery skips the test when the Python Celery client cannot run.
func needCelery(t *testing.T) {
	t.Helper()
	if celeryErr != nil {
		t.Skipf("no Python Celery client: %v", celeryErr)
	}
}

// ---------------------------------------------------------------- the ccworker process

// setup is one test's services: a fresh queue, a fresh result database (dropped at the
// end) and a celeryconfig.py naming both.
type setup struct {
	amqpURL, mongoURL string
	queue             string
	db                *mongo.Database
	config            string // path of the celeryconfig.py
}

func newSetup(t *testing.T, accept ...string) *setup {
	t.Helper()
	amqpURL, mongoURL := env(t)
	if len(accept) == 0 {
		accept = []string{"json", "msgpack", "yaml"}
	}
	s := &setup{amqpURL: amqpURL, mongoURL: mongoURL, queue: testenv.Name(t, "q"), db: testenv.Database(t)}
	s.config = writeConfig(t, amqpURL, mongoURL, s.db.Name(), accept)
	t.Cleanup(func() { testharness.DeleteQueue(t, amqpURL, s.queue) })
	return s
}

// writeConfig writes a celeryconfig.py shaped like cyberCommons' remote-worker config.
func writeConfig(t *testing.T, amqpURL, mongoURL, db string, accept []string) string {
	t.Helper()
	var quoted []string
	for _, a := range accept {
		quoted = append(quoted, fmt.Sprintf("'%s'", a))
	}
	text := fmt.Sprintf(`# celeryconfig.py written by ccworker's interop tests (cyberCommons shape)
broker_url = '%s'

worker_send_task_events = False
result_expires = None
accept_content = [%s]

result_backend = '%s'
mongodb_backend_settings = {
    'database': '%s',
    'taskmeta_collection': '%s',
}
`, amqpURL, strings.Join(quoted, ", "), mongoURL, db, collection)
	path := filepath.Join(t.TempDir(), "celeryconfig.py")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// start runs ccworker on the setup's queue and waits for its "ready." line.
func (s *setup) start(t *testing.T, extra ...string) *testharness.Proc {
	t.Helper()
	args := append([]string{"--config", s.config, "-Q", s.queue, "-c", "8", "-l", "INFO", "-n", nodePattern}, extra...)
	p := spawn(t, args...)
	p.WaitLog(t, "ready.", 30*time.Second)
	// "ready." is logged before the broker connection is made (see
	// TestReadyOnlyWhenConnected): wait for the consumer too, so that publishes straight
	// to the queue find it.
	testharness.WaitConsumer(t, s.amqpURL, s.queue, p, 30*time.Second)
	return p
}

// spawn starts the binary with args in an empty directory; the test's cleanup kills it if
// it is still running and logs its output if the test failed.
func spawn(t *testing.T, args ...string) *testharness.Proc {
	t.Helper()
	return testharness.Start(t, exec.Command(binary, args...))
}

// ---------------------------------------------------------------- the Celery client

// client is celery_client.py's app flags.
type client struct {
	serializer string // json (default), msgpack, yaml
	protocol   int    // 2 (default) or 1
	extended   bool
}

// run runs celery_client.py with the setup's broker, backend, database and queue.
func (s *setup) run(ctx context.Context, c client, args ...string) (stdout, stderr string, code int, err error) {
	if c.serializer == "" {
		c.serializer = "json"
	}
	if c.protocol == 0 {
		c.protocol = 2
	}
	flags := []string{"--serializer", c.serializer, "--protocol", fmt.Sprint(c.protocol)}
	if c.extended {
		flags = append(flags, "--result-extended")
	}
	return s.client().Run(ctx, append(flags, args...)...)
}

func (s *setup) client() testharness.Client {
	return testharness.Client{Broker: s.amqpURL, Backend: s.mongoURL, Database: s.db.Name(), Collection: collection, Queue: s.queue}
}

// callOut is the JSON line `celery_client.py call` prints.
type callOut struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Result     any    `json:"result"`
	ExcType    string `json:"exc_type"`
	ExcModule  string `json:"exc_module"`
	ExcMessage []any  `json:"exc_message"`
	Traceback  string `json:"traceback"`
	Error      string `json:"error"`

	code   int    // the client's exit status
	stderr string // the client's stderr
}

// call sends one task with `celery_client.py call` and returns what the client saw.
func (s *setup) call(t *testing.T, c client, task, args, kwargs string, timeout float64) (callOut, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout+30)*time.Second)
	defer cancel()
	stdout, stderr, code, err := s.run(ctx, c, "call", task, "--args", args, "--kwargs", kwargs,
		"--timeout", fmt.Sprint(timeout))
	if err != nil {
		return callOut{}, fmt.Errorf("celery_client.py call %s: %v; stderr:\n%s", task, err, stderr)
	}
	out, err := parseCallOut(stdout)
	if err != nil {
		return callOut{}, fmt.Errorf("celery_client.py call %s (exit %d): %v; stderr:\n%s", task, code, err, stderr)
	}
	out.code, out.stderr = code, stderr
	return out, nil
}

func parseCallOut(stdout string) (callOut, error) {
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var out callOut
	dec := json.NewDecoder(strings.NewReader(lines[len(lines)-1]))
	dec.UseNumber() // keep 5 and 5.0 apart
	if err := dec.Decode(&out); err != nil {
		return out, fmt.Errorf("cannot parse %q: %v", stdout, err)
	}
	return out, nil
}

// ---------------------------------------------------------------- AMQP and MongoDB

func (s *setup) coll() *mongo.Collection { return s.db.Collection(collection) }

func (s *setup) findRaw(t *testing.T, id string) (bson.Raw, error) {
	t.Helper()
	return testharness.FindRaw(t, s.coll(), id)
}

// countDocs counts the documents, optionally only those with the given ids and status.
func (s *setup) countDocs(t *testing.T, filter bson.D) int {
	t.Helper()
	return testharness.CountDocs(t, s.coll(), filter)
}

// ---------------------------------------------------------------- 1, 2: the interop matrix

// matrixCase is one call and what the client and the stored document must show.
type matrixCase struct {
	name         string
	client       client
	task         string
	args, kwargs string
	state        string
	result       string // the client's result as compact JSON (json.Number keeps ints apart)
	excType      string
	excModule    string
	excMessage   string // compact JSON of exc_message
	storedResult string // the stored result string's JSON value (compact, keys sorted)
}

func matrixCases() []matrixCase {
	var cases []matrixCase
	ok := func(c client, task, args, kwargs, result string) {
		cases = append(cases, matrixCase{client: c, task: task, args: args, kwargs: kwargs,
			state: "SUCCESS", result: result, storedResult: result})
	}
	for _, ser := range []string{"json", "msgpack"} {
		for _, proto := range []int{1, 2} {
			c := client{serializer: ser, protocol: proto}
			ok(c, "ccworker.add", `[2, 3]`, `{}`, `5`)
			ok(c, "ccworker.add", `[2.5, 1]`, `{}`, `3.5`)
			ok(c, "ccworker.noop", `[]`, `{}`, `null`)
			ok(c, "ccworker.echo", `[1, "a"]`, `{"k": [1, 2]}`, `{"args":[1,"a"],"kwargs":{"k":[1,2]}}`)
			ok(c, "ccworker.sleep", `[0.05]`, `{}`, `0.05`)
			cases = append(cases, matrixCase{client: c, task: "ccworker.fail", args: `["boom"]`, kwargs: `{}`,
				state: "FAILURE", result: "null", excType: "ValueError", excModule: "builtins", excMessage: `["boom"]`,
				storedResult: `{"exc_message":["boom"],"exc_module":"builtins","exc_type":"ValueError"}`})
		}
	}
	y := client{serializer: "yaml", protocol: 2}
	ok(y, "ccworker.add", `[2, 3]`, `{}`, `5`)
	ok(y, "ccworker.echo", `[1, "a"]`, `{"k": [1, 2]}`, `{"args":[1,"a"],"kwargs":{"k":[1,2]}}`)
	cases = append(cases, matrixCase{client: client{}, task: "interop.not_registered", args: `[1]`, kwargs: `{}`,
		state: "FAILURE", result: "null", excType: "NotRegistered", excModule: "celery.exceptions",
		excMessage:   `["interop.not_registered"]`,
		storedResult: `{"exc_message":["interop.not_registered"],"exc_module":"celery.exceptions","exc_type":"NotRegistered"}`})
	for i := range cases {
		c := &cases[i]
		proto := c.client.protocol
		if proto == 0 {
			proto = 2
		}
		args := strings.NewReplacer(" ", "", `"`, "", "[", "(", "]", ")").Replace(c.args)
		c.name = fmt.Sprintf("%s-v%d/%s%s", orDefault(c.client.serializer, "json"), proto, c.task, args)
	}
	return cases
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// compactJSON re-encodes JSON text compactly, map keys sorted, numbers as written.
func compactJSON(t *testing.T, text string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var x any
	require.NoError(t, dec.Decode(&x), "not JSON: %q", text)
	return compactValue(t, x)
}

// compactValue encodes a decoded value (json.Number kept as written) compactly.
func compactValue(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestInteropMatrix calls every built-in task through Celery 5.2.6 with each serializer
// and protocol version, checks what the client sees and the document ccworker stored.
func TestInteropMatrix(t *testing.T) {
	s := newSetup(t)
	needCelery(t)
	w := s.start(t)
	host, err := os.Hostname()
	require.NoError(t, err)
	cases := matrixCases()

	// Python start-up dominates a call (~1 s): run the clients concurrently, a few at a
	// time on small machines.
	outs := make([]callOut, len(cases))
	errs := make([]error, len(cases))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			outs[i], errs[i] = s.call(t, c.client, c.task, c.args, c.kwargs, 30)
		}()
	}
	wg.Wait()

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, errs[i])
			out := outs[i]
			require.Equal(t, 0, out.code, "client exit status; output %+v", out)
			require.Equal(t, c.state, out.State, "client state; output %+v", out)
			assert.Equal(t, c.result, compactValue(t, out.Result), "client result")
			if c.state == "FAILURE" {
				assert.Equal(t, c.excType, out.ExcType)
				assert.Equal(t, c.excModule, out.ExcModule)
				assert.Equal(t, c.excMessage, compactValue(t, out.ExcMessage))
				wantTail := fmt.Sprintf("%s: %s", c.excType, strings.Trim(c.excMessage, `[]"`))
				assert.True(t, strings.HasSuffix(strings.TrimRight(out.Traceback, "\n"), wantTail),
					"traceback must end in %q: %q", wantTail, out.Traceback)
				assert.True(t, strings.HasPrefix(out.Traceback, "Traceback (most recent call last):\n"),
					"traceback %q", out.Traceback)
			}
			raw, err := s.findRaw(t, out.ID)
			require.NoError(t, err, "document %s", out.ID)
			checkDocument(t, raw, docWant{
				id: out.ID, status: c.state, result: c.storedResult, name: c.task, args: c.args, kwargs: c.kwargs,
				worker: "interop@" + host, queue: s.queue,
			})
		})
	}
	w.Stop(t)
}

// docWant is what a stored result document must hold.
type docWant struct {
	id, status, result string
	name, args, kwargs string // the call's task name and arguments (JSON)
	worker, queue      string
	groupID, parentID  string
}

// checkDocument checks a result document's field names, order and types (spec §2.3).
func checkDocument(t *testing.T, raw bson.Raw, want docWant) {
	t.Helper()
	elems, err := raw.Elements()
	require.NoError(t, err)
	var keys []string
	vals := map[string]bson.RawValue{}
	for _, e := range elems {
		keys = append(keys, e.Key())
		vals[e.Key()] = e.Value()
	}
	order := []string{"status", "result", "traceback", "children", "date_done"}
	if want.groupID != "" {
		order = append(order, "group_id")
	}
	if want.parentID != "" {
		order = append(order, "parent_id")
	}
	order = append(order, "name", "args", "kwargs", "worker", "retries", "queue")
	// ccworker writes _id last, as Celery does; MongoDB-wire servers store _id first.
	var rest []string
	for _, k := range keys {
		if k != "_id" {
			rest = append(rest, k)
		}
	}
	require.Equal(t, order, rest, "field names and order (besides _id) of %v", keys)
	require.True(t, keys[0] == "_id" || keys[len(keys)-1] == "_id", "_id first or last: %v", keys)

	assert.Equal(t, want.id, str(t, vals["_id"]), "_id")
	assert.Equal(t, want.status, str(t, vals["status"]), "status")
	require.Equal(t, bson.TypeString, vals["result"].Type, "result must be a JSON string, is %v", vals["result"].Type)
	assert.Equal(t, want.result, compactJSON(t, vals["result"].StringValue()), "stored result")
	if want.status == "SUCCESS" {
		assert.Equal(t, bson.TypeNull, vals["traceback"].Type, "traceback of a success")
	} else {
		require.Equal(t, bson.TypeString, vals["traceback"].Type, "traceback of a failure")
	}
	require.Equal(t, bson.TypeArray, vals["children"].Type, "children")
	children, err := vals["children"].Array().Values()
	require.NoError(t, err)
	assert.Empty(t, children, "children")
	require.Equal(t, bson.TypeDateTime, vals["date_done"].Type, "date_done must be a BSON datetime")
	done := vals["date_done"].Time()
	assert.WithinDuration(t, time.Now(), done, 5*time.Minute, "date_done")
	assert.Equal(t, want.name, str(t, vals["name"]), "name")
	assert.Equal(t, compactJSON(t, want.args), compactValue(t, rawToGo(t, vals["args"])), "args")
	assert.Equal(t, compactJSON(t, want.kwargs), compactValue(t, rawToGo(t, vals["kwargs"])), "kwargs")
	assert.Equal(t, want.worker, str(t, vals["worker"]), "worker (the -n %s expansion)", nodePattern)
	switch vals["retries"].Type {
	case bson.TypeInt32, bson.TypeInt64:
		assert.EqualValues(t, 0, vals["retries"].AsInt64(), "retries")
	default:
		t.Errorf("retries must be an integer, is %v", vals["retries"].Type)
	}
	assert.Equal(t, want.queue, str(t, vals["queue"]), "queue (the routing key)")
}

func str(t *testing.T, v bson.RawValue) string {
	t.Helper()
	s, ok := v.StringValueOK()
	if !ok {
		t.Errorf("not a string: %v %v", v.Type, v)
	}
	return s
}

// rawToGo converts a stored array or document to plain Go values for JSON comparison.
func rawToGo(t *testing.T, v bson.RawValue) any {
	t.Helper()
	ext, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	require.NoError(t, err)
	var x struct{ V any }
	dec := json.NewDecoder(bytes.NewReader(ext))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&x))
	return x.V
}

// ---------------------------------------------------------------- 3: result_extended client

// TestResultExtendedClient: a client with result_extended=True (Celery 5.2.6 reads only
// the base fields, but sends and reads through the same AsyncResult path).
func TestResultExtendedClient(t *testing.T) {
	s := newSetup(t)
	needCelery(t)
	w := s.start(t)
	out, err := s.call(t, client{extended: true}, "ccworker.add", `[2, 3]`, `{}`, 30)
	require.NoError(t, err)
	require.Equal(t, "SUCCESS", out.State, "%+v", out)
	assert.Equal(t, "5", compactValue(t, out.Result))
	raw, err := s.findRaw(t, out.ID)
	require.NoError(t, err)
	host, _ := os.Hostname()
	checkDocument(t, raw, docWant{id: out.ID, status: "SUCCESS", result: "5", name: "ccworker.add",
		args: `[2,3]`, kwargs: `{}`, worker: "interop@" + host, queue: s.queue})
	w.Stop(t)
}

// ---------------------------------------------------------------- 4: accept_content

// TestContentTypeRefused: with accept_content = ['json'], a msgpack task is rejected
// without requeue, stores nothing, and the log names the content type.
func TestContentTypeRefused(t *testing.T) {
	s := newSetup(t, "json")
	needCelery(t)
	w := s.start(t)

	out, err := s.call(t, client{serializer: "msgpack"}, "ccworker.add", `[2, 3]`, `{}`, 3)
	require.NoError(t, err)
	assert.Equal(t, 2, out.code, "the client must time out: %+v", out)
	assert.Equal(t, "PENDING", out.State, "%+v", out)
	require.NotEmpty(t, out.ID)
	w.WaitLogFunc(t, "refused content type line", 10*time.Second, func(log string) bool {
		return lineWith(log, "refused content type", "application/x-msgpack", out.ID)
	})

	good, err := s.call(t, client{}, "ccworker.add", `[2, 3]`, `{}`, 30)
	require.NoError(t, err)
	assert.Equal(t, "SUCCESS", good.State, "a json task after the refused one: %+v", good)

	w.Stop(t)
	assert.Equal(t, 0, testharness.WaitReady(t, s.amqpURL, s.queue, 0, 2*time.Second), "messages left in the queue")
	_, err = s.findRaw(t, out.ID)
	assert.ErrorIs(t, err, mongo.ErrNoDocuments, "no result document for the refused task")
	assert.Equal(t, 1, s.countDocs(t, bson.D{}), "only the json task's document")
}

// lineWith reports whether one line of log contains every substring.
func lineWith(log string, subs ...string) bool {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		return true
	}
	return false
}

// ---------------------------------------------------------------- 5: garbage messages

// TestGarbageMessages publishes undecodable and unrecognisable messages directly: the
// worker logs them, settles them (nothing left in the queue) and keeps working.
func TestGarbageMessages(t *testing.T) {
	s := newSetup(t)
	needCelery(t)
	w := s.start(t)

	conn, ch := testharness.Dial(t, s.amqpURL)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish := func(headers amqp.Table, body string) {
		t.Helper()
		require.NoError(t, ch.PublishWithContext(ctx, "", s.queue, false, false, amqp.Publishing{
			Headers: headers, ContentType: "application/json", ContentEncoding: "utf-8",
			DeliveryMode: amqp.Persistent, Body: []byte(body),
		}))
	}

	id := testharness.NewUUID()
	publish(amqp.Table{"task": "ccworker.add", "id": id}, "not json")
	w.WaitLogFunc(t, "a decode error naming "+id, 10*time.Second, func(log string) bool {
		return lineWith(log, "ERROR", id)
	})
	line := firstLineWith(w.Output(), id)
	assert.Regexp(t, regexp.MustCompile(`(?i)decode|json|invalid`), line, "the error must say what is wrong")

	before := strings.Count(w.Output(), "\n")
	publish(nil, "[1,2]")
	w.WaitLogFunc(t, "an ERROR line saying the header-less message was rejected", 10*time.Second, func(log string) bool {
		lines := strings.Split(log, "\n")
		return lineWith(strings.Join(lines[min(before, len(lines)):], "\n"), "ERROR", "reject")
	})

	good, err := s.call(t, client{}, "ccworker.add", `[2, 3]`, `{}`, 30)
	require.NoError(t, err)
	assert.Equal(t, "SUCCESS", good.State, "a good task after the garbage: %+v", good)
	assert.Equal(t, "5", compactValue(t, good.Result))

	w.Stop(t)
	assert.Equal(t, 0, testharness.WaitReady(t, s.amqpURL, s.queue, 0, 2*time.Second),
		"the garbage must be acked or rejected without requeue")
	_, err = s.findRaw(t, id)
	assert.ErrorIs(t, err, mongo.ErrNoDocuments, "no document for an undecodable message")
}

func firstLineWith(log, sub string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
