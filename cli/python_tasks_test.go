package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/config"
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
