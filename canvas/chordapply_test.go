package canvas

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/protocol"
)

func sigMap(task, id string, args ...any) map[string]any {
	if args == nil {
		args = []any{}
	}
	return map[string]any{"task": task, "args": args, "kwargs": map[string]any{},
		"options": map[string]any{"queue": "q", "task_id": id}, "subtask_type": nil, "immutable": false}
}

func decodeOut(t *testing.T, o Outgoing) *protocol.Request {
	t.Helper()
	r, err := protocol.Decode(o.Message, protocol.Accept{})
	require.NoError(t, err)
	return r
}

func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("id-%d", n) }
}

// A chord as a chain step (Celery's chain(add, chord([...], echo), echo)): the worker
// sends celery.chord_unlock for the header group with the body (carrying the rest of the
// chain), then the header tasks with the body as their chord callback.
func TestChordInChain(t *testing.T) {
	r, err := NewRouter(config.Default(), nil)
	require.NoError(t, err)
	s := &Sender{Router: r, NewID: seqIDs()}
	rest := sigMap("ccworker.echo", "E2")
	ch := map[string]any{"task": "celery.chord", "args": []any{}, "subtask_type": "chord", "immutable": false,
		"options": map[string]any{"queue": "q"},
		"kwargs": map[string]any{"kwargs": map[string]any{}, "body": sigMap("ccworker.echo", "B"),
			"header": []any{sigMap("ccworker.add", "H1", int64(1)), sigMap("ccworker.add", "H2", int64(2))}}}
	d, err := s.OnSuccess(&protocol.Request{ID: "A", Task: "ccworker.add", Chain: []any{rest, ch}}, int64(2))
	require.NoError(t, err)
	require.Len(t, d.Messages, 3)

	unlock := decodeOut(t, d.Messages[0])
	assert.Equal(t, ChordUnlockName, unlock.Task)
	assert.Equal(t, "q", d.Messages[0].Route.Queue)
	require.Len(t, unlock.Args, 2)
	gid := unlock.Args[0].(string)
	body := unlock.Args[1].(map[string]any)
	assert.Equal(t, "B", body["options"].(map[string]any)["task_id"])
	assert.Equal(t, []any{rest}, body["options"].(map[string]any)["chain"], "the rest of the chain follows the body")
	assert.Equal(t, []any{[]any{[]any{"H1", nil}, nil}, []any{[]any{"H2", nil}, nil}}, unlock.Kwargs["result"])
	assert.Contains(t, unlock.Kwargs, "interval")

	for i, m := range d.Messages[1:] {
		h := decodeOut(t, m)
		assert.Equal(t, fmt.Sprintf("H%d", i+1), h.ID)
		assert.Equal(t, []any{int64(2), int64(i + 1)}, h.Args, "the previous step's result is the partial argument")
		assert.Equal(t, gid, h.GroupID)
		assert.Equal(t, "A", h.ParentID)
		assert.Equal(t, "B", h.Chord.(map[string]any)["options"].(map[string]any)["task_id"])
		assert.Empty(t, h.Chain, "the header tasks do not carry the chain")
	}
}

// In a chain, a group followed by a task becomes a chord (prepare_steps), instead of
// being refused.
func TestChainGroupThenTaskIsAChord(t *testing.T) {
	r, err := NewRouter(config.Default(), nil)
	require.NoError(t, err)
	s := &Sender{Router: r, NewID: seqIDs()}
	group := map[string]any{"task": "celery.group", "args": []any{}, "subtask_type": "group", "immutable": false,
		"options": map[string]any{}, "kwargs": map[string]any{"tasks": []any{
			sigMap("ccworker.add", "H1", int64(1)), sigMap("ccworker.add", "H2", int64(2))}}}
	inner := map[string]any{"task": "celery.chain", "args": []any{}, "subtask_type": "chain", "immutable": false,
		"options": map[string]any{}, "kwargs": map[string]any{"tasks": []any{group, sigMap("ccworker.echo", "B")}}}
	d, err := s.OnSuccess(&protocol.Request{ID: "A", Task: "ccworker.add", Callbacks: []any{inner}}, int64(2))
	require.NoError(t, err)
	var names []string
	for _, m := range d.Messages {
		names = append(names, decodeOut(t, m).Task)
	}
	assert.Equal(t, []string{ChordUnlockName, "ccworker.add", "ccworker.add"}, names)
	assert.Equal(t, "B", decodeOut(t, d.Messages[1]).Chord.(map[string]any)["options"].(map[string]any)["task_id"])
}
