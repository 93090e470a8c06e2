package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

// Celery 5.5+ on quorum queues: the tests run in a vhost of their own, because native
// delayed delivery uses fixed names (celery_delayed_*), and start from an empty one, as a
// new deployment does.

// quorumSetup is a fresh vhost, a quorum queue on a topic exchange (both named queue), a
// result database, a marks file, and the environment of testdata/quorum_app.py.
type quorumSetup struct {
	*setup
	vhostURL string
	marks    string
	site     string // Celery 5.6.3's PYTHONPATH entry
}

func newQuorumSetup(t *testing.T) *quorumSetup {
	t.Helper()
	s := newSetup(t)
	needCelery(t)
	site := testenv.ModernCelery(t)
	q := &quorumSetup{setup: s, vhostURL: freshVhost(t, s.amqpURL), site: site,
		marks: filepath.Join(t.TempDir(), "marks")}
	s.amqpURL = q.vhostURL // for start's wait for the consumer
	text := fmt.Sprintf(`# a Celery 5.5+ deployment on quorum queues (ccworker quorum interop test)
broker_url = '%s'
result_backend = '%s'
mongodb_backend_settings = {'database': '%s', 'taskmeta_collection': '%s'}
result_expires = None
task_queues = [{'name': '%[5]s', 'exchange': '%[5]s', 'exchange_type': 'topic', 'routing_key': '%[5]s',
                'queue_arguments': {'x-queue-type': 'quorum'}}]
task_default_queue = '%[5]s'
task_default_exchange = '%[5]s'
task_default_exchange_type = 'topic'
task_default_routing_key = '%[5]s'
ccworker_builtin_tasks = True  # ccworker.add/flaky beside the command task
ccworker_commands = {'qq.mark': {'argv': 'echo {0} ccworker >> %[6]s', 'shell': True}}
`, q.vhostURL, s.mongoURL, s.db.Name(), collection, s.queue, q.marks)
	require.NoError(t, os.WriteFile(s.config, []byte(text), 0o600))
	return q
}

// freshVhost adds a vhost for the test (deleted at its end) and returns its URL.
func freshVhost(t *testing.T, base string) string {
	t.Helper()
	name := testenv.Name(t, "vh")
	rabbitmqctl(t, "add_vhost", name)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", name) })
	rabbitmqctl(t, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

func rabbitmqctl(t *testing.T, args ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "rmq.sh")
	out, err := exec.Command(script, append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl unusable (%v): %s", err, out)
	}
	return string(out)
}

func (q *quorumSetup) env() []string {
	app, err := filepath.Abs("testdata")
	if err != nil {
		panic(err)
	}
	return append(os.Environ(), "PYTHONPATH="+q.site+":"+app, "QQ_BROKER="+q.vhostURL,
		"QQ_BACKEND="+q.mongoURL, "QQ_DB="+q.db.Name(), "QQ_COLLECTION="+collection,
		"QQ_QUEUE="+q.queue, "QQ_MARKS="+q.marks)
}

// client runs quorum_app.py with args and returns its last output line.
func (q *quorumSetup) client(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{filepath.Join("testdata", "quorum_app.py")}, args...)...)
	cmd.Env = q.env()
	out, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	require.NoError(t, err, "quorum_app.py %v: %s", args, stderr)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// celeryWorker starts a Celery 5.6.3 worker of quorum_app on the queue; it is killed at
// the end of the test.
func (q *quorumSetup) celeryWorker(t *testing.T) *testharness.Proc {
	t.Helper()
	cmd := exec.Command(python, "-m", "celery", "-A", "quorum_app", "worker", "-Q", q.queue, "-c", "2",
		"-P", "threads", "-l", "INFO", "-n", "celery56@%h", "--without-gossip", "--without-mingle")
	cmd.Env = q.env()
	p := testharness.Start(t, cmd)
	p.WaitLog(t, "ready.", 60*time.Second)
	return p
}

// marksBy counts the lines of the marks file per tag and per worker.
func (q *quorumSetup) marksBy(t *testing.T) (perTag map[string]int, perWorker map[string]int) {
	t.Helper()
	perTag, perWorker = map[string]int{}, map[string]int{}
	b, err := os.ReadFile(q.marks)
	if os.IsNotExist(err) {
		return perTag, perWorker
	}
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if tag, who, ok := strings.Cut(line, " "); ok {
			perTag[tag]++
			perWorker[who]++
		}
	}
	return perTag, perWorker
}

