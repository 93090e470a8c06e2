package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ccworker/ccworker/pool"
)

// TimeLimitExceeded carries the limit as Celery passes it: 1 for time_limit=1 (stored
// as [1]), a float only for a fractional limit.
func TestTimeLimitExceededArgument(t *testing.T) {
	exc := exceptionOf(&pool.TimeLimitError{Limit: time.Second})
	assert.Equal(t, []any{int64(1)}, exc.Args)
	assert.Equal(t, []any{0.05}, exceptionOf(&pool.TimeLimitError{Limit: 50 * time.Millisecond}).Args)
}
