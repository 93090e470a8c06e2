package canvas

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/protocol"
)

// golden is a capture written by testdata/gen.py.
type golden struct {
	Input   capture        `json:"input"`
	Outputs []capture      `json:"outputs"`
	Meta    map[string]any `json:"meta"`
	Failed  map[string]any `json:"failed"`
	Header  []capture      `json:"header"`
}

type capture struct {
	Exchange   string         `json:"exchange"`
	RoutingKey string         `json:"routing_key"`
	Headers    map[string]any `json:"headers"`
	Properties map[string]any `json:"properties"`
	Body       string         `json:"body"`
}

func loadGolden(t *testing.T, name string) (*golden, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return &g, raw
}

// request decodes a captured message with the protocol package.
func (c capture) request(t *testing.T) *protocol.Request {
	t.Helper()
	req, err := protocol.Decode(protocol.Message{
		ContentType: protocol.ContentTypeJSON, ContentEncoding: "utf-8",
		Headers: c.Headers, Body: []byte(c.Body),
	}, protocol.Accept{})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func toCapture(t *testing.T, o Outgoing) capture {
	t.Helper()
	h, err := json.Marshal(o.Message.Headers)
	if err != nil {
		t.Fatal(err)
	}
	c := capture{Exchange: o.Exchange, RoutingKey: o.RoutingKey, Body: string(o.Message.Body),
		Properties: map[string]any{"priority": float64(o.Message.Priority)}}
	if err := json.Unmarshal(h, &c.Headers); err != nil {
		t.Fatal(err)
	}
	if o.TaskID != c.Headers["id"] || o.Message.CorrelationID != o.TaskID {
		t.Errorf("TaskID %q, id header %v, correlation id %q", o.TaskID, c.Headers["id"], o.Message.CorrelationID)
	}
	return c
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// normalizer renames the ids that are not in the input ("known") to new1,
// new2... in order of appearance, so generated ids compare by structure.
type normalizer struct {
	known map[string]bool
	names map[string]string
}

func newNormalizer(input ...string) *normalizer {
	n := &normalizer{known: map[string]bool{}, names: map[string]string{}}
	for _, s := range input {
		for _, id := range uuidRE.FindAllString(s, -1) {
			n.known[id] = true
		}
	}
	return n
}

func (n *normalizer) value(v any) any {
	switch v := v.(type) {
	case string:
		return uuidRE.ReplaceAllStringFunc(v, func(id string) string {
			if n.known[id] {
				return id
			}
			if _, ok := n.names[id]; !ok {
				n.names[id] = "new" + string(rune('A'+len(n.names)))
			}
			return n.names[id]
		})
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = n.value(x)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "reply_to" {
				continue // the client's thread id, meaningless to the worker
			}
			out[k] = n.value(v[k])
		}
		return out
	}
	return v
}

var comparedHeaders = []string{"task", "id", "group", "group_index", "root_id", "parent_id", "retries",
	"shadow", "expires", "ignore_result", "timelimit", "argsrepr", "kwargsrepr", "lang"}

// view is the comparable part of a message.
func (n *normalizer) view(t *testing.T, c capture) map[string]any {
	t.Helper()
	var body any
	if err := json.Unmarshal([]byte(c.Body), &body); err != nil {
		t.Fatal(err)
	}
	h := map[string]any{}
	for _, k := range comparedHeaders {
		h[k] = c.Headers[k]
	}
	return map[string]any{
		"exchange": c.Exchange, "routing_key": c.RoutingKey,
		"priority": c.Properties["priority"], "headers": n.value(h), "body": n.value(body),
	}
}

func sortCaptures(cs []capture) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Headers["task"] != cs[j].Headers["task"] {
			return cs[i].Headers["task"].(string) < cs[j].Headers["task"].(string)
		}
		return cs[i].Body < cs[j].Body
	})
}

// compare checks our messages and children against Celery's.
func compare(t *testing.T, g *golden, input string, got []Outgoing, children []any, wantChildren any) {
	t.Helper()
	var gotC []capture
	for _, o := range got {
		gotC = append(gotC, toCapture(t, o))
	}
	want := append([]capture(nil), g.Outputs...)
	sortCaptures(want)
	sortCaptures(gotC)
	if len(gotC) != len(want) {
		t.Fatalf("got %d messages, Celery sent %d", len(gotC), len(want))
	}
	nw, ng := newNormalizer(input), newNormalizer(input)
	for i := range want {
		w, gv := jsonNorm(t, nw.view(t, want[i])), jsonNorm(t, ng.view(t, gotC[i]))
		if !jsonEqual(t, w, gv) {
			t.Errorf("message %d:\n got %s\nwant %s", i, mustJSON(t, gv), mustJSON(t, w))
		}
	}
	if wantChildren != nil || children != nil {
		w, gv := jsonNorm(t, nw.value(wantChildren)), jsonNorm(t, ng.value(jsonNorm(t, children)))
		if !jsonEqual(t, w, gv) {
			t.Errorf("children:\n got %s\nwant %s", mustJSON(t, gv), mustJSON(t, w))
		}
	}
}

func jsonNorm(t *testing.T, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal([]byte(mustJSON(t, v)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonEqual(t *testing.T, a, b any) bool { return mustJSON(t, a) == mustJSON(t, b) }

func testSender(t *testing.T, routes any) *Sender {
	t.Helper()
	r, err := NewRouter(config.Default(), routes)
	if err != nil {
		t.Fatal(err)
	}
	return &Sender{Router: r, Origin: "w1@host"}
}

func TestGoldenOnSuccess(t *testing.T) {
	for _, name := range []string{"link", "link_multi", "link_group", "link_chain", "chain",
		"chain_immutable", "chain_group", "routes"} {
		t.Run(name, func(t *testing.T) {
			g, _ := loadGolden(t, name)
			var routes any
			if name == "routes" {
				routes = map[string]any{"tasks.*": map[string]any{"queue": "other", "priority": int64(3)}}
			}
			s := testSender(t, routes)
			req := g.Input.request(t)
			retval, _ := toInt(g.Meta["result"]) // JSON gave a float64
			d, err := s.OnSuccess(req, retval)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, g, g.Input.Body+mustJSON(t, g.Input.Headers), d.Messages, d.Children, g.Meta["children"])
		})
	}
}

func TestGoldenOnFailure(t *testing.T) {
	for _, name := range []string{"fail_chain", "fail_errbacks"} {
		t.Run(name, func(t *testing.T) {
			g, _ := loadGolden(t, name)
			s := testSender(t, nil)
			f, err := s.OnFailure(g.Input.request(t))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for id, m := range g.Failed {
				if m.(map[string]any)["status"] == "FAILURE" {
					want = append(want, id)
				}
			}
			got := append([]string(nil), f.ChainIDs...)
			sort.Strings(got)
			sort.Strings(want)
			if mustJSON(t, got) != mustJSON(t, want) {
				t.Errorf("ChainIDs %v, want %v", got, want)
			}
			compare(t, g, g.Input.Body+mustJSON(t, g.Input.Headers), f.Errbacks, nil, nil)
		})
	}
}
