package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
)

// The end-to-end benchmarks run the real ccworker binary against the real RabbitMQ and
// MongoDB-wire server with pre-published Celery protocol-2 messages, as the Celery
// baseline was measured. Each load is fixed (b.N is not used: one run is one load), and
// the figures are reported as custom metrics, benchstat-friendly:
//
//	tasks/s          tasks / (first message taken -> last ack, or newest date_done if later)
//	startup-ms       process start -> first message taken
//	end-late-max-ms  how late the end can be seen (the monitor's last poll interval)
//	p50-ms p99-ms    publish -> result durable (results on only; from date_done)
//	peak-RSS-MB      the worker's VmHWM
//	cpu-s/1k         the worker's user+system CPU seconds per 1,000 tasks in that window
//	broker-cpu-s/1k  the same for RabbitMQ (beam.smp on :5672, shared: other work counts too)
//	store-cpu-s/1k   the same for FerretDB (:27017) and PostgreSQL (:5432)
//
// The clock is scripts/queue_monitor.sh (a read-only poll of the queue inside the RabbitMQ
// node, ~10 ms apart); where rabbitmqctl cannot run, a passive queue.declare every 20 ms
// (ready = 0 only: up to the prefetch window early) stands in, and end-late-max-ms is -1.
//
// The ceiling benchmarks push the same messages through the thinnest Go pipeline
// (consume, multiple-ack every 100, and for results on an unordered bulk insert of the
// same documents): ccworker's tasks/s divided by the ceiling's is its distance from what
// RabbitMQ and the result store allow on this machine.

type load struct {
	name    string
	task    string
	args    []any
	n       int
	results bool
}

// Sized for about 20 s of ccworker's work each on a quiet 2-core machine (-size-scale).
var loads = []load{
	{"noop/results=off", "ccworker.noop", []any{}, 250000, false},
	{"noop/results=on", "ccworker.noop", []any{}, 130000, true},
	{"sleep10ms/results=off", "ccworker.sleep", []any{0.01}, 100000, false},
	{"sleep10ms/results=on", "ccworker.sleep", []any{0.01}, 90000, true},
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// ccworkerBinary builds cmd/ccworker once for all benchmarks of the run (the directory
// stays until the machine's temp cleanup: benchmarks have no TestMain to remove it).
func ccworkerBinary(b *testing.B) string {
	buildOnce.Do(func() { binary, _, buildErr = testharness.Build() })
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binary
}

func BenchmarkE2E(b *testing.B) {
	for _, l := range loads {
		b.Run(l.name, func(b *testing.B) { runE2E(b, l) })
	}
}

func BenchmarkCeiling(b *testing.B) {
	for _, l := range loads {
		if l.task != "ccworker.noop" {
			continue // the ceiling does no work: noop is the pipeline's own cost
		}
		b.Run(l.name, func(b *testing.B) { runCeiling(b, l) })
	}
}

// env is one benchmark's services: a fresh queue and database, removed afterwards.
type env struct {
	amqpURL, mongoURL string
	queue             string
	db                *mongo.Database
	conn              *amqp.Connection
}

func newEnv(b *testing.B) *env {
	amqpURL, mongoURL := testenv.AMQPURL(b), testenv.MongoURL(b)
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		b.Fatal(err)
	}
	e := &env{amqpURL: amqpURL, mongoURL: mongoURL, queue: testenv.Name(b, "bench"), conn: conn}
	b.Cleanup(func() {
		_ = conn.Close()
		testharness.DeleteQueue(b, amqpURL, e.queue)
	})
	e.db = testenv.Database(b)
	if err := prefetch.Declare(conn, []prefetch.Queue{prefetch.CeleryQueue(e.queue, 0)}); err != nil {
		b.Fatal(err)
	}
	return e
}

