package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/config/pyliteral"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[any]float64{
		"10/s": 10, "120/m": 2, "3600/h": 1, "5": 5, int64(7): 7, 0.5: 0.5, nil: 0, "": 0, " 60 / m ": 1,
	} {
		got, err := ParseRate(in)
		require.NoError(t, err, "%v", in)
		require.InDelta(t, want, got, 1e-9, "%v", in)
	}
	for _, bad := range []any{"x/s", "10/d", "-1/s", true} {
		_, err := ParseRate(bad)
		require.Error(t, err, "%v", bad)
	}
}

func TestAnnotationsRoutesAndRateLimits(t *testing.T) {
	src := `
task_annotations = {
    'ccworker.sleep': {'rate_limit': '10/s', 'time_limit': 30, 'soft_time_limit': 20.5},
    '*': {'rate_limit': '1/m'},
}
task_default_rate_limit = '5/s'
task_routes = {'ccworker.*': {'queue': 'remote'}}
`
	m, err := pyliteral.Parse("c.py", []byte(src), mapEnv(nil))
	require.NoError(t, err)
	c, err := FromValues(m.Values, mapEnv(nil))
	require.NoError(t, err)
	require.Equal(t, 10.0, c.TaskRateLimit("ccworker.sleep"))
	require.InDelta(t, 1.0/60, c.TaskRateLimit("other"), 1e-9, "the '*' annotation")
	hard, soft := c.TaskTimeLimits("ccworker.sleep")
	require.Equal(t, 30*time.Second, hard)
	require.Equal(t, 20500*time.Millisecond, soft)
	hard, _ = c.TaskTimeLimits("other")
	require.Zero(t, hard)
	require.Equal(t, map[string]any{"ccworker.*": map[string]any{"queue": "remote"}}, c.TaskRoutes)
	require.NotContains(t, c.Ignored, "task_routes")

	c.WorkerDisableRateLimits = true
	require.Zero(t, c.TaskRateLimit("ccworker.sleep"))

	_, err = FromValues(map[string]any{"task_annotations": map[string]any{"t": map[string]any{"rate_limit": "fast"}}}, mapEnv(nil))
	require.Error(t, err)
}

func TestTaskAnnotationBool(t *testing.T) {
	src := `
task_annotations = {'t.early': {'acks_late': False}, '*': {'track_started': True}, 't.odd': {'acks_late': 1}}
`
	m, err := pyliteral.Parse("c.py", []byte(src), mapEnv(nil))
	require.NoError(t, err)
	c, err := FromValues(m.Values, mapEnv(nil))
	require.NoError(t, err)
	require.NotNil(t, c.TaskAnnotationBool("t.early", "acks_late"))
	require.False(t, *c.TaskAnnotationBool("t.early", "acks_late"))
	require.True(t, *c.TaskAnnotationBool("t.early", "track_started"), "the '*' annotation")
	require.Nil(t, c.TaskAnnotationBool("t.other", "acks_late"))
	require.Nil(t, c.TaskAnnotationBool("t.odd", "acks_late"), "not a bool")
}
