package canvas

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/protocol"
)

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestRouter(t *testing.T) {
	cfg := config.Default()
	cfg.TaskQueues = []config.Queue{
		{Name: "celery", Exchange: "celery", ExchangeType: "direct", RoutingKey: "celery"},
		{Name: "topicq", Exchange: "events", ExchangeType: "topic", RoutingKey: "ev.#"},
	}
	routes := []any{
		map[string]any{"a.exact": "qa", "a.*": map[string]any{"queue": "qglob", "priority": int64(7)}},
		[]any{[]any{"b.?x", "qexact"}, []any{"b.?x*", "qb"}, []any{"*", map[string]any{"queue": "topicq"}}},
	}
	r, err := NewRouter(cfg, routes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts map[string]any
		want Route
	}{
		{"a.exact", nil, Route{Queue: "qa", RoutingKey: "qa"}},
		{"a.other", nil, Route{Queue: "qglob", RoutingKey: "qglob", Priority: 7}},
		{"b.1x", nil, Route{Queue: "qb", RoutingKey: "qb"}},
		// Without "*" a key is an exact name, as in Celery.
		{"b.?x", nil, Route{Queue: "qexact", RoutingKey: "qexact"}},
		{"zzz", nil, Route{Queue: "topicq", Exchange: "events", RoutingKey: "ev.#"}},
		{"zzz", map[string]any{"routing_key": "ev.x"}, Route{Queue: "topicq", Exchange: "events", RoutingKey: "ev.x"}},
		// Signature options win over routes.
		{"a.other", map[string]any{"queue": "mine", "priority": int64(1)}, Route{Queue: "mine", RoutingKey: "mine", Priority: 1}},
		{"a.other", map[string]any{"queue": "celery", "exchange": "ex", "routing_key": "rk"}, Route{Queue: "celery", Exchange: "ex", RoutingKey: "rk", Priority: 7}},
	} {
		got, err := r.Route(tc.name, tc.opts)
		if err != nil || got != tc.want {
			t.Errorf("Route(%q, %v) = %+v, %v; want %+v", tc.name, tc.opts, got, err, tc.want)
		}
	}

	// No routes: the default queue, through the default exchange.
	d, err := NewRouter(config.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Route("x", nil); got != (Route{Queue: "celery", RoutingKey: "celery"}) {
		t.Errorf("default route %+v", got)
	}

	// Missing queue without task_create_missing_queues.
	cfg2 := config.Default()
	cfg2.TaskCreateMissingQueues = false
	m, _ := NewRouter(cfg2, map[string]any{"x": "nope"})
	if _, err := m.Route("x", nil); !errors.Is(err, ErrQueueNotFound) {
		t.Errorf("err = %v, want ErrQueueNotFound", err)
	}
	if _, err := m.Route("y", nil); err != nil {
		t.Errorf("default queue: %v", err)
	}

	// Router classes are not supported.
	if _, err := NewRouter(cfg, "myapp.routers.Router"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("err = %v, want ErrUnsupported", err)
	}
	if _, err := r.Route("x", map[string]any{"priority": int64(300)}); err == nil {
		t.Error("priority 300 accepted")
	}
}

func TestTranslateGlob(t *testing.T) {
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"tasks.*", "tasks.a.b", true}, {"tasks.*", "other.a", false}, {"t?.*", "tx.y", true},
		{"t[ab].*", "tb.y", true}, {"t[!ab].*", "tb.y", false}, {"a+b.*", "a+b.c", true},
		{"*.x/y", "a.x/y", true},
	} {
		r, err := NewRouter(config.Default(), map[string]any{tc.pat: "hit"})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := r.Route(tc.name, nil)
		if (got.Queue == "hit") != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.pat, tc.name, got.Queue == "hit", tc.want)
		}
	}
}

func TestTuples(t *testing.T) {
	got := mustJSON(t, []any{ResultTuple("a"), GroupTuple("g", ResultTuple("b"), ResultTuple("c"))})
	want := `[[["a",null],null],[["g",null],[[["b",null],null],[["c",null],null]]]]`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	d, err := testSender(t, nil).OnSuccess(&protocol.Request{ID: "x"}, 1)
	if err != nil || d.Children == nil || len(d.Children) != 0 || len(d.Messages) != 0 {
		t.Errorf("no callbacks: %+v, %v", d, err)
	}
}

func sig(task string, args ...any) map[string]any {
	return map[string]any{"task": task, "args": args, "kwargs": map[string]any{},
		"options": map[string]any{}, "subtask_type": nil, "immutable": false}
}