// publish pre-publishes n Celery messages (confirmed) and returns their ids and the
// publish times.
func (e *env) publish(b *testing.B, l load) (ids []string, sent map[string]time.Time) {
	sent = make(map[string]time.Time, l.n)
	e.publishBacklog(b, l.n, func(i int) *protocol.Request {
		id := fmt.Sprintf("%s-%08d", e.queue, i)
		sent[id] = time.Now()
		ids = append(ids, id)
		return &protocol.Request{ID: id, Task: l.task, Args: l.args, Kwargs: map[string]any{}, IgnoreResult: !l.results, RootID: id}
	})
	return ids, sent
}

// publishBacklog publishes n requests to e's queue, req(i) just before the i-th is sent,
// and waits for the broker's confirms.
func (e *env) publishBacklog(b *testing.B, n int, req func(i int) *protocol.Request) {
	ch, confirms := e.confirmChannel(b, n)
	defer ch.Close()
	for i := range n {
		publishOne(b, ch, e.queue, req(i))
	}
	awaitConfirms(b, confirms, n)
}

// confirmChannel opens a channel in confirm mode with room for size pending confirms; the
// caller closes it.
func (e *env) confirmChannel(b *testing.B, size int) (*amqp.Channel, <-chan amqp.Confirmation) {
	ch, err := e.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	return ch, ch.NotifyPublish(make(chan amqp.Confirmation, size))
}

// awaitConfirms waits for n confirms and fails the benchmark on a nack.
func awaitConfirms(b *testing.B, confirms <-chan amqp.Confirmation, n int) {
	for range n {
		if c := <-confirms; !c.Ack {
			b.Fatal("publish nacked")
		}
	}
}

