package canvas

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
)

type fakeReader map[string]Result

func (f fakeReader) Results(_ context.Context, ids []string) (map[string]Result, error) {
	out := map[string]Result{}
	for _, id := range ids {
		if r, ok := f[id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

type errReader struct{}

func (errReader) Results(context.Context, []string) (map[string]Result, error) {
	return nil, errors.New("connection refused")
}

type fakePub struct{ out []Outgoing }

func (p *fakePub) Publish(_ context.Context, o Outgoing) error {
	p.out = append(p.out, o)
	return nil
}

// unlockCall decodes the captured celery.chord_unlock message into a Call.
func unlockCall(t *testing.T, g *golden) *tasks.Call {
	t.Helper()
	req := g.Input.request(t)
	return &tasks.Call{Args: req.Args, Kwargs: req.Kwargs, Request: req, Hostname: "w1@host"}
}

func headerIDs(t *testing.T, c *tasks.Call) []string {
	t.Helper()
	var ids []string
	for _, r := range c.Kwargs["result"].([]any) {
		n, err := parseResultTuple(r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.id)
	}
	return ids
}

func TestChordUnlockNotReady(t *testing.T) {
	g, _ := loadGolden(t, "chord")
	c := unlockCall(t, g)
	ids := headerIDs(t, c)
	pub := &fakePub{}
	h := ChordUnlock(fakeReader{ids[0]: {Status: StateSuccess, Result: int64(2)}}, pub, testSender(t, nil), DefaultChordRetryInterval)
	_, err := h(context.Background(), c)
	var ra *RetryAfter
	if !errors.As(err, &ra) || ra.Countdown != time.Second || ra.Err != nil {
		t.Fatalf("err = %v, want RetryAfter 1s", err)
	}
	if len(pub.out) != 0 {
		t.Errorf("published %d messages", len(pub.out))
	}

	// A read error retries too, carrying the cause; interval kwarg wins.
	c.Kwargs["interval"] = 2.5
	_, err = ChordUnlock(errReader{}, pub, testSender(t, nil), time.Second)(context.Background(), c)
	if !errors.As(err, &ra) || ra.Countdown != 2500*time.Millisecond || ra.Err == nil {
		t.Fatalf("err = %v, want RetryAfter 2.5s with cause", err)
	}

	// Past max_retries: MaxRetriesExceededError.
	c.Kwargs["max_retries"] = int64(3)
	c.Request.Retries = 3
	_, err = h(context.Background(), c)
	var exc *tasks.Exception
	if !errors.As(err, &exc) || exc.Type != "MaxRetriesExceededError" {
		t.Fatalf("err = %v, want MaxRetriesExceededError", err)
	}
}

func TestChordUnlockReady(t *testing.T) {
	g, raw := loadGolden(t, "chord")
	c := unlockCall(t, g)
	ids := headerIDs(t, c)
	pub := &fakePub{}
	// Results given out of order: the callback must get header order.
	h := ChordUnlock(fakeReader{ids[1]: {Status: StateSuccess, Result: int64(4)},
		ids[0]: {Status: StateSuccess, Result: int64(2)}}, pub, testSender(t, nil), time.Second)
	if _, err := h(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Ready golden `json:"ready"`
	}
	mustUnmarshal(t, raw, &ready)
	compare(t, &ready.Ready, g.Input.Body+mustJSON(t, g.Input.Headers), pub.out, nil, nil)
}

func TestChordUnlockFailed(t *testing.T) {
	g, raw := loadGolden(t, "chord")
	c := unlockCall(t, g)
	ids := headerIDs(t, c)
	var want struct {
		CallbackID string `json:"callback_id"`
		Failed     struct {
			Callback struct {
				Result map[string]any `json:"result"`
			} `json:"callback"`
		} `json:"failed"`
	}
	mustUnmarshal(t, raw, &want)
	// The callback gets an errback, sent with the callback's id.
	cb := c.Args[1].(map[string]any)
	cb["options"].(map[string]any)["link_error"] = []any{map[string]any{"task": "tasks.on_err", "args": []any{},
		"kwargs": map[string]any{}, "options": map[string]any{}, "subtask_type": nil, "immutable": false}}
	pub := &fakePub{}
	h := ChordUnlock(fakeReader{
		ids[0]: {Status: StateSuccess, Result: int64(2)},
		ids[1]: {Status: StateFailure, Result: map[string]any{"exc_type": "ValueError", "exc_module": "builtins", "exc_message": []any{"bad"}}},
	}, pub, testSender(t, nil), time.Second)
	_, err := h(context.Background(), c)
	var ce *ChordError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want ChordError", err)
	}
	if ce.CallbackID != want.CallbackID {
		t.Errorf("CallbackID %q, want %q", ce.CallbackID, want.CallbackID)
	}
	info := ce.Info()
	w := want.Failed.Callback.Result
	if info.Type != w["exc_type"] || info.Module != w["exc_module"] || mustJSON(t, info.Args) != mustJSON(t, w["exc_message"]) {
		t.Errorf("Info() = %+v, Celery stored %v", info, w)
	}
	if len(pub.out) != 1 || pub.out[0].Message.Headers["task"] != "tasks.on_err" {
		t.Fatalf("published %+v, want the errback", pub.out)
	}
	body := string(pub.out[0].Message.Body)
	if want := `[["` + ce.CallbackID + `"], {}`; len(body) < len(want) || body[:len(want)] != want {
		t.Errorf("errback body %s", body)
	}
}

func TestChordUnlockBadArgs(t *testing.T) {
	h := ChordUnlock(fakeReader{}, &fakePub{}, testSender(t, nil), time.Second)
	_, err := h(context.Background(), &tasks.Call{Args: []any{"gid"}, Request: &protocol.Request{ID: "x"}})
	var exc *tasks.Exception
	if !errors.As(err, &exc) || exc.Type != "TypeError" {
		t.Fatalf("err = %v, want TypeError", err)
	}
}

func TestChordUnlockGroupMember(t *testing.T) {
	// A header result that is itself a group joins to a list.
	pub := &fakePub{}
	h := ChordUnlock(fakeReader{"a": {Status: StateSuccess, Result: int64(1)}, "b": {Status: StateSuccess, Result: int64(2)}},
		pub, testSender(t, nil), time.Second)
	cb := map[string]any{"task": "tasks.tsum", "args": []any{}, "kwargs": map[string]any{},
		"options": map[string]any{"task_id": "cb"}, "subtask_type": nil, "immutable": false}
	res := []any{GroupTuple("g", ResultTuple("a"), ResultTuple("b"))}
	c := &tasks.Call{Args: []any{"gid", cb}, Kwargs: map[string]any{"result": res}, Request: &protocol.Request{ID: "u"}}
	if _, err := h(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if len(pub.out) != 1 || string(pub.out[0].Message.Body[:12]) != "[[[[1, 2]]]," {
		t.Fatalf("published %s", pub.out[0].Message.Body)
	}
	if pub.out[0].Message.Headers["parent_id"] != "u" || pub.out[0].TaskID != "cb" {
		t.Errorf("headers %v", pub.out[0].Message.Headers)
	}
}
