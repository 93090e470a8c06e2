package allocate

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/internal/testenv"
)

// The passive declare reports ready messages and consumers, a missing queue as Missing
// (without creating it), and keeps working after that 404 closed its channel.
func TestAMQPBrokerQueues(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q := testenv.Name(t, "alloc")
	missing := testenv.Name(t, "missing")
	_, err = ch.QueueDeclare(q, true, false, false, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	for range 3 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: []byte("x")}))
	}
	cons, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, cons.Qos(1, 0, false))
	_, err = cons.Consume(q, "", false, false, false, false, nil)
	require.NoError(t, err)

	b := &AMQPBroker{Names: []string{missing, q}, Dial: func() (*amqp.Connection, error) { return amqp.Dial(url) }}
	defer func() { _ = b.Close() }()
	var got []QueueState
	for range 50 { // the consumer takes one message (prefetch 1) shortly
		got, err = b.Queues(context.Background())
		require.NoError(t, err)
		if got[1].Ready == 2 {
			break
		}
	}
	assert.Equal(t, []QueueState{{Name: missing, Missing: true}, {Name: q, Ready: 2, Consumers: 1}}, got)
	_, err = ch.QueueDeclarePassive(missing, true, false, false, false, nil)
	assert.Error(t, err, "the watcher must not create the queue")

	require.NoError(t, b.Close())
	_, err = b.Queues(context.Background())
	assert.Error(t, err)
}