func (e *env) readyCount(b *testing.B) int {
	ch, err := e.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(e.queue, true, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	return q.Messages
}

func runE2E(b *testing.B, l load) {
	bin := ccworkerBinary(b)
	e := newEnv(b)
	l.n = scaled(l.n)
	timeout := 2*time.Minute + time.Duration(l.n)*time.Millisecond
	// The monitor's clock runs from before the publishing, which a busy broker can make slow.
	mon, monErr := startMonitor(e.queue, 10*time.Minute+timeout)
	if monErr != nil {
		b.Logf("no queue monitor (%v): the end is the queue seen empty over AMQP", monErr)
	}
	ids, sent := e.publish(b, l)
	coll := e.db.Collection("celery_taskmeta")

	args := []string{"-b", e.amqpURL, "-Q", e.queue, "-c", "512", "-n", "bench@%h", "-l", "WARNING", "--builtin-tasks",
		"--without-heartbeat", "--max-idle", "2s"}
	if l.results {
		args = append(args, "--result-backend", strings.TrimSuffix(e.mongoURL, "/")+"/"+e.db.Name())
	}
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	groups := serviceGroups()
	b.ResetTimer()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	groups["worker"] = []int{cmd.Process.Pid}
	cpu := newCPUSampler(groups, 100*time.Millisecond)
	started, end := waitE2E(b, e, l, cmd, &out, mon, timeout)
	cpu.Stop()
	b.StopTimer()
	// The sampled RSS only: wait4's ru_maxrss is, on gVisor, the largest child of the
	// benchmark's (the queue monitor's rabbitmqctl Erlang VM, 120-140 MB), not the worker's.
	peakRSS := cpu.peakRSS("worker")

	var lat []time.Duration
	if l.results {
		var newest time.Time
		lat, newest = resultLatencies(b, coll, ids, sent, &out)
		if newest.After(end) {
			end = newest
		}
	}
	b.ReportMetric(float64(l.n)/end.Sub(started).Seconds(), "tasks/s")
	b.ReportMetric(float64(started.Sub(start).Microseconds())/1000, "startup-ms")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MB")
	reportCosts(b, cpu, started, end, l.n)
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(0, "ns/op") // one fixed load per run: ns/op means nothing here
}

// waitE2E waits for the worker to drain the load and exit (--max-idle) and returns when the
// first message was taken and when the last one was acked.
func waitE2E(b *testing.B, e *env, l load, cmd *exec.Cmd, out *strings.Builder, mon *queueMonitor,
	timeout time.Duration) (started, end time.Time) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	var exited bool
	for !exited {
		select {
		case err := <-done:
			// --max-idle: the worker leaves once the queue has been dry for 2 s. The end
			// measured is the monitor's (the last ack), not the exit; 300 ms was too short
			// for a busy machine, where deliveries can pause that long mid-load.
			if err != nil {
				b.Fatalf("ccworker: %v\n%s", err, out.String())
			}
			exited = true
		case <-tick.C:
			if mon != nil {
				continue
			}
			if started.IsZero() && e.readyCount(b) < l.n {
				started = time.Now()
			}
			if end.IsZero() && e.readyCount(b) == 0 {
				end = time.Now()
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			b.Fatalf("the load did not finish in %v\n%s", timeout, out.String())
		}
	}
	if mon == nil {
		b.ReportMetric(-1, "end-late-max-ms")
		return started, end
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := mon.result(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(r.endBound.Microseconds())/1000, "end-late-max-ms")
	return r.started, r.end
}

// resultLatencies checks that every task has a SUCCESS document and returns the latencies
// publish -> date_done and the newest date_done.
func resultLatencies(b *testing.B, coll *mongo.Collection, ids []string, sent map[string]time.Time,
	out *strings.Builder) (lat []time.Duration, newest time.Time) {
	ctx := context.Background()
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "date_done", Value: 1}, {Key: "status", Value: 1}}))
	if err != nil {
		b.Fatal(err)
	}
	var docs []struct {
		ID       string        `bson:"_id"`
		Status   string        `bson:"status"`
		DateDone bson.DateTime `bson:"date_done"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		b.Fatal(err)
	}
	if len(docs) != len(ids) {
		b.Fatalf("%d of %d results stored\n%s", len(docs), len(ids), out.String())
	}
	for _, d := range docs {
		if d.Status != "SUCCESS" {
			b.Fatalf("task %s: %s", d.ID, d.Status)
		}
		t := d.DateDone.Time()
		if t.After(newest) {
			newest = t
		}
		lat = append(lat, t.Sub(sent[d.ID]))
	}
	return lat, newest
}

// vmHWM returns a process's peak resident set size in bytes (0 if unreadable).
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// runCeiling consumes the same messages with the thinnest pipeline: prefetch 1000,
// multiple-ack every 100, and for results on, unordered bulk inserts of the documents
// ccworker would write, 256 at a time, acking after each insert.
func runCeiling(b *testing.B, l load) {
	e := newEnv(b)
	l.n = scaled(l.n)
	e.publish(b, l)
	var coll *mongo.Collection
	if l.results {
		coll = e.db.Collection("celery_taskmeta")
	}
	ch, err := e.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Qos(1000, 0, false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	msgs, err := ch.Consume(e.queue, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]any, 0, 256)
	var last uint64
	for got := 0; got < l.n; got++ {
		m := <-msgs
		last = m.DeliveryTag
		if coll != nil {
			id, _ := m.Headers["id"].(string)
			batch = append(batch, bson.D{{Key: "status", Value: "SUCCESS"}, {Key: "result", Value: "null"},
				{Key: "traceback", Value: nil}, {Key: "children", Value: bson.A{}},
				{Key: "date_done", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "_id", Value: id}})
			if len(batch) == cap(batch) || got == l.n-1 {
				if _, err := coll.InsertMany(context.Background(), batch, options.InsertMany().SetOrdered(false)); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
				if err := ch.Ack(last, true); err != nil {
					b.Fatal(err)
				}
			}
			continue
		}
		if got%100 == 99 || got == l.n-1 {
			if err := ch.Ack(last, true); err != nil {
				b.Fatal(err)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(l.n)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(0, "ns/op")
}
