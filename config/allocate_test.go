package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ccworker_allocate_* belong to `ccworker allocate`: the worker does not list them as
// settings it ignores.
func TestAllocateSettingsAreNotIgnored(t *testing.T) {
	c, err := FromValues(map[string]any{"ccworker_allocate_max_jobs": int64(4), "worker_hijack_root_logger": false}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"worker_hijack_root_logger"}, c.Ignored)
}
