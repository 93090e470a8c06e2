package chaos

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/taskload"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/protocol"
)

// The fault scenarios (issue #7, part 1). Each publishes 10,000 tasks (50% ccworker.noop,
// 30% ccworker.sleep(0.001-0.01), 10% ccworker.fail, 10% ccworker.flaky(1): one retry),
// starts ccworker -c 64, waits until a quarter of them have run, injects one fault, and then
// checks:
//
//   - every task id has exactly one final document (SUCCESS; FAILURE ValueError for fail;
//     flaky's SUCCESS holds 1), none missing, nothing left in the queue;
//   - duplicates: how many executions happened beyond one per (task id, retry step). Each
//     finished execution logs exactly one line (Celery's "succeeded in", "raised unexpected"
//     or "retry:"), written before its result is stored and so before its ack; a duplicate
//     is therefore a second such line for the same id and step, in any worker's log. This
//     counts executions that finished; a task killed mid-run (kill -9) and run again counts
//     once, since its first run never finished. "received" lines are counted too (extra
//     deliveries handed to a handler, run or not) as an upper bound;
//   - RSS (VmRSS every 100 ms) stays under 300 MiB; during the database outage it must also
//     stay flat (the last third of the outage no higher than the first third + 32 MiB) while
//     the broker, not ccworker, holds the waiting tasks (unacked <= prefetch);
//   - ccworker never exits by itself, reconnects and finishes on its own, and logs a handful
//     of WARN/ERROR lines about it (<= maxWarnLines), not a storm; then SIGTERM exits 0.

const (
	nTasks       = 10000
	concurrency  = 64
	prefetchN    = concurrency * 4
	maxWarnLines = 25
	rssLimitKiB  = 300 * 1024
	outage       = 30 * time.Second
	// stallLimit is how long a scenario may see no progress at all before it fails:
	// three times the longest quiet spell on a quiet machine (a 30 s outage, then the
	// reconnect backoff), so a machine three times slower still passes.
	stallLimit = 3 * time.Minute
)

type faultCtx struct {
	t       *testing.T
	name    string
	queue   string
	led     *ledger
	workers []*proc
	// set by the fault
	faultStart, faultEnd time.Time
	queueDuringFault     string // rabbitmqctl list_queues line sampled mid-fault
}

func TestFaults(t *testing.T) {
	scenarios := []struct {
		name  string
		fault func(f *faultCtx)
	}{
		{"broker-restart", func(f *faultCtx) {
			out, err := script("rmq.sh", "restart")
			if err != nil {
				f.t.Fatalf("restart RabbitMQ: %v\n%s", err, out)
			}
		}},
		{"mongo-outage-30s", func(f *faultCtx) {
			if out, err := script("ferretdb.sh", "kill", "pg"); err != nil {
				f.t.Fatalf("kill FerretDB: %v\n%s", err, out)
			}
			time.Sleep(outage / 2)
			f.queueDuringFault = queueState(f.queue)
			time.Sleep(outage - outage/2)
			if err := startMongo(); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"worker-kill-9", func(f *faultCtx) {
			w := f.workers[0]
			if err := w.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
				f.t.Fatal(err)
			}
			_, _ = w.Wait(30 * time.Second)
			f.workers = append(f.workers, startWorker(f.t, f.name+"-2", f.led, f.workerArgs("2")...))
		}},
		{"close-connection", func(f *faultCtx) {
			out, err := script("rmq.sh", "close-connections", "ccworker")
			if err != nil {
				f.t.Fatalf("close_connection: %v\n%s", err, out)
			}
			n, _ := strconv.Atoi(strings.TrimSpace(lastLine(out)))
			// Two per worker: tasks, and events + remote control on one shared connection.
			if n < 2 {
				f.t.Fatalf("closed %d ccworker connections, want 2 (tasks; events and remote control):\n%s", n, out)
			}
			f.t.Logf("%s: closed %d ccworker connections (tasks; events and remote control)", f.name, n)
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc.name, sc.fault) })
	}
}

func (f *faultCtx) workerArgs(suffix string) []string {
	return []string{"-b", ccworkerBrokerURL, "--result-backend", mongoURL + f.queue, "-Q", f.queue,
		"-c", strconv.Itoa(concurrency), "-n", f.name + "-" + suffix + "@chaos", "-l", "INFO", "--log-format", "json",
		"--drain-timeout", "20s"}
}