func TestOnSuccessOptions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ids := 0
	s := testSender(t, nil)
	s.Now = func() time.Time { return now }
	s.NewID = func() string { ids++; return "id" + string(rune('0'+ids)) }
	cb := sig("tasks.cb")
	cb["options"] = map[string]any{"countdown": int64(10), "expires": 60.0, "time_limit": int64(30),
		"soft_time_limit": 20.5, "shadow": "sh", "ignore_result": true, "headers": map[string]any{"x": "y"},
		"link": sig("tasks.next"), "group_index": int64(2)}
	d, err := s.OnSuccess(&protocol.Request{ID: "p", RootID: "r", Callbacks: []any{cb}}, "v")
	if err != nil {
		t.Fatal(err)
	}
	o := d.Messages[0]
	h := o.Message.Headers
	if o.TaskID != "id1" || h["eta"] != "2026-01-02T03:04:15+00:00" || h["expires"] != "2026-01-02T03:05:05+00:00" ||
		o.Expiration != "60000" || h["shadow"] != "sh" || h["ignore_result"] != true || h["x"] != "y" ||
		h["root_id"] != "r" || h["parent_id"] != "p" || h["origin"] != "w1@host" || h["group_index"] != int32(2) {
		t.Errorf("headers %v, expiration %q", h, o.Expiration)
	}
	if tl := mustJSON(t, h["timelimit"]); tl != "[30,20.5]" {
		t.Errorf("timelimit %s", tl)
	}
	req, err := protocol.Decode(o.Message, protocol.Accept{})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Callbacks) != 1 || mustJSON(t, req.Args) != `["v"]` {
		t.Errorf("decoded %+v", req)
	}
	if got := mustJSON(t, d.Children); got != `[[["id1",null],null]]` {
		t.Errorf("children %s", got)
	}
}

func TestOnSuccessUnsupported(t *testing.T) {
	ch := sig("celery.chord")
	ch["subtask_type"] = "chord"
	_, err := testSender(t, nil).OnSuccess(&protocol.Request{ID: "p", Callbacks: []any{ch}}, 1)
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("err = %v, want ErrUnsupported", err)
	}
	if _, err := testSender(t, nil).OnSuccess(&protocol.Request{ID: "p", Chain: []any{"junk"}}, 1); err == nil {
		t.Error("bad chain accepted")
	}
}

func TestChainLinkGroupMember(t *testing.T) {
	// group(chain(a, b), c) as a link: the chain's last task is the group
	// member, recorded with its parent in children.
	ids := 0
	s := testSender(t, nil)
	s.NewID = func() string { ids++; return "n" + string(rune('0'+ids)) }
	chain := map[string]any{"task": "celery.chain", "args": []any{}, "options": map[string]any{},
		"kwargs": map[string]any{"tasks": []any{sig("t.a"), sig("t.b")}}, "subtask_type": "chain", "immutable": false}
	grp := map[string]any{"task": "celery.group", "args": []any{}, "options": map[string]any{},
		"kwargs": map[string]any{"tasks": []any{chain, sig("t.c")}}, "subtask_type": "group", "immutable": false}
	d, err := s.OnSuccess(&protocol.Request{ID: "p", Callbacks: []any{grp}}, int64(5))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Messages) != 2 {
		t.Fatalf("%d messages", len(d.Messages))
	}
	a, c := d.Messages[0], d.Messages[1]
	if a.Message.Headers["task"] != "t.a" || c.Message.Headers["task"] != "t.c" ||
		!strings.HasPrefix(string(a.Message.Body), "[[5], {}") || !strings.Contains(string(a.Message.Body), `"t.b"`) {
		t.Errorf("messages %s / %s", a.Message.Body, c.Message.Body)
	}
	// Group id is n1; chain frozen b (last) then a.
	want := `[[["n1",null],[[["n2",[["n3",null],null]],null],[["n4",null],null]]]]`
	if got := mustJSON(t, d.Children); got != want {
		t.Errorf("children %s\nwant %s", got, want)
	}
	if a.Message.Headers["group"] != nil || !strings.Contains(string(a.Message.Body), `"group_id": "n1"`) {
		t.Errorf("first step %v %s", a.Message.Headers, a.Message.Body)
	}
}

func TestPyRepr(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		args []any
		want string
	}{
		{"ValueError", []any{"bad"}, "ValueError('bad')"},
		{"E", []any{"it's", int64(1), 2.0, nil, true}, `E("it's", 1, 2.0, None, True)`},
		{"E", nil, "E()"},
		{"E", []any{[]any{"a\n"}, map[string]any{"k": false}}, `E(['a\n'], {'k': False})`},
	} {
		if got := pyExcRepr(tc.typ, tc.args); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
	if got := excRepr(map[string]any{"exc_type": "a.B", "exc_message": "x"}); got != "B('x')" {
		t.Errorf("excRepr %s", got)
	}
}
