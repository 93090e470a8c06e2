package clustertest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// scenario is one run: a quorum queue, a result database, a worker, a publisher and a
// listener for the worker's events, all fresh.
type scenario struct {
	t     *testing.T
	name  string
	queue string
	node  string // the worker's node name
	db    *mongo.Database
	cfg   string // celeryconfig.py
	begin time.Time

	w   *worker
	l   *listener
	pub *publisher

	consumed, events, inspect float64 // worst over the faults, seconds
}

func newScenario(t *testing.T, name string) *scenario {
	suffix := fmt.Sprintf("%04x", rand.IntN(1<<16))
	s := &scenario{t: t, name: name, queue: "cluster_" + name + "_" + suffix, node: name + "@cluster", begin: time.Now()}
	_, s.db = resultDB(t, "ccworker_cluster_"+name+"_"+suffix)
	// The URL list as a Python list (a ';' string works too), the queue as Celery 5.5+
	// declares a quorum queue, acks after the result is stored.
	s.cfg = filepath.Join(workDir, name+".celeryconfig.py")
	src := fmt.Sprintf(`broker_url = [%s]
broker_failover_strategy = 'round-robin'
result_backend = '%s%s'
task_acks_late = True
task_queues = [{'name': '%s', 'exchange': '%s', 'routing_key': '%s', 'queue_arguments': {'x-queue-type': 'quorum'}}]
`, quoteList(urls(1, 2, 3)), mongoURL, s.db.Name(), s.queue, s.queue, s.queue)
	if err := os.WriteFile(s.cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	declareQueue(t, s.queue, 1) // cc1 leads it, as it holds the worker's connections
	return s
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return strings.Join(q, ", ")
}

func (s *scenario) startWorker() {
	s.w = startWorker(s.t, s.node, s.cfg, s.queue)
}

// waitReady waits until the worker answers ping through node n.
func (s *scenario) waitReady(n int) {
	if _, ok := pingUntil(s.node, n, time.Now().Add(90*time.Second)); !ok {
		s.t.Fatalf("%s never answered ping; see %s", s.node, s.w.log.Name())
	}
}

// measure waits (at most 90 s) until, after a fault at tf, tasks are received again,
// a worker event arrived and inspect ping answered through the live node, and keeps the
// worst figures. The consumer's failover is when its connection was opened again (tf if
// it was not interrupted); events and inspect must follow within 5 s of it.
func (s *scenario) measure(tf time.Time, live int) {
	deadline := tf.Add(90 * time.Second)
	pinged := make(chan time.Time, 1)
	go func() { at, _ := pingUntil(s.node, live, deadline); pinged <- at }()
	var consumerBack, received, event time.Time
	for time.Now().Before(deadline) {
		if at, ok := s.w.reconnectedAfter("ccworker "+s.node, tf); ok {
			consumerBack = at
		}
		from := consumerBack
		if from.IsZero() {
			from = tf
		}
		received, _ = s.w.receivedAfter(from)
		event, _ = s.l.firstAfter(tf)
		if !received.IsZero() && !event.IsZero() && !consumerBack.IsZero() {
			break
		}
		if !received.IsZero() && !event.IsZero() && time.Since(tf) > 15*time.Second {
			break // the consumer's connection was not on the faulted node
		}
		time.Sleep(100 * time.Millisecond)
	}
	inspected := <-pinged
	if consumerBack.IsZero() {
		consumerBack = tf
	}
	secs := func(at time.Time, what string) float64 {
		if at.IsZero() {
			s.t.Errorf("%s: %s not back within 90 s of the fault", s.name, what)
			return 90
		}
		return max(0, at.Sub(tf).Seconds())
	}
	c, e, i := secs(received, "tasks"), secs(event, "worker events"), secs(inspected, "inspect ping")
	s.t.Logf("%s: after the fault: consumer reconnected %.2f s, tasks received %.2f s, events %.2f s, inspect %.2f s",
		s.name, consumerBack.Sub(tf).Seconds(), c, e, i)
	back := consumerBack.Sub(tf).Seconds()
	if e > back+5 || i > back+5 {
		s.t.Errorf("%s: events (%.1f s) and inspect (%.1f s) must answer within 5 s of the consumer's failover (%.1f s)",
			s.name, e, i, back)
	}
	s.consumed, s.events, s.inspect = max(s.consumed, c), max(s.events, e), max(s.inspect, i)
}

// finish waits for every published task's final document, stops the worker and checks
// and records the outcome.
func (s *scenario) finish() {
	t := s.t
	s.pub.wait(t)
	published := int(s.pub.published.Load())
	// Countdowns end 20 s after the last publish at most, parked ones up to a delay
	// queue's TTL later; a minute without a new document means the rest is not coming.
	var final int64
	progress := time.Now()
	for time.Since(progress) < 60*time.Second {
		if n, err := finalCount(s.db); err == nil && n != final {
			final, progress = n, time.Now()
		}
		if final >= int64(nTasks) {
			break
		}
		time.Sleep(time.Second)
	}
	s.w.stop(t)
	s.l.close()
	docs := readDocs(t, s.db)
	r := row{Scenario: s.name, Published: published, Republished: int(s.pub.republished.Load()),
		DupExecuted: s.w.duplicates(), Consumed: s.consumed, EventsBack: s.events, InspectBack: s.inspect}
	var missing []string
	for i, k := range s.pub.kinds {
		id := taskID(s.queue, i)
		d, ok := docs[id]
		switch {
		case !ok || (d.Status != "SUCCESS" && d.Status != "FAILURE"):
			r.Missing++
			if len(missing) < 10 {
				missing = append(missing, id)
			}
		default:
			r.FinalDocs++
			if msg := checkDoc(k, d); msg != "" {
				r.Wrong++
				t.Errorf("%s: %s", id, msg)
			}
		}
	}
	r.Seconds = time.Since(s.begin).Seconds()
	addSummary(r)
	t.Logf("%s: published %d (%d again), %d final documents (last count %d), %d missing %v, %d duplicate executions; %d warn/error lines; %.0f s",
		s.name, r.Published, r.Republished, r.FinalDocs, final, r.Missing, missing, r.DupExecuted, len(s.w.warnings), r.Seconds)
	if r.Missing > 0 {
		t.Errorf("%s: %d tasks lost (no final document), e.g. %v; worker log %s", s.name, r.Missing, missing, s.w.log.Name())
	}
}

func sleep(d time.Duration) { time.Sleep(d) }

func mustRMQ(t *testing.T, args ...string) {
	t.Helper()
	t0 := time.Now()
	if out, err := rmq(args...); err != nil {
		t.Fatalf("rmq.sh %v: %v\n%s", args, err, out)
	}
	t.Logf("rmq.sh %s: %.1f s", strings.Join(args, " "), time.Since(t0).Seconds())
}

// TestKillNodeUnderLoad: kill -9 of cc1, which holds every connection of the worker and
// leads the quorum queue, 8 s into the load; it comes back 15 s later.
func TestKillNodeUnderLoad(t *testing.T) {
	s := newScenario(t, "kill9")
	s.startWorker()
	s.l = startListener(s.node, 2)
	s.waitReady(2)
	s.pub = startPublisher(s.queue, 2, 3, 1)
	sleep(8 * time.Second)
	tf := time.Now()
	mustRMQ(t, "kill", "1")
	s.measure(tf, 2)
	sleep(time.Until(tf.Add(15 * time.Second)))
	mustRMQ(t, "start-node", "1")
	s.finish()
}

// TestNodeDownAtStart: cc1, first in the worker's URL list and the queue's first leader,
// is down when the worker starts; it comes back 10 s into the load.
func TestNodeDownAtStart(t *testing.T) {
	s := newScenario(t, "down-at-start")
	mustRMQ(t, "kill", "1")
	s.l = startListener(s.node, 2)
	tf := time.Now()
	s.startWorker()
	s.pub = startPublisher(s.queue, 2, 3, 1)
	s.measure(tf, 2)
	sleep(time.Until(tf.Add(10 * time.Second)))
	mustRMQ(t, "start-node", "1")
	s.finish()
}

// TestRollingRestart: cc1, cc2, cc3 are stopped and started again one after the other
// under load, as an upgrade does; the worker follows from node to node.
func TestRollingRestart(t *testing.T) {
	s := newScenario(t, "rolling-restart")
	s.startWorker()
	s.l = startListener(s.node, 3)
	s.waitReady(3)
	s.pub = startPublisher(s.queue, 2, 3, 1)
	sleep(4 * time.Second)
	for n := 1; n <= nodes; n++ {
		live := n%nodes + 1
		s.l.moveTo(live)
		sleep(500 * time.Millisecond)
		tf := time.Now()
		mustRMQ(t, "stop-node", fmt.Sprint(n))
		s.measure(tf, live)
		mustRMQ(t, "start-node", fmt.Sprint(n))
		sleep(2 * time.Second)
	}
	s.finish()
}