// waitMarks waits until n distinct tags are marked, then a little longer for duplicates.
func (q *quorumSetup) waitMarks(t *testing.T, n int, timeout time.Duration) (map[string]int, map[string]int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		perTag, perWorker := q.marksBy(t)
		if len(perTag) >= n {
			time.Sleep(2 * time.Second) // a duplicate would come now
			return q.marksBy(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks ran within %v: %v; queues:\n%s", len(perTag), n, timeout, perWorker,
				rabbitmqctl(t, "list_queues", "-p", strings.TrimPrefix(mustURLPath(t, q.vhostURL), "/"),
					"name", "messages_ready", "messages_unacknowledged"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (q *quorumSetup) sendMarks(t *testing.T, n, lo, hi int) map[string]string {
	t.Helper()
	var sent [][2]string
	require.NoError(t, json.Unmarshal([]byte(q.client(t, "send", fmt.Sprint(n), fmt.Sprint(lo), fmt.Sprint(hi))), &sent))
	ids := map[string]string{}
	for _, p := range sent {
		ids[p[0]] = p[1]
	}
	require.Len(t, ids, n)
	return ids
}

// A Celery 5.6.3 client on a quorum queue and a topic exchange sends countdowns through
// celery_delayed_27 and a chord's celery.chord_unlock with a countdown: in a fresh vhost
// (no Celery worker ever ran there) none is lost, and ccworker parks its own retries the
// same way.
func TestModernCeleryQuorumNativeDelay(t *testing.T) {
	q := newQuorumSetup(t)
	p := q.start(t, "--eta-hold", "1s")
	bindings := rabbitmqctl(t, "list_bindings", "-p", strings.TrimPrefix(mustURLPath(t, q.vhostURL), "/"),
		"source_name", "destination_name", "routing_key")
	assert.Contains(t, bindings, "celery_delayed_delivery\t"+q.queue+"\t#."+q.queue, "Celery 5.6's binding")

	const n = 20
	begin := time.Now()
	ids := q.sendMarks(t, n, 2, 4)
	perTag, perWorker := q.waitMarks(t, n, 45*time.Second)
	assert.GreaterOrEqual(t, time.Since(begin), 2*time.Second, "the countdowns were kept")
	for tag := range ids {
		assert.Equal(t, 1, perTag[tag], "task %s ran once", tag)
	}
	assert.Equal(t, map[string]int{"ccworker": n}, perWorker)
	assert.Equal(t, n, q.countDocs(t, bson.D{{Key: "status", Value: "SUCCESS"}}))

	var chordOut struct {
		Result struct{ Args [][]int } `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(q.client(t, "chord", "4")), &chordOut), "chord through celery.chord_unlock")
	assert.Equal(t, [][]int{{0, 2, 4, 6}}, chordOut.Result.Args)

	// ccworker.flaky retries with a 3 s countdown: beyond --eta-hold, so ccworker parks the
	// retry in celery_delayed_* as a Celery 5.6 client would.
	var flaky struct{ Result int }
	require.NoError(t, json.Unmarshal([]byte(q.client(t, "flaky", "1", "3")), &flaky))
	assert.Equal(t, 1, flaky.Result)
	assert.NotContains(t, p.Output(), "cannot park")
	queues := rabbitmqctl(t, "list_queues", "-p", strings.TrimPrefix(mustURLPath(t, q.vhostURL), "/"), "name")
	assert.NotContains(t, queues, "ccworker.delay.", "parked through native delayed delivery, not ccworker's own queues")
}

// A Celery 5.6.3 worker and ccworker consume the same quorum queue: every countdown task
// runs exactly once, by either.
func TestModernCeleryWorkerBesideCcworker(t *testing.T) {
	q := newQuorumSetup(t)
	q.celeryWorker(t) // declares first, as Celery 5.6 does
	q.start(t, "--eta-hold", "1s")

	const n = 60
	ids := q.sendMarks(t, n, 1, 6)
	perTag, perWorker := q.waitMarks(t, n, 50*time.Second)
	for tag := range ids {
		assert.Equal(t, 1, perTag[tag], "task %s ran exactly once", tag)
	}
	assert.Len(t, perTag, n)
	t.Logf("executions by worker: %v", perWorker)
	deadline := time.Now().Add(20 * time.Second)
	for q.countDocs(t, bson.D{{Key: "status", Value: "SUCCESS"}}) < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	assert.Equal(t, n, q.countDocs(t, bson.D{{Key: "status", Value: "SUCCESS"}}))
}

func mustURLPath(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	require.NoError(t, err)
	return p.Path
}
