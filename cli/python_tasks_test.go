package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	pytasks "github.com/ccworker/ccworker/tasks/python"
)

func TestPythonTaskOptionsCarryAcksAndTracking(t *testing.T) {
	yes, no := true, false
	o, err := pythonTaskOptions(pytasks.TaskInfo{Name: "x", AcksLate: &no, TrackStarted: &yes, RejectOnWorkerLost: &yes})
	require.NoError(t, err)
	require.NotNil(t, o.AcksLate)
	require.NotNil(t, o.TrackStarted)
	require.NotNil(t, o.RejectOnWorkerLost)
	assert.False(t, *o.AcksLate)
	assert.True(t, *o.TrackStarted)
	assert.True(t, *o.RejectOnWorkerLost)

	o, err = pythonTaskOptions(pytasks.TaskInfo{Name: "y"})
	require.NoError(t, err)
	assert.Nil(t, o.AcksLate, "unset: the worker's setting")
}
