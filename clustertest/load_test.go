package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/taskload"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
)

const (
	nTasks    = 5000
	batch     = 25                     // published together every tick
	tick      = 100 * time.Millisecond // 25 per 100 ms: 250 tasks/s
	countdown = 10                     // percent of tasks with a countdown of 1-20 s
)

// message builds task i of the load (taskload.Request), and for 10 % of them a countdown
// of 1-20 s, so some are held in memory and some parked on the broker, before and after
// the fault.
func message(queue string, i int, rng *rand.Rand) (taskload.Kind, amqp.Publishing, error) {
	k, req := taskload.Request(queue, i, rng, "cluster")
	if rng.IntN(100) < countdown {
		req.ETA = time.Now().UTC().Add(time.Second + time.Duration(rng.Int64N(int64(19*time.Second))))
	}
	msg, err := taskload.Publishing(req)
	return k, msg, err
}

// publisher sends the tasks at a steady pace with publisher confirms, through its own
// failover list; a batch whose confirms are lost with a node is published again (so a
// task may be queued twice: counted in republished).
type publisher struct {
	queue string
	urls  []string
	kinds []taskload.Kind

	published   atomic.Int64 // confirmed
	republished atomic.Int64
	done        chan struct{}
	err         error
}

func startPublisher(queue string, order ...int) *publisher {
	p := &publisher{queue: queue, urls: urls(order...), kinds: make([]taskload.Kind, nTasks), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = p.run()
	}()
	return p
}

func (p *publisher) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the publisher did not finish in 5 minutes")
	}
	if p.err != nil {
		t.Fatalf("publisher: %v", p.err)
	}
}

func (p *publisher) run() error {
	d, err := prefetch.NewDialer(prefetch.Config{URLs: p.urls, ConnectionName: "clustertest publisher"})
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(13, 13))
	msgs := make([]amqp.Publishing, nTasks)
	for i := range nTasks {
		if p.kinds[i], msgs[i], err = message(p.queue, i, rng); err != nil {
			return err
		}
	}
	var conn *amqp.Connection
	var ch *amqp.Channel
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	sent := make([]bool, nTasks)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	giveUp := time.Now().Add(4 * time.Minute)
	for start := 0; start < nTasks; start += batch {
		<-ticker.C
		pending := make([]int, 0, batch)
		for i := start; i < min(start+batch, nTasks); i++ {
			pending = append(pending, i)
		}
		for len(pending) > 0 {
			if time.Now().After(giveUp) {
				return fmt.Errorf("could not publish task %d for 4 minutes", pending[0])
			}
			if ch == nil {
				if conn != nil {
					_ = conn.Close()
				}
				conn, ch, err = openConfirm(d)
				if err != nil {
					time.Sleep(200 * time.Millisecond)
					continue
				}
			}
			var failed []int
			if failed, err = p.publishBatch(ch, msgs, pending, sent); err != nil {
				ch = nil
			}
			pending = failed
		}
	}
	return nil
}

func openConfirm(d *prefetch.Dialer) (*amqp.Connection, *amqp.Channel, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := d.Dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

// publishBatch publishes the pending tasks and waits for their confirms; it returns the
// ones to publish again, and an error when the channel is no longer usable.
func (p *publisher) publishBatch(ch *amqp.Channel, msgs []amqp.Publishing, pending []int, sent []bool) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	confs := make([]*amqp.DeferredConfirmation, len(pending))
	for k, i := range pending {
		if sent[i] {
			p.republished.Add(1)
		}
		sent[i] = true
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", p.queue, false, false, msgs[i])
		if err != nil {
			return pending, err
		}
		confs[k] = c
	}
	var failed []int
	var chErr error
	for k, c := range confs {
		ok, err := c.WaitContext(ctx)
		switch {
		case err != nil:
			failed, chErr = append(failed, pending[k]), err
		case !ok:
			failed = append(failed, pending[k]) // nacked: not queued, send again
		default:
			p.published.Add(1)
		}
	}
	if chErr == nil && ch.IsClosed() {
		chErr = errors.New("channel closed")
	}
	return failed, chErr
}

