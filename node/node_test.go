package node_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/node"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

// testConfig returns a node's configuration on the test services, with its own queue and
// database.
func testConfig(t *testing.T) (node.Config, string, string, *mongo.Database) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // last: after the services' cleanup
	url, db := testenv.AMQPURL(t), testenv.Database(t)
	queue := testenv.Name(t, "node")
	t.Cleanup(func() { deleteQueue(t, url, queue) })
	return node.Config{
		NodeName: "celery@" + queue,
		Logger:   zaptest.NewLogger(t),
		Broker: prefetch.Config{URLs: []string{url}, Queues: []prefetch.Queue{prefetch.CeleryQueue(queue, 0)},
			Prefetch: 8},
		Results: &node.Results{Mongo: config.MongoBackend{URI: testenv.MongoURL(t),
			Database: db.Name(), Collection: "celery_taskmeta"}},
		Worker:        worker.Config{Concurrency: 2, DrainTimeout: 10 * time.Second},
		Events:        &control.EventsConfig{TaskEvents: true},
		RemoteControl: true,
		MetricsAddr:   "127.0.0.1:0",
	}, url, queue, db
}

func deleteQueue(t *testing.T, url, queue string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(queue, false, false, false)
	}
}

func publish(t *testing.T, url, queue string, r *protocol.Request) {
	t.Helper()
	m, err := protocol.EncodeV2(r)
	require.NoError(t, err)
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{
		Headers: prefetch.Table(m.Headers), ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
		DeliveryMode: amqp.Persistent, CorrelationId: r.ID, Body: m.Body,
	}))
}

// TestEmbedded runs a node as a Go program embedding ccworker would: a task published
// the way Celery does is run, its result stored, its message acked; Stop leaves nothing
// running.
func TestEmbedded(t *testing.T) {
	cfg, url, queue, db := testConfig(t)
	reg := tasks.NewRegistry()
	require.NoError(t, tasks.RegisterBuiltins(reg))
	n, err := node.New(cfg, reg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, n.Start(ctx))

	r := &protocol.Request{ID: testenv.Name(t, "id"), Task: tasks.AddName, Args: []any{int64(2), int64(3)},
		Kwargs: map[string]any{}}
	publish(t, url, queue, r)
	coll := db.Collection("celery_taskmeta")
	var doc bson.M
	require.Eventually(t, func() bool {
		return coll.FindOne(ctx, bson.M{"_id": r.ID}).Decode(&doc) == nil
	}, 20*time.Second, 50*time.Millisecond)
	assert.Equal(t, "SUCCESS", doc["status"])
	require.Eventually(t, func() bool { return n.Worker().Gauges().InFlight == 0 }, 10*time.Second, 10*time.Millisecond,
		"the task is acked and forgotten")

	require.NoError(t, n.Stop(context.Background()))
	require.NoError(t, n.Stop(context.Background()), "Stop twice")
	assert.Empty(t, n.Worker().ActiveTasks())
}

// TestStartFailsCleanly: a broker that refuses the credentials is a permanent error;
// the parts already started are stopped again.
func TestStartFailsCleanly(t *testing.T) {
	cfg, url, _, _ := testConfig(t)
	u, err := amqp.ParseURI(url)
	require.NoError(t, err)
	u.Password = "wrong-password"
	cfg.Broker.URLs = []string{u.String()}
	n, err := node.New(cfg, tasks.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Start(ctx)
	require.ErrorIs(t, err, prefetch.ErrPermanent)
	require.NoError(t, n.Stop(context.Background()), "Stop after a failed Start")
}

// TestStopBeforeStart: a node built and never started stops without error.
func TestStopBeforeStart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n, err := node.New(node.Config{NodeName: "celery@never",
		Broker: prefetch.Config{URLs: []string{"amqp://guest:guest@127.0.0.1:1//"},
			Queues: []prefetch.Queue{prefetch.CeleryQueue("celery", 0)}},
		Results: &node.Results{Mongo: config.MongoBackend{URI: "mongodb://127.0.0.1:1/", Database: "d", Collection: "c"}},
		Worker:  worker.Config{Concurrency: 1}, RemoteControl: true, MetricsAddr: "127.0.0.1:0",
	}, tasks.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, n.Stop(context.Background()))
	require.NoError(t, n.Stop(context.Background()))
}
