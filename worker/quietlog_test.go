package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestQuietLogLetsOneLinePerWindow(t *testing.T) {
	q := &quietLog{window: time.Minute}
	t0 := time.Unix(1000, 0)
	ok, held := q.allow(t0)
	assert.True(t, ok)
	assert.Zero(t, held)
	for i := range 30 {
		ok, _ := q.allow(t0.Add(time.Duration(i) * time.Second))
		assert.False(t, ok)
	}
	ok, held = q.allow(t0.Add(time.Minute))
	assert.True(t, ok)
	assert.Equal(t, 30, held, "the lines held back are counted on the next one")
}
