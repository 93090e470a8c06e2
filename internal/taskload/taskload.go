// Package taskload is the mixed task load that the fault tests (chaos, clustertest) publish
// and check: which task each id is, the AMQP message that carries it, the final result
// document it must get, and what the workers' JSON logs say was received and run. The
// processes and services themselves are internal/testharness's and the tests' own.
package taskload

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
)

// Kind is which of the built-in tasks a task of the load is.
type Kind int

const (
	Noop  Kind = iota // ccworker.noop
	Sleep             // ccworker.sleep(1-10 ms)
	Fail              // ccworker.fail: FAILURE ValueError
	Flaky             // ccworker.flaky(1): one retry, then SUCCESS 1
)

// ID is the id of task i of the load published to queue.
func ID(queue string, i int) string { return fmt.Sprintf("%s-%05d", queue, i) }

// Request draws task i of the load from rng: 50 % noop, 30 % sleep(1-10 ms), 10 % fail
// (its message starts with note), 10 % flaky(1). The same seed gives the same load.
func Request(queue string, i int, rng *rand.Rand, note string) (Kind, *protocol.Request) {
	id := ID(queue, i)
	req := &protocol.Request{ID: id, RootID: id, Kwargs: map[string]any{}}
	var k Kind
	switch r := rng.IntN(10); {
	case r < 5:
		k, req.Task, req.Args = Noop, "ccworker.noop", []any{}
	case r < 8:
		k, req.Task, req.Args = Sleep, "ccworker.sleep", []any{0.001 + rng.Float64()*0.009}
	case r < 9:
		k, req.Task, req.Args = Fail, "ccworker.fail", []any{note + " " + id}
	default:
		k, req.Task, req.Args = Flaky, "ccworker.flaky", []any{int64(1)}
	}
	return k, req
}

// Publishing is req as Celery's protocol 2 message, persistent.
func Publishing(req *protocol.Request) (amqp.Publishing, error) {
	m, err := protocol.EncodeV2(req)
	if err != nil {
		return amqp.Publishing{}, err
	}
	return amqp.Publishing{Headers: prefetch.Table(m.Headers), ContentType: m.ContentType,
		ContentEncoding: m.ContentEncoding, DeliveryMode: amqp.Persistent, CorrelationId: req.ID, Body: m.Body}, nil
}

// Final matches the result documents in a final state.
var Final = bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{"SUCCESS", "FAILURE"}}}}}

// Doc is the part of a result document the checks read.
type Doc struct {
	ID     string `bson:"_id"`
	Status string `bson:"status"`
	Result any    `bson:"result"`
}

// ReadDocs reads every result document of coll by id; dups lists the ids read twice
// (which a unique _id rules out, and which the tests check anyway).
func ReadDocs(ctx context.Context, coll *mongo.Collection) (docs map[string]Doc, dups []string, err error) {
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "result", Value: 1}}))
	if err != nil {
		return nil, nil, fmt.Errorf("read results: %w", err)
	}
	var all []Doc
	if err := cur.All(ctx, &all); err != nil {
		return nil, nil, fmt.Errorf("read results: %w", err)
	}
	docs = make(map[string]Doc, len(all))
	for _, d := range all {
		if _, dup := docs[d.ID]; dup {
			dups = append(dups, d.ID)
		}
		docs[d.ID] = d
	}
	return docs, dups, nil
}

// Check says what is wrong with the final document of a task of kind k, or "".
func Check(k Kind, d Doc) string {
	res := fmt.Sprint(d.Result)
	switch {
	case k == Fail && (d.Status != "FAILURE" || !strings.Contains(res, "ValueError")):
		return fmt.Sprintf("want FAILURE ValueError, got %s %s", d.Status, Trunc(res, 100))
	case k == Flaky && (d.Status != "SUCCESS" || strings.TrimSpace(res) != "1"):
		return fmt.Sprintf("want SUCCESS 1, got %s %s", d.Status, Trunc(res, 100))
	case k != Fail && d.Status != "SUCCESS":
		return fmt.Sprintf("want SUCCESS, got %s %s", d.Status, Trunc(res, 100))
	}
	return ""
}

// Trunc cuts s to n bytes, marking the cut.
func Trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// LogLine is one line of ccworker's --log-format json output (the fields the tests read).
type LogLine struct {
	Level      string `json:"level"`
	TS         string `json:"ts"`
	Logger     string `json:"logger"`
	Msg        string `json:"msg"`
	Error      string `json:"error"`
	Connection string `json:"connection"`
	Broker     string `json:"broker"`
}

// ParseLogLine decodes a JSON log line; ok is false for anything else.
func ParseLogLine(line []byte) (ll LogLine, ok bool) {
	if len(line) == 0 || line[0] != '{' {
		return ll, false
	}
	return ll, json.Unmarshal(line, &ll) == nil
}

// Event is what a task line of the log says happened to a task.
type Event int

const (
	NoEvent  Event = iota
	Received       // "Task name[id] received": a delivery handed to a handler
	Retried        // "Task name[id] retry: ...": an execution that ended in a retry
	Done           // "succeeded in" or "raised unexpected": an execution that ended
)

var taskLine = regexp.MustCompile(`^Task (\S+)\[([^\]]+)\] (received|succeeded in|raised unexpected|retry:)`)

// TaskEvent reads a log message as Celery's task lines; NoEvent for any other message.
func TaskEvent(msg string) (id string, ev Event) {
	m := taskLine.FindStringSubmatch(msg)
	if m == nil {
		return "", NoEvent
	}
	switch m[3] {
	case "received":
		return m[2], Received
	case "retry:":
		return m[2], Retried
	default:
		return m[2], Done
	}
}

// Ledger counts the task lines of every worker of a scenario. Each finished execution
// logs exactly one line, before its result is stored and so before its ack: a second such
// line for the same id and step is a duplicate execution.
type Ledger struct {
	mu       sync.Mutex
	received map[string]int // id -> deliveries handed to a handler
	ran      map[string]int // id+"/retry" or id+"/done" -> finished executions
	finished int            // finished executions, all ids
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{received: map[string]int{}, ran: map[string]int{}}
}

// Add counts msg if it is a task line and returns what it said.
func (l *Ledger) Add(msg string) (id string, ev Event) {
	id, ev = TaskEvent(msg)
	if ev == NoEvent {
		return id, ev
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev {
	case Received:
		l.received[id]++
	case Retried:
		l.ran[id+"/retry"]++
		l.finished++
	case Done:
		l.ran[id+"/done"]++
		l.finished++
	}
	return id, ev
}

// Finished is the number of finished executions so far, all ids.
func (l *Ledger) Finished() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.finished
}

// Received is how many times id was handed to a handler.
func (l *Ledger) Received(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.received[id]
}

// Ran is how many executions of id ended in ev (Retried or Done).
func (l *Ledger) Ran(id string, ev Event) int {
	key := id + "/done"
	if ev == Retried {
		key = id + "/retry"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ran[key]
}

// Duplicates counts finished executions beyond one per (id, retry step).
func (l *Ledger) Duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.ran {
		n += c - 1
	}
	return n
}
