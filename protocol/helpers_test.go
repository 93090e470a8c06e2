package protocol

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// table mimics amqp091-go's amqp.Table: a named map type, which is how
// nested header tables arrive.
type table map[string]any

type fixture struct {
	Name            string         `json:"name"`
	Call            string         `json:"call"`
	ContentType     string         `json:"content_type"`
	ContentEncoding string         `json:"content_encoding"`
	CorrelationID   string         `json:"correlation_id"`
	ReplyTo         string         `json:"reply_to"`
	Priority        uint8          `json:"priority"`
	Headers         map[string]any `json:"headers"`
	BodyHex         string         `json:"body_hex"`
}

// message converts a fixture into what amqp091-go would deliver: JSON
// numbers in headers become int32 (py-amqp writes small ints as 'I').
func (f fixture) message(t testing.TB) Message {
	body, err := hex.DecodeString(f.BodyHex)
	if err != nil {
		t.Fatal(err)
	}
	return Message{
		ContentType:     f.ContentType,
		ContentEncoding: f.ContentEncoding,
		Headers:         amqpHeaders(f.Headers).(map[string]any),
		Body:            body,
		CorrelationID:   f.CorrelationID,
		ReplyTo:         f.ReplyTo,
		Priority:        f.Priority,
	}
}

func amqpHeaders(v any) any {
	switch x := v.(type) {
	case float64:
		if x == float64(int32(x)) {
			return int32(x)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = amqpHeaders(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if m, ok := e.(map[string]any); ok {
				out[k] = table(amqpHeaders(m).(map[string]any))
				continue
			}
			out[k] = amqpHeaders(e)
		}
		return out
	}
	return v
}

func loadFixtures(t testing.TB) []fixture {
	files, err := filepath.Glob(filepath.Join("testdata", "captured", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var out []fixture
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var f fixture
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, f)
	}
	return out
}

func fixtureByName(t testing.TB, name string) fixture {
	for _, f := range loadFixtures(t) {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no fixture %s", name)
	return fixture{}
}

// v2Headers returns the 16 headers Celery 5.2.6 sends, as amqp091-go
// decodes them, with overrides applied (a nil override deletes).
func v2Headers(task, id string, overrides map[string]any) map[string]any {
	h := map[string]any{
		"lang": "py", "task": task, "id": id, "shadow": nil, "eta": nil, "expires": nil,
		"group": nil, "group_index": nil, "retries": int32(0), "timelimit": []any{nil, nil},
		"root_id": id, "parent_id": nil, "argsrepr": "()", "kwargsrepr": "{}",
		"origin": "gen1@test", "ignore_result": false,
	}
	for k, v := range overrides {
		if _, ok := v.(del); ok {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	return h
}

// del marks a header to delete in v2Headers overrides.
type del struct{}

func jsonMsg(headers map[string]any, body string) Message {
	return Message{ContentType: ContentTypeJSON, ContentEncoding: "utf-8", Headers: headers, Body: []byte(body)}
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }
