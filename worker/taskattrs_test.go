package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

func registered(t *testing.T, w *worker.Worker) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, m := range w.Registered() {
		out[m.Name] = m.Attrs
	}
	return out
}

// `inspect registered('rate_limit', 'max_retries', ...)` answers with the attributes
// Celery's task would have: the worker's effective limits and acks, a Python task's own
// attributes as it reported them, Celery's defaults for a Go task.
func TestRegisteredAttributes(t *testing.T) {
	yes := true
	py := tasks.Options{Doc: "A Python task.", AcksLate: &yes, Attrs: map[string]string{
		"max_retries": "5", "rate_limit": "10/m", "serializer": "json", "time_limit": "5.0", "acks_late": "False"}}
	h := start(t, withOptions("py.task", func(context.Context, *tasks.Call) (any, error) { return nil, nil }, py),
		withConfig(func(c *worker.Config) {
			c.EarlyAck = true
			c.TaskLimits = map[string]worker.Limits{"py.task": {Hard: 5 * time.Second},
				tasks.AddName: {Hard: 90 * time.Second, Soft: 1500 * time.Millisecond}}
			c.RateLimits = map[string]float64{"py.task": 10.0 / 60, tasks.AddName: 2}
		}))
	got := registered(t, h.w)
	assert.Equal(t, map[string]string{"__doc__": "A Python task.", "max_retries": "5", "rate_limit": "10/m",
		"serializer": "json", "time_limit": "5.0", "acks_late": "True", "track_started": "False",
		"ignore_result": "False"}, got["py.task"])
	add := got[tasks.AddName]
	assert.Equal(t, "3", add["max_retries"])
	assert.Equal(t, "180", add["default_retry_delay"])
	assert.Equal(t, "2/s", add["rate_limit"])
	assert.Equal(t, "90", add["time_limit"])
	assert.Equal(t, "1.5", add["soft_time_limit"])
	assert.Equal(t, "False", add["acks_late"], "the worker acks early")
	assert.NotContains(t, add, "reject_on_worker_lost", "None unless set, as in Celery")
	assert.NotContains(t, got[tasks.NoopName], "rate_limit")

	// The remote commands change what is reported.
	require.NoError(t, h.w.SetRateLimit(tasks.AddName, "30/m"))
	require.NoError(t, h.w.SetTimeLimit(tasks.AddName, 0, 0))
	add = registered(t, h.w)[tasks.AddName]
	assert.Equal(t, "30/m", add["rate_limit"])
	assert.NotContains(t, add, "time_limit")
	var _ control.Worker = h.w
}
