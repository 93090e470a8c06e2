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

	"github.com/ccworker/ccworker/internal/taskload"
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
	probes                    int
}

func newScenario(t *testing.T, name string) *scenario {
	suffix := fmt.Sprintf("%04x", rand.IntN(1<<16))
	s := &scenario{t: t, name: name, queue: "cluster_" + name + "_" + suffix, node: name + "@cluster", begin: time.Now()}
	_, s.db = resultDB(t, "ccworker_cluster_"+name+"_"+suffix)
	// The URL list as a Python list (a ';' string works too), quorum queues as a Celery
	// 5.5+ deployment asks for them, acks after the result is stored.
	s.cfg = filepath.Join(workDir, name+".celeryconfig.py")
	src := fmt.Sprintf(`broker_url = [%s]
broker_failover_strategy = 'round-robin'
result_backend = '%s%s'
task_acks_late = True
task_default_queue_type = 'quorum'
worker_detect_quorum_queues = True
`, quoteList(urls(1, 2, 3)), mongoURL, s.db.Name())
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
		s.t.Fatalf("%s never answered ping; see %s", s.node, s.w.LogPath)
	}
}

// measure runs fault (nil: the fault is already there, e.g. a node down when the worker
// starts at tf) and waits, at most 90 s, until tasks are consumed again, a worker event
// arrives and inspect ping answers through the live node; it keeps the worst figures.
// They count from the moment the fault hit the worker: when its task consumer lost its
// connection (a graceful stop closes it seconds after it began), or tf. "Consumed again"
// is when a probe task published through the live node after that moment was received.
// Events and inspect must answer within 5 s of the consumer's failover.
func (s *scenario) measure(tf time.Time, live int, fault func()) {
	faulted := make(chan struct{})
	go func() {
		defer close(faulted)
		if fault != nil {
			fault()
		}
	}()
	hit := tf
	if fault != nil {
		for time.Since(tf) < 30*time.Second {
			if at, ok := s.w.lostAfter(tf); ok {
				hit = at
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline := hit.Add(90 * time.Second)
	pinged := make(chan time.Time, 1)
	go func() { at, _ := pingUntil(s.node, live, deadline); pinged <- at }()
	s.probes++
	id := fmt.Sprintf("probe-%s-%d", s.queue, s.probes)
	if !probe(s.queue, id, live, deadline) {
		s.t.Errorf("%s: could not publish a probe task through cc%d for 90 s", s.name, live)
	}
	var received, event time.Time
	for time.Now().Before(deadline) {
		received, _ = s.w.probeReceived(id)
		event, _ = s.l.firstAfter(hit)
		if !received.IsZero() && !event.IsZero() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	consumerBack := hit
	if at, ok := s.w.reconnectedAfter("ccworker "+s.node, tf); ok {
		consumerBack = at
	}
	inspected := <-pinged
	<-faulted
	secs := func(at time.Time, what string) float64 {
		if at.IsZero() {
			s.t.Errorf("%s: %s not back within 90 s of the fault", s.name, what)
			return 90
		}
		return max(0, at.Sub(hit).Seconds())
	}
	c, e, i := secs(received, "tasks"), secs(event, "worker events"), secs(inspected, "inspect ping")
	back := consumerBack.Sub(hit).Seconds()
	s.t.Logf("%s: the fault hit the worker %.2f s after it began; then: consumer reconnected %.2f s, a new task received %.2f s, events %.2f s, inspect %.2f s",
		s.name, hit.Sub(tf).Seconds(), back, c, e, i)
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
	final, stranded := s.waitFinal()
	s.w.stop(t)
	s.l.close()
	docs := readDocs(t, s.db)
	r := row{Scenario: s.name, Published: published, Republished: int(s.pub.republished.Load()), Stranded: stranded,
		DupExecuted: s.w.duplicates(), Consumed: s.consumed, EventsBack: s.events, InspectBack: s.inspect}
	var missing []string
	for i, k := range s.pub.kinds {
		id := taskload.ID(s.queue, i)
		d, ok := docs[id]
		switch {
		case !ok || (d.Status != "SUCCESS" && d.Status != "FAILURE"):
			r.Missing++
			if len(missing) < 10 {
				missing = append(missing, id)
			}
		default:
			r.FinalDocs++
			if msg := taskload.Check(k, d); msg != "" {
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
		t.Errorf("%s: %d tasks lost (no final document), e.g. %v; worker log %s", s.name, r.Missing, missing, s.w.LogPath)
	}
}

// waitFinal waits for the final documents of every task and probe and returns the last
// count. Countdowns end 20 s after the last publish at most, parked ones up to a delay
// queue's TTL later; a minute without a new document means the rest is not coming. After
// 15 s without one it looks for messages the broker stranded in a delay queue and moves
// that queue's leader (unstrand), counting them.
func (s *scenario) waitFinal() (final int64, stranded int) {
	progress, looked := time.Now(), false
	for time.Since(progress) < 60*time.Second {
		if n, err := finalCount(s.db); err == nil && n != final {
			final, progress, looked = n, time.Now(), false
		}
		if final >= int64(nTasks+s.probes) {
			break
		}
		if !looked && time.Since(progress) > 15*time.Second {
			looked = true
			stranded += s.unstrand()
		}
		time.Sleep(time.Second)
	}
	return final, stranded
}

// unstrand moves the leader of every delay queue whose dead-letter worker stopped after
// the fault (stranded_test.go) and returns how many messages they held.
func (s *scenario) unstrand() int {
	const live = 2 // every node is back by now; cc2 answers
	qs, err := strandedDelayQueues(live)
	if err != nil {
		s.t.Errorf("%s: %v", s.name, err)
		return 0
	}
	n := 0
	for _, q := range qs {
		n += q.stranded
		s.t.Logf("%s: the broker stranded %d messages in %s (led by %s): its dead-letter worker stopped after the failover; moving the leader",
			s.name, q.stranded, q.name, q.leader)
		if err := moveLeader(live, q); err != nil {
			s.t.Errorf("%s: %v", s.name, err)
		}
	}
	return n
}

func sleep(d time.Duration) { time.Sleep(d) }

// mustRMQ runs rmq.sh; a failure is reported (Errorf: it may run on a fault's goroutine).
func mustRMQ(t *testing.T, args ...string) {
	t.Helper()
	t0 := time.Now()
	if out, err := rmq(args...); err != nil {
		t.Errorf("rmq.sh %v: %v\n%s", args, err, out)
		return
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
	s.measure(tf, 2, func() { mustRMQ(t, "kill", "1") })
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
	s.measure(tf, 2, nil)
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
		s.measure(time.Now(), live, func() { mustRMQ(t, "stop-node", fmt.Sprint(n)) })
		mustRMQ(t, "start-node", fmt.Sprint(n))
		sleep(2 * time.Second)
	}
	s.finish()
}
