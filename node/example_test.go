package node_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/node"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

// A Go program that serves Celery tasks: register the tasks, describe the node, run it
// until interrupted. (Not run by go test: it needs a broker and a database; TestEmbedded
// runs the same against the test services.)
func Example() {
	reg := tasks.NewRegistry()
	_ = reg.Register("proj.tasks.add", func(ctx context.Context, c *tasks.Call) (any, error) {
		a, _ := c.Args[0].(int64)
		b, _ := c.Args[1].(int64)
		return a + b, nil
	})
	log, _ := zap.NewProduction()
	n, err := node.New(node.Config{
		NodeName: "celery@embedded",
		Logger:   log,
		Broker: prefetch.Config{
			URLs:     []string{"amqp://guest:guest@localhost:5672//"},
			Queues:   []prefetch.Queue{prefetch.CeleryQueue("celery", 0)},
			Prefetch: 16,
		},
		Results: &node.Results{Mongo: config.MongoBackend{URI: "mongodb://localhost:27017/",
			Database: "celery", Collection: "celery_taskmeta"}},
		Worker:        worker.Config{Concurrency: 4, DrainTimeout: 30 * time.Second},
		RemoteControl: true,
	}, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	warm, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// Run returns after a warm shutdown: running tasks finished, results stored, acked.
	if err := n.Run(warm, context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
