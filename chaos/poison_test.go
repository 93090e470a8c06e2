package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/taskload"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/protocol"
)

// poisonTasks is how many valid tasks surround the bad-input catalogue (issue #11).
const poisonTasks = 10000

// badMessage is one entry of the bad-input catalogue: a message, and the status of the
// document it must leave ("" for none: settled without a result, as Celery does).
type badMessage struct {
	name   string
	msg    amqp.Publishing
	id     string // the _id its document is stored under
	status string
}

func badCatalogue(t *testing.T, queue string) []badMessage {
	var out []badMessage
	add := func(name, status string, r *protocol.Request, edit func(*amqp.Publishing)) {
		id := fmt.Sprintf("%s-bad-%02d", queue, len(out))
		if r.ID == "" {
			r.ID = id
		}
		if r.Kwargs == nil {
			r.Kwargs = map[string]any{}
		}
		if r.Args == nil {
			r.Args = []any{}
		}
		p, err := taskload.Publishing(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if edit != nil {
			edit(&p)
		}
		// The store keeps an id as Document escapes it: NUL as the text \x00.
		out = append(out, badMessage{name: name, msg: p, id: strings.ReplaceAll(r.ID, "\x00", `\x00`), status: status})
	}
	deep := any(int64(1))
	for range 200 {
		deep = []any{deep}
	}
	add("name with NUL, ESC, BEL, CR", "FAILURE", &protocol.Request{Task: "ccworker.add\x00\x1b[2J\x07\r", Args: []any{int64(1), int64(2)}}, nil)
	add("name with a forged log line", "FAILURE", &protocol.Request{Task: "ccworker.add\n[2026-12-02 14:00:00,000: INFO/MainProcess] Task ccworker.add[FAKE] received FAKE LOG LINE"}, nil)
	add("name with C1 controls and DEL", "FAILURE", &protocol.Request{Task: "ccworker.add\u009b31m\u0085\x7f"}, nil)
	add("name with invalid UTF-8", "FAILURE", &protocol.Request{Task: "ccworker.\xff\xfe"}, nil)
	add("id with NUL", "SUCCESS", &protocol.Request{ID: queue + "-bad-04\x00", Task: "ccworker.echo"}, nil)
	add("argument with NUL", "SUCCESS", &protocol.Request{Task: "ccworker.echo", Args: []any{"a\x00b"}}, nil)
	add("kwargs keys with $ and .", "SUCCESS", &protocol.Request{Task: "ccworker.echo", Kwargs: map[string]any{"$where": int64(1), "a.b": int64(2)}}, nil)
	add("NaN and infinities", "SUCCESS", &protocol.Request{Task: "ccworker.echo", Args: []any{math.NaN(), math.Inf(1)}}, nil)
	add("arguments nested 200 levels", "SUCCESS", &protocol.Request{Task: "ccworker.echo", Args: []any{deep}}, nil)
	add("result over 16 MiB", "SUCCESS", &protocol.Request{Task: "ccworker.echo", Args: []any{strings.Repeat("x", 9<<20)}}, nil)
	add("body over --max-message-size", "", &protocol.Request{Task: "ccworker.echo", Args: []any{strings.Repeat("y", 13<<20)}}, nil)
	add("undecodable body", "", &protocol.Request{Task: "ccworker.add"}, func(p *amqp.Publishing) { p.Body = []byte(`[[1, 2], {`) })
	add("protocol 1, retries not an integer", "", &protocol.Request{Task: "ccworker.add"}, func(p *amqp.Publishing) {
		id := p.CorrelationId
		p.Headers = amqp.Table{}
		p.Body = []byte(`{"task": "ccworker.add", "id": "` + id + `", "args": [1, 2], "kwargs": {}, "retries": 1e400, "utc": true}`)
	})
	return out
}

// TestPoisonAmongValidTasks is issue #11's measurement: the bad-input catalogue in the
// middle of 10,000 valid tasks. Every valid task gets its result, every bad message with
// an id its document (a FAILURE for a bad name), nothing stays unacked, and the log has one
// JSON record per line with no raw control character.
func TestPoisonAmongValidTasks(t *testing.T) {
	start := time.Now()
	queue := "chaos_poison"
	conn := freshQueue(t, queue)
	coll := freshResults(t, queue, options.Client().SetTimeout(time.Minute))

	bad := badCatalogue(t, queue)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, poisonTasks+len(bad)))
	for i := range poisonTasks {
		if i == poisonTasks/2 {
			for _, b := range bad {
				if err := ch.Publish("", queue, false, false, b.msg); err != nil {
					t.Fatal(err)
				}
			}
		}
		id := taskload.ID(queue, i)
		msg, err := taskload.Publishing(&protocol.Request{ID: id, Task: "ccworker.add", Args: []any{int64(i), int64(1)}, Kwargs: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Publish("", queue, false, false, msg); err != nil {
			t.Fatal(err)
		}
	}
	for range poisonTasks + len(bad) {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatal("publish nacked")
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("publish confirms timed out")
		}
	}
	_ = ch.Close()
	t.Logf("published %d valid tasks with %d bad messages in the middle in %.1f s", poisonTasks, len(bad), time.Since(start).Seconds())

	runStart := time.Now()
	w := startWorker(t, "poison", nil, "-b", ccworkerBrokerURL, "--result-backend", mongoURL+queue, "-Q", queue,
		"-c", "64", "-n", "poison@chaos", "-l", "INFO", "--log-format", "json", "--max-message-size", strconv.Itoa(12<<20))
	var stored int64
	finished := testharness.WaitProgress(stallLimit, 500*time.Millisecond, func() int { return int(stored) }, func() bool {
		ctx, cancel := ctxTimeout(30 * time.Second)
		defer cancel()
		if n, err := coll.CountDocuments(ctx, bson.D{}); err == nil {
			stored = n
		}
		return stored >= int64(poisonTasks) && strings.HasSuffix(strings.TrimSpace(queueState(queue)), "\t0\t0") || w.Exited()
	})
	took := time.Since(runStart)
	state := queueState(queue)
	if w.Exited() {
		t.Fatalf("ccworker exited: %v\n%s", w.Err(), testharness.Tail(w.Output(), 20))
	}
	if !finished {
		t.Errorf("stuck: %d documents, queue %q, no progress for %v (log %s)", stored, state, stallLimit, w.LogPath)
	}

	// Every valid result, every bad document, nothing unacked.
	docs := readDocs(t, coll)
	var missing, wrong []string
	for i := range poisonTasks {
		id := taskload.ID(queue, i)
		d, ok := docs[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case d.Status != "SUCCESS" || fmt.Sprint(d.Result) != strconv.Itoa(i+1):
			wrong = append(wrong, fmt.Sprintf("%s: %s %v", id, d.Status, taskload.Trunc(fmt.Sprint(d.Result), 80)))
		}
	}
	failures := 0
	for _, b := range bad {
		d, ok := docs[b.id]
		switch {
		case b.status == "" && ok:
			t.Errorf("%s: a document (%s) for a message Celery settles without one", b.name, d.Status)
		case b.status != "" && !ok:
			t.Errorf("%s: no document under %q", b.name, b.id)
		case ok && d.Status != b.status:
			t.Errorf("%s: %s, want %s (%v)", b.name, d.Status, b.status, taskload.Trunc(fmt.Sprint(d.Result), 200))
		}
		if ok && d.Status == "FAILURE" {
			failures++
		}
	}
	fs := strings.Fields(state)
	unacked := -1
	if len(fs) == 3 {
		unacked, _ = strconv.Atoi(fs[2])
	}
	if len(missing) > 0 || len(wrong) > 0 || unacked != 0 {
		t.Errorf("%d valid results missing (e.g. %v), %d wrong (e.g. %v); queue (name ready unacked) %q",
			len(missing), first(missing, 3), len(wrong), first(wrong, 3), state)
	}
	t.Logf("poison run: %d of %d valid results stored, %d FAILURE documents for %d bad names, %d bad messages in all, queue %q, %d unacked, in %.1f s",
		poisonTasks-len(missing)-len(wrong), poisonTasks, failures, 4, len(bad), state, unacked, took.Seconds())

	_ = w.Cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := w.Wait(2 * time.Minute); !ok || code != 0 {
		t.Errorf("SIGTERM: exit code %d (exited: %v)", code, ok)
	}
	checkLogLines(t, w.LogPath)
}

// checkLogLines: every line of a --log-format json log is one JSON record, valid UTF-8,
// with no raw control character, and the forged line stays inside a record's text.
func checkLogLines(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	lines, forged, records := 0, 0, 0
	for sc.Scan() {
		line := sc.Text()
		lines++
		if records == 0 && !strings.HasPrefix(line, "{") {
			continue // the start-up banner, before the first record, holds no message's values
		}
		records++
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line %d is not one JSON record: %v: %q", lines, err, taskload.Trunc(line, 200))
			continue
		}
		if !utf8.ValidString(line) {
			t.Errorf("log line %d is not valid UTF-8: %q", lines, taskload.Trunc(line, 200))
		}
		for _, r := range line {
			if r < 0x20 || r >= 0x7f && r <= 0x9f {
				t.Errorf("log line %d holds raw control %U: %q", lines, r, taskload.Trunc(line, 200))
				break
			}
		}
		if strings.Contains(line, "FAKE LOG LINE") {
			forged++
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("read %s: %v", path, err)
	}
	t.Logf("worker log: %d lines, %d records, each one JSON line without raw control characters; the forged line appears inside %d records", lines, records, forged)
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }
