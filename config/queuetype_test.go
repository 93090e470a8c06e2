package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQueueTypes(t *testing.T) {
	c, err := Load("", nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultQueueTypes(), c.QueueTypes)
	assert.False(t, c.UsesQuorumQueues([]string{"celery"}))

	c, err = Load(writeConfig(t, `
task_default_queue_type = 'quorum'
task_create_missing_queue_type = 'quorum'
task_create_missing_queue_exchange_type = 'topic'
worker_detect_quorum_queues = False
broker_native_delayed_delivery_queue_type = 'classic'
`), nil)
	require.NoError(t, err)
	assert.Equal(t, QueueTypes{DefaultQueueType: "quorum", CreateMissingQueueType: "quorum",
		CreateMissingQueueExchangeType: "topic", NativeDelayedDeliveryQueueType: "classic"}, c.QueueTypes)
	assert.Empty(t, c.Ignored, "all known settings")
	assert.True(t, c.UsesQuorumQueues(nil))

	c, err = Load(writeConfig(t, `
task_queues = [{'name': 'q', 'queue_arguments': {'x-queue-type': 'quorum'}}, {'name': 'c'}]
`), nil)
	require.NoError(t, err)
	assert.True(t, c.UsesQuorumQueues([]string{"c"}), "as Celery: any queue of the app")

	c, err = Load(writeConfig(t, `task_create_missing_queue_type = 'quorum'`), nil)
	require.NoError(t, err)
	assert.False(t, c.UsesQuorumQueues([]string{"celery"}), "the default queue is classic")
	assert.True(t, c.UsesQuorumQueues([]string{"celery", "other"}), "-Q other is a missing queue")
}

func TestQueueTypeErrors(t *testing.T) {
	for text, want := range map[string]string{
		`task_default_queue_type = 'stream'`:                                                                        "task_default_queue_type",
		`task_create_missing_queue_type = 'mirrored'`:                                                               "task_create_missing_queue_type",
		"task_default_queue_type = 'quorum'\ntask_queue_max_priority = 10":                                          "task_queue_max_priority",
		"task_create_missing_queue_type = 'quorum'\ntask_queue_max_priority = 10":                                   "task_queue_max_priority",
		"task_queues = [{'name': 'q', 'queue_arguments': {'x-queue-type': 'quorum', 'x-max-priority': 5}}]":         "x-max-priority",
		"task_queues = [{'name': 'q', 'queue_arguments': {'x-queue-type': 'quorum'}}]\ntask_queue_max_priority = 3": "quorum queue \"q\"",
	} {
		_, err := Load(writeConfig(t, text), nil)
		require.Error(t, err, text)
		assert.Contains(t, err.Error(), want, text)
	}
}
