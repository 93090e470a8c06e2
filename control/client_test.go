package control

import (
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/protocol"
)

func TestClientRequestEncodingMatchesKombu(t *testing.T) {
	now := time.Unix(1700000000, 500000000)
	msg := Request{Method: "ping", Ticket: "tick-1", ReplyTo: "oid-1", Timeout: time.Second}.Encode("celery", 7, now)
	assert.Equal(t, "application/json", msg.ContentType)
	assert.Equal(t, "utf-8", msg.ContentEncoding)
	assert.Equal(t, uint8(amqp.Persistent), msg.DeliveryMode)
	assert.Equal(t, int64(7), msg.Headers["clock"])
	assert.InDelta(t, 1700000001.5, msg.Headers["expires"], 1e-6)
	var body map[string]any
	require.NoError(t, json.Unmarshal(msg.Body, &body))
	assert.Equal(t, map[string]any{
		"method": "ping", "arguments": map[string]any{}, "destination": nil, "pattern": nil, "matcher": nil,
		"ticket":   "tick-1",
		"reply_to": map[string]any{"exchange": "reply.celery.pidbox", "routing_key": "oid-1"},
	}, body)

	// A cast: no ticket, no reply_to, expires 0; a destination list.
	cast := Request{Method: "shutdown", Destination: []string{"a@x", "b@y"}}.Encode("myns", 1, now)
	body = nil
	require.NoError(t, json.Unmarshal(cast.Body, &body))
	assert.NotContains(t, body, "ticket")
	assert.NotContains(t, body, "reply_to")
	assert.Equal(t, []any{"a@x", "b@y"}, body["destination"])
	assert.Equal(t, 0.0, cast.Headers["expires"])

	// Another namespace gets its own reply exchange.
	ns := Request{Method: "ping", Ticket: "t", ReplyTo: "o"}.Encode("myns", 1, now)
	body = nil
	require.NoError(t, json.Unmarshal(ns.Body, &body))
	assert.Equal(t, "reply.myns.pidbox", body["reply_to"].(map[string]any)["exchange"])
}

// The client's requests, run through the worker side's handleMessage, give replies the
// client decodes: both ends of the protocol agree.
func TestClientRoundTripThroughMailbox(t *testing.T) {
	m, w, _ := newTestMailbox(t)
	roundTrip := func(r Request) (map[string]json.RawMessage, bool) {
		msg := r.Encode("celery", 3, time.Now())
		out, to, ticket, ok := m.handleMessage(msg.ContentType, msg.Body, msg.Headers)
		if !ok || to == nil {
			return nil, false
		}
		assert.Equal(t, "reply.celery.pidbox", to.Exchange)
		assert.Equal(t, r.ReplyTo, to.RoutingKey)
		body, err := protocol.AppendJSON(nil, out)
		require.NoError(t, err)
		got, mine, err := DecodeReply("application/json", amqp.Table{"ticket": ticket, "clock": int64(9)}, body, r.Ticket)
		require.NoError(t, err)
		require.True(t, mine)
		return got, true
	}
	got, ok := roundTrip(Request{Method: "ping", Ticket: "t1", ReplyTo: "oid", Timeout: time.Second})
	require.True(t, ok)
	assert.JSONEq(t, `{"ok":"pong"}`, string(got[node]))

	got, ok = roundTrip(Request{Method: "registered", Ticket: "t2", ReplyTo: "oid", Destination: []string{node}})
	require.True(t, ok)
	require.Contains(t, got, node)

	// Not for us: no reply.
	_, ok = roundTrip(Request{Method: "ping", Ticket: "t3", ReplyTo: "oid", Destination: []string{"other@host"}})
	assert.False(t, ok)

	// A cast (revoke without reply) runs but is not answered.
	_, ok = roundTrip(Request{Method: "revoke", Arguments: map[string]any{"task_id": "abc", "terminate": false}})
	assert.False(t, ok)
	assert.True(t, m.Revoked().Contains("abc"))
	_ = w
}

func TestDecodeReplyFiltersByTicket(t *testing.T) {
	body := []byte(`{"celery@a": {"ok": "pong"}}`)
	_, mine, err := DecodeReply("application/json", amqp.Table{"ticket": "other"}, body, "mine")
	assert.NoError(t, err)
	assert.False(t, mine)
	_, mine, _ = DecodeReply("application/json", amqp.Table{}, body, "mine")
	assert.False(t, mine)
	got, mine, err := DecodeReply("application/json", amqp.Table{"ticket": "mine"}, body, "mine")
	require.NoError(t, err)
	assert.True(t, mine)
	assert.JSONEq(t, `{"ok":"pong"}`, string(got["celery@a"]))
	_, mine, err = DecodeReply("application/x-msgpack", amqp.Table{"ticket": "mine"}, body, "mine")
	assert.True(t, mine)
	assert.Error(t, err)
	_, _, err = DecodeReply("", amqp.Table{"ticket": "mine"}, []byte("{"), "mine")
	assert.Error(t, err)
}

func TestNewUUIDIsVersion4(t *testing.T) {
	u := newUUID()
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, u)
	assert.NotEqual(t, u, newUUID())
	c := NewClient(nil, ClientOptions{})
	assert.Regexp(t, `^[0-9a-f-]{36}\.reply\.celery\.pidbox$`, c.ReplyQueue())
}
