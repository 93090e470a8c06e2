package cli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
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

func TestBrokerEnvForPythonChildren(t *testing.T) {
	cfg := config.Default()
	cfg.BrokerURLs = []string{"amqps://u:p@a:5671//", "amqps://u:p@b:5671//"}
	cfg.BrokerUseSSL = map[string]any{"certfile": "/c.pem", "cert_reqs": int64(2)}
	cfg.BrokerFailoverStrategy = "shuffle"
	assert.Equal(t, []string{"CELERY_BROKER_URL=amqps://u:p@a:5671//;amqps://u:p@b:5671//",
		pytasks.EnvBrokerUseSSL + `={"cert_reqs":2,"certfile":"/c.pem"}`,
		pytasks.EnvBrokerFailoverStrategy + "=shuffle"}, brokerEnv(cfg))
}

// task_annotations' acks_late, track_started and reject_on_worker_lost reach Go and
// command tasks, over a task's own option as in Celery.
func TestAnnotateAcks(t *testing.T) {
	reg := tasks.NewRegistry()
	yes := true
	noop := func(context.Context, *tasks.Call) (any, error) { return nil, nil }
	require.NoError(t, reg.RegisterWith("t.own", noop, tasks.Options{AcksLate: &yes, TrackStarted: &yes}))
	require.NoError(t, reg.Register("t.plain", noop))
	cfg := config.Default()
	cfg.TaskAnnotations = map[string]map[string]any{"t.own": {"acks_late": false}, "*": {"reject_on_worker_lost": true}}
	for _, n := range reg.Names() {
		annotateAcks(reg, cfg, n)
	}
	own := reg.Options("t.own")
	assert.False(t, *own.AcksLate, "the annotation wins")
	assert.True(t, *own.TrackStarted, "kept")
	assert.True(t, *own.RejectOnWorkerLost)
	plain := reg.Options("t.plain")
	assert.Nil(t, plain.AcksLate)
	assert.True(t, *plain.RejectOnWorkerLost)
}
