package canvas

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ccworker/ccworker/protocol"
)

func TestUnsent(t *testing.T) {
	group := map[string]any{"task": "celery.group", "args": []any{}, "subtask_type": "group",
		"options": map[string]any{"task_id": "G"},
		"kwargs":  map[string]any{"tasks": []any{sigMap("t.m", "M1"), sigMap("t.m", "M2")}}}
	chord := map[string]any{"task": "celery.chord", "args": []any{}, "subtask_type": "chord",
		"options": map[string]any{"task_id": "B"},
		"kwargs":  map[string]any{"header": []any{sigMap("t.h", "H1")}, "body": sigMap("t.b", "B")}}
	xmap := sigMap("celery.map", "X")
	xmap["subtask_type"] = "xmap"
	linked := sigMap("t.l", "L")
	linked["options"].(map[string]any)["link"] = []any{sigMap("t.after", "A2")}
	linked["options"].(map[string]any)["link_error"] = []any{sigMap("t.err", "E")}
	req := &protocol.Request{ID: "self", Callbacks: []any{chord, "junk"},
		Chain: []any{linked, xmap, group, sigMap("t.self", "self")}}
	assert.Equal(t, []string{"B", "H1", "L", "A2", "X", "M1", "M2"}, Unsent(req))
	assert.Empty(t, Unsent(&protocol.Request{ID: "x"}))
}

// A chord as a link callback is applied as Celery's chord.apply_async: chord_unlock and
// the header tasks, the callback's result as their partial argument.
func TestChordAsLinkCallback(t *testing.T) {
	s := testSender(t, nil)
	s.NewID = seqIDs()
	ch := map[string]any{"task": "celery.chord", "args": []any{}, "subtask_type": "chord", "immutable": false,
		"options": map[string]any{},
		"kwargs": map[string]any{"kwargs": map[string]any{}, "body": sigMap("t.body", "B"),
			"header": []any{sigMap("t.h", "H1", int64(1)), sigMap("t.h", "H2", int64(2))}}}
	d, err := s.OnSuccess(&protocol.Request{ID: "A", Task: "t.a", Callbacks: []any{ch}}, int64(7))
	if !assert.NoError(t, err) {
		return
	}
	assert.Len(t, d.Messages, 3)
	assert.Equal(t, ChordUnlockName, decodeOut(t, d.Messages[0]).Task)
	for i, m := range d.Messages[1:] {
		h := decodeOut(t, m)
		assert.Equal(t, []any{int64(7), int64(i + 1)}, h.Args)
		assert.Equal(t, "A", h.ParentID)
	}
}