// declareQueue declares the quorum queue (and its exchange, as Celery does) through node
// n, which makes n its first leader.
func declareQueue(t *testing.T, queue string, n int) {
	t.Helper()
	conn, err := amqp.Dial(amqpGo(nodeURL(n)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := prefetch.Declare(conn, []prefetch.Queue{{Name: queue, Exchange: queue, ExchangeType: "direct",
		RoutingKey: queue, Durable: true, Args: amqp.Table{"x-queue-type": "quorum"}}}); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
}

// amqpGo turns kombu's "//" (vhost "/") into amqp091's "/%2F".
func amqpGo(u string) string { return strings.TrimSuffix(u, "//") + "/%2F" }

// ---------------------------------------------------------------- worker events

// listener records the worker events of one node, from its own connection to a node the
// scenario is not faulting (moveTo changes it).
type listener struct {
	hostname string
	mu       sync.Mutex
	seen     []time.Time
	node     int
	conn     *amqp.Connection
	stop     chan struct{}
	done     chan struct{}
}

func startListener(hostname string, node int) *listener {
	l := &listener{hostname: hostname, node: node, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *listener) run() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		l.mu.Lock()
		n := l.node
		l.mu.Unlock()
		if err := l.session(n); err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (l *listener) session(n int) error {
	conn, err := amqp.DialConfig(amqpGo(nodeURL(n)), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.conn = conn
	l.mu.Unlock()
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare("celeryev", "topic", true, false, false, false, nil); err != nil {
		return err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return err
	}
	if err := ch.QueueBind(q.Name, "worker.#", "celeryev", false, nil); err != nil {
		return err
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return err
	}
	for {
		select {
		case <-l.stop:
			return nil
		case d, ok := <-ds:
			if !ok {
				return errors.New("closed")
			}
			var ev struct {
				Hostname string `json:"hostname"`
			}
			if json.Unmarshal(d.Body, &ev) == nil && ev.Hostname == l.hostname {
				l.mu.Lock()
				l.seen = append(l.seen, time.Now())
				l.mu.Unlock()
			}
		}
	}
}

// moveTo reconnects the listener to node n.
func (l *listener) moveTo(n int) {
	l.mu.Lock()
	l.node = n
	conn := l.conn
	l.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

func (l *listener) firstAfter(t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.seen {
		if at.After(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (l *listener) close() {
	close(l.stop)
	l.moveTo(0)
	<-l.done
}

// ---------------------------------------------------------------- the worker

type connected struct {
	at         time.Time
	connection string
	broker     string
}

// worker is one ccworker process and what its log says.
type worker struct {
	*testharness.Logged
	name  string
	tasks *taskload.Ledger

	mu        sync.Mutex
	probes    map[string]time.Time // probe id -> first received
	connected []connected
	lost      []time.Time // the task consumer's connection losses
	warnings  []string
}

func startWorker(t *testing.T, name, config, queue string) *worker {
	t.Helper()
	w := &worker{name: name, tasks: taskload.NewLedger(), probes: map[string]time.Time{}}
	cmd := exec.Command(binary, "--config", config, "-Q", queue, "-n", name, "-c", "32",
		"-l", "INFO", "--log-format", "json")
	cmd.Dir = workDir
	// A worker must not outlive a test binary that timed out or was killed (StartLogged
	// sets Pdeathsig).
	var err error
	if w.Logged, err = testharness.StartLogged(cmd, testharness.LogOptions{
		LogPath: filepath.Join(workDir, name+".log"), OnLine: w.add}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.stop(t) })
	return w
}

func (w *worker) add(line []byte) {
	ll, ok := taskload.ParseLogLine(line)
	if !ok {
		return
	}
	at, err := time.Parse("2006-01-02T15:04:05.000Z0700", ll.TS)
	if err != nil {
		at = time.Now()
	}
	id, ev := w.tasks.Add(ll.Msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev {
	case taskload.Received:
		if _, seen := w.probes[id]; strings.HasPrefix(id, "probe-") && !seen {
			w.probes[id] = at
		}
		return
	case taskload.Retried, taskload.Done:
		return
	}
	if ll.Msg == "broker connection lost; reconnecting" {
		w.lost = append(w.lost, at)
	}
	if ll.Msg == "connected to the broker" {
		w.connected = append(w.connected, connected{at, ll.Connection, ll.Broker})
	}
	if ll.Level == "warn" || ll.Level == "error" {
		w.warnings = append(w.warnings, ll.Msg+" "+ll.Error)
	}
}

// reconnectedAfter is when the connection whose name starts with prefix was first
// (re)opened after t0.
func (w *worker) reconnectedAfter(prefix string, t0 time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.connected {
		if strings.HasPrefix(c.connection, prefix) && !c.at.Before(t0) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

func (w *worker) lostAfter(t0 time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.lost {
		if !at.Before(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (w *worker) probeReceived(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.probes[id]
	return at, ok
}

// duplicates counts finished executions beyond one per (id, step).
func (w *worker) duplicates() int { return w.tasks.Duplicates() }

func (w *worker) stop(t *testing.T) {
	if w.Exited() {
		return
	}
	_ = w.Cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := w.Wait(60 * time.Second); !ok {
		t.Errorf("%s did not stop 60 s after SIGTERM; killed", w.name)
		w.Kill()
	}
}

// pingUntil runs `ccworker inspect ping` against the worker through node n until it
// answers, and returns when it did.
func pingUntil(name string, n int, deadline time.Time) (time.Time, bool) {
	for time.Now().Before(deadline) {
		cmd := exec.Command(binary, "inspect", "ping", "-d", name, "-t", "0.5", "-b", nodeURL(n))
		cmd.Dir = workDir
		if cmd.Run() == nil {
			return time.Now(), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, false
}

// ---------------------------------------------------------------- results

func resultDB(t *testing.T, name string) (*mongo.Client, *mongo.Database) {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(mongoURL))
	if err != nil {
		t.Fatal(err)
	}
	db := client.Database(name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if !t.Failed() {
			_ = db.Drop(ctx)
		}
		_ = client.Disconnect(ctx)
	})
	return client, db
}

func finalCount(db *mongo.Database) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return db.Collection("celery_taskmeta").CountDocuments(ctx, taskload.Final)
}

func readDocs(t *testing.T, db *mongo.Database) map[string]taskload.Doc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	docs, _, err := taskload.ReadDocs(ctx, db.Collection("celery_taskmeta"))
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// probe publishes one ccworker.noop task with id through node n, retrying until the
// broker confirms it (the queue may have no leader for a moment), and tells whether it
// did before deadline.
func probe(queue, id string, n int, deadline time.Time) bool {
	req := &protocol.Request{ID: id, RootID: id, Task: "ccworker.noop", Args: []any{}, Kwargs: map[string]any{}}
	msg, err := taskload.Publishing(req)
	if err != nil {
		return false
	}
	for time.Now().Before(deadline) {
		if publishOne(nodeURL(n), queue, msg) == nil {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

func publishOne(url, queue string, msg amqp.Publishing) error {
	conn, err := amqp.DialConfig(amqpGo(url), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
	if err != nil {
		return err
	}
	ok, err := c.WaitContext(ctx)
	if err == nil && !ok {
		err = errors.New("nacked")
	}
	return err
}
