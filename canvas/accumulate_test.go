package canvas

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/tasks"
)

func TestAccumulate(t *testing.T) {
	v, err := Accumulate(context.Background(), &tasks.Call{Args: []any{[]any{int64(1), int64(2)}}, Kwargs: map[string]any{"index": int64(0)}})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1), int64(2)}, v)
	v, err = Accumulate(context.Background(), &tasks.Call{Args: []any{"a", "b"}})
	require.NoError(t, err)
	assert.Equal(t, []any{"a", "b"}, v)
	_, err = Accumulate(context.Background(), &tasks.Call{Args: []any{}, Kwargs: map[string]any{"index": int64(0)}})
	assert.ErrorContains(t, err, "IndexError")
}
