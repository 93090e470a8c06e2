package control

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// FuzzHandleMessage: no remote-control request, however malformed (unknown methods,
// arguments of the wrong types, broken JSON, odd destinations), may panic the mailbox;
// a request addressed to us with a reply_to always gets a reply.
func FuzzHandleMessage(f *testing.F) {
	for _, seed := range []string{
		`{"method": "ping", "arguments": {}, "destination": null, "ticket": "t", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid"}}`,
		`{"method": "revoke", "arguments": {"task_id": ["a", "b"], "terminate": true, "signal": "SIGKILL"}}`,
		`{"method": "revoke", "arguments": {"task_id": 5, "terminate": "yes"}}`,
		`{"method": "rate_limit", "arguments": {"task_name": ["x"], "rate_limit": {}}, "reply_to": {"exchange": "x", "routing_key": "y"}, "ticket": 1}`,
		`{"method": "time_limit", "arguments": {"task_name": "ccworker.add", "soft": "a", "hard": null}}`,
		`{"method": "add_consumer", "arguments": {"queue": 7}}`,
		`{"method": "registered", "arguments": {"taskinfoitems": "__doc__"}, "destination": "celery@ccworker-test"}`,
		`{"method": "nope", "arguments": null, "pattern": "*", "matcher": "glob", "reply_to": {}}`,
		`{"method": "hello", "arguments": {"from_node": "x", "revoked": {"a": [1, "a"]}}, "destination": ["x"]}`,
		`[1, 2]`, `{}`, `{"method": 3}`, `not json`,
	} {
		f.Add("application/json", []byte(seed), int64(5))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte, clock int64) {
		w := newFakeWorker(node)
		m, err := NewMailbox(func(context.Context) (*amqp.Connection, error) { return nil, errors.New("no broker") },
			MailboxConfig{NodeName: node, Worker: w, Events: &fakeEvents{}, Revoked: NewRevoked(100, time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, _ = m.handleMessage(contentType, body, amqp.Table{"clock": clock})
	})
}