func runScenario(t *testing.T, name string, fault func(*faultCtx)) {
	start := time.Now()
	queue := "chaos_" + strings.ReplaceAll(name, "-", "_")
	f := &faultCtx{t: t, name: name, queue: queue, led: newLedger()}

	// Fresh queue and database.
	conn := freshQueue(t, queue)
	coll := freshResults(t, queue, options.Client().SetServerSelectionTimeout(2*time.Second).SetTimeout(10*time.Second))

	kinds := publish(t, conn, queue)
	_ = conn.Close()
	t.Logf("%s: published %d tasks in %.1f s", name, nTasks, time.Since(start).Seconds())

	f.workers = []*proc{startWorker(t, name+"-1", f.led, f.workerArgs("1")...)}
	runStart := time.Now()
	if !testharness.WaitProgress(stallLimit, 20*time.Millisecond, f.led.Finished, func() bool { return f.led.Finished() >= nTasks/4 || f.workers[0].Exited() }) {
		t.Fatalf("%s: stuck at %d finished tasks for %v before the fault (log %s)", name, f.led.Finished(), stallLimit, f.workers[0].LogPath)
	}
	if f.workers[0].Exited() {
		t.Fatalf("%s: ccworker exited before the fault: %v\n%s", name, f.workers[0].Err(), testharness.Tail(f.workers[0].Output(), 20))
	}
	t.Logf("%s: %d tasks finished after %.1f s; injecting the fault", name, f.led.Finished(), time.Since(runStart).Seconds())

	f.faultStart = time.Now()
	fault(f)
	f.faultEnd = time.Now()
	t.Logf("%s: fault over after %.1f s", name, f.faultEnd.Sub(f.faultStart).Seconds())

	// Every id gets its final document, by itself.
	var count int64
	// Progress-based: a loaded machine is slower, not stuck; only no new final
	// document (and no task finished) for stallLimit means the worker did not resume.
	progress := func() int { return int(count) + f.led.Finished() }
	recovered := testharness.WaitProgress(stallLimit, 250*time.Millisecond, progress, func() bool {
		ctx, cancel := ctxTimeout(15 * time.Second)
		defer cancel()
		n, err := coll.CountDocuments(ctx, taskload.Final)
		if err == nil {
			count = n
		}
		return count >= nTasks
	})
	recovery := time.Since(f.faultEnd)
	last := f.workers[len(f.workers)-1]
	exitedSelf := false
	for _, w := range f.workers[len(f.workers)-1:] {
		if w.Exited() {
			exitedSelf = true
			t.Errorf("%s: ccworker %s exited by itself (%v); it must ride out the fault\n%s", name, w.name, w.Err(), testharness.Tail(w.Output(), 20))
		}
	}
	if !recovered {
		t.Errorf("%s: only %d of %d final documents %.0f s after the fault, none more for %v; the worker did not resume (log %s)",
			name, count, nTasks, recovery.Seconds(), stallLimit, last.LogPath)
	}
	// The queue is empty: nothing waits, nothing is unacked.
	if recovered {
		if !testharness.WaitFor(60*time.Second, 200*time.Millisecond, func() bool {
			return strings.HasSuffix(strings.TrimSpace(queueState(queue)), "\t0\t0")
		}) {
			t.Errorf("%s: queue not empty after every result is stored: %q", name, queueState(queue))
		}
	}
	// Warm shutdown exits 0.
	if !last.Exited() {
		_ = last.Cmd.Process.Signal(syscall.SIGTERM)
		if code, ok := last.Wait(120 * time.Second); !ok || code != 0 {
			t.Errorf("%s: SIGTERM: exit code %d (exited: %v)\n%s", name, code, ok, testharness.Tail(last.Output(), 15))
		}
	}

	// Documents.
	row := summaryRow{Scenario: name, Tasks: nTasks, FaultSeconds: f.faultEnd.Sub(f.faultStart).Seconds(),
		RecoverySeconds: recovery.Seconds(), WorkerExitedSelf: exitedSelf}
	if recovered {
		row.RecoverySeconds = recovery.Seconds()
	} else {
		row.RecoverySeconds = -1
	}
	docs := readDocs(t, coll)
	var wrongExamples []string
	for i := range nTasks {
		id := taskload.ID(queue, i)
		d, ok := docs[id]
		if !ok {
			row.Missing++
			continue
		}
		if why := taskload.Check(kinds[i], d); why != "" {
			row.Wrong++
			if len(wrongExamples) < 5 {
				wrongExamples = append(wrongExamples, id+": "+why)
			}
			continue
		}
		row.FinalDocs++
	}
	if extra := len(docs) - row.FinalDocs - row.Wrong; extra > 0 {
		t.Errorf("%s: %d documents for ids that were never published", name, extra)
	}
	if row.Missing > 0 || row.Wrong > 0 {
		t.Errorf("%s: %d missing, %d in the wrong state, e.g. %v", name, row.Missing, row.Wrong, wrongExamples)
	}

	// Duplicates, from every worker's log.
	for i := range nTasks {
		id := taskload.ID(queue, i)
		row.DupExecuted += max(0, f.led.Ran(id, taskload.Done)-1)
		want := 1
		if kinds[i] == taskload.Flaky {
			row.DupExecuted += max(0, f.led.Ran(id, taskload.Retried)-1)
			want = 2
		}
		row.DupReceived += max(0, f.led.Received(id)-want)
	}

	// RSS.
	var peak, peakFault int64
	for _, w := range f.workers {
		peak = max(peak, w.peakRSS(time.Time{}, time.Time{}))
		peakFault = max(peakFault, w.peakRSS(f.faultStart, f.faultEnd))
	}
	row.PeakRSSMiB, row.PeakRSSFaultMiB = float64(peak)/1024, float64(peakFault)/1024
	if peak > rssLimitKiB {
		t.Errorf("%s: peak RSS %.1f MiB > %d MiB", name, float64(peak)/1024, rssLimitKiB/1024)
	}
	if name == "mongo-outage-30s" {
		w := f.workers[0]
		third := f.faultEnd.Sub(f.faultStart) / 3
		first := w.peakRSS(f.faultStart, f.faultStart.Add(third))
		lastThird := w.peakRSS(f.faultEnd.Add(-third), f.faultEnd)
		t.Logf("%s: RSS during the outage: first third peak %.1f MiB, last third peak %.1f MiB; queue mid-outage (name ready unacked): %q",
			name, float64(first)/1024, float64(lastThird)/1024, f.queueDuringFault)
		if lastThird > first+32*1024 {
			t.Errorf("%s: RSS grew during the outage: %.1f -> %.1f MiB (buffering instead of back-pressure?)",
				name, float64(first)/1024, float64(lastThird)/1024)
		}
		if fs := strings.Fields(f.queueDuringFault); len(fs) == 3 {
			ready, _ := strconv.Atoi(fs[1])
			unacked, _ := strconv.Atoi(fs[2])
			if unacked > prefetchN {
				t.Errorf("%s: %d unacked messages during the outage > prefetch %d", name, unacked, prefetchN)
			}
			if ready == 0 {
				t.Errorf("%s: the queue was drained during the outage (ready 0, unacked %d): tasks buffered in the worker?", name, unacked)
			}
		} else {
			t.Errorf("%s: could not read the queue during the outage: %q", name, f.queueDuringFault)
		}
	}

	// Warnings: the whole run (each transition once; reconnect attempts are few with backoff).
	warns := f.led.warningsBetween(runStart, time.Now())
	row.WarnLines = len(warns)
	var wl []string
	for _, w := range warns {
		wl = append(wl, fmt.Sprintf("  +%5.1fs %s %s %s: %s %s", w.at.Sub(f.faultStart).Seconds(), w.worker, w.line.Level, w.line.Logger, w.line.Msg, taskload.Trunc(w.line.Error, 160)))
	}
	t.Logf("%s: %d WARN/ERROR lines (times relative to the fault):\n%s", name, len(warns), strings.Join(wl, "\n"))
	if len(warns) > maxWarnLines {
		t.Errorf("%s: %d WARN/ERROR lines about the fault: a storm (limit %d)", name, len(warns), maxWarnLines)
	}
	switch name {
	case "mongo-outage-30s":
		if !f.led.sawMessage("result store is writable again") {
			t.Errorf("%s: no 'result store is writable again' line", name)
		}
	case "broker-restart", "close-connection":
		if !f.led.sawMessage("broker connection restored") {
			t.Errorf("%s: no 'broker connection restored' line", name)
		}
	}
	addSummary(row)
	t.Logf("%s: %d final docs, %d missing, %d wrong, %d duplicate executions (%d extra deliveries), peak RSS %.1f MiB (%.1f during the fault), %d warn lines, recovered %.1f s after the fault; scenario took %.0f s",
		name, row.FinalDocs, row.Missing, row.Wrong, row.DupExecuted, row.DupReceived, row.PeakRSSMiB, row.PeakRSSFaultMiB,
		row.WarnLines, row.RecoverySeconds, time.Since(start).Seconds())
}

