package canvas

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/tasks"
)

func TestMapAndStarmap(t *testing.T) {
	reg := tasks.NewRegistry()
	require.NoError(t, tasks.RegisterBuiltins(reg))
	add := sigMap(tasks.AddName, "")
	m := Map(reg.Lookup, false)
	v, err := m(context.Background(), &tasks.Call{Kwargs: map[string]any{"task": sigMap(tasks.EchoName, ""),
		"it": []any{"a", "b"}}})
	require.NoError(t, err)
	assert.Len(t, v, 2)

	s := Map(reg.Lookup, true)
	v, err = s(context.Background(), &tasks.Call{Kwargs: map[string]any{"task": add,
		"it": []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}}})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(3), int64(7)}, v)

	_, err = s(context.Background(), &tasks.Call{Kwargs: map[string]any{"task": sigMap("no.such", ""), "it": []any{}}})
	var e *tasks.Exception
	require.True(t, errors.As(err, &e))
	assert.Equal(t, "NotRegistered", e.Type)
	_, err = s(context.Background(), &tasks.Call{Kwargs: map[string]any{"task": add, "it": []any{int64(1)}}})
	require.True(t, errors.As(err, &e))
	assert.Equal(t, "TypeError", e.Type)
}