// publish sends the 10,000 tasks with publisher confirms; it returns each one's kind.
func publish(t *testing.T, conn *amqp.Connection, queue string) []taskload.Kind {
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, nTasks))
	rng := rand.New(rand.NewPCG(7, 7))
	kinds := make([]taskload.Kind, nTasks)
	for i := range nTasks {
		var req *protocol.Request
		kinds[i], req = taskload.Request(queue, i, rng, "chaos")
		msg, err := taskload.Publishing(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Publish("", queue, false, false, msg); err != nil {
			t.Fatal(err)
		}
	}
	for range nTasks {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatal("publish nacked")
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("publish confirms timed out")
		}
	}
	return kinds
}

// readDocs reads the result documents of coll by id.
func readDocs(t *testing.T, coll *mongo.Collection) map[string]taskload.Doc {
	ctx, cancel := ctxTimeout(3 * time.Minute)
	defer cancel()
	docs, dups, err := taskload.ReadDocs(ctx, coll)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range dups {
		t.Errorf("two documents with _id %s", id) // cannot happen with a unique _id; checked anyway
	}
	return docs
}

// queueState is rabbitmqctl's "name<TAB>ready<TAB>unacked" line for queue ("" if unknown).
func queueState(queue string) string {
	out, err := script("rmq.sh", "ctl", "list_queues", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, queue+"\t") {
			return line
		}
	}
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
