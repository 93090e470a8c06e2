package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/results"
)

// resultsPart is the MongoDB result backend: the client, Celery's index, the writer.
type resultsPart struct {
	cfg    Results
	log    *zap.Logger
	store  *results.MongoStore // its collection is set by Start, before the writer runs
	writer *results.Writer

	mu     sync.Mutex
	client *mongo.Client
}

func newResultsPart(cfg Results, log *zap.Logger) *resultsPart {
	store := &results.MongoStore{}
	wcfg := cfg.Writer
	if wcfg.Logger == nil {
		wcfg.Logger = log.Named("results")
	}
	return &resultsPart{cfg: cfg, log: log, store: store, writer: results.NewWriter(store, wcfg)}
}

// Start connects and creates Celery's date_done index, retrying until the server
// answers or ctx ends, then starts the writer.
func (p *resultsPart) Start(ctx context.Context) error {
	m := p.cfg.Mongo
	opts := mongoOptions(m.URI)
	client, err := mongo.Connect(opts)
	if err != nil {
		return configError{fmt.Errorf("result backend %s: %w", m.Redacted(), err)}
	}
	coll := client.Database(m.Database).Collection(m.Collection)
	if err := p.ensureIndex(ctx, coll); err != nil {
		_ = client.Disconnect(context.Background())
		return err
	}
	p.mu.Lock()
	p.client = client
	p.mu.Unlock()
	p.store.Coll, p.store.WriteConcern = coll, opts.WriteConcern
	return p.writer.Start(ctx)
}

// mongoHeartbeat is the result backend's server-monitoring interval unless the URL sets
// heartbeatFrequencyMS. The driver's 10 s woke an idle worker for a check every 10 s; the
// writes do not depend on it (a failed write marks the server unknown and checks at once).
const mongoHeartbeat = 60 * time.Second

func mongoOptions(uri string) *options.ClientOptions {
	// Set before ApplyURI, which overrides it only when the URL has heartbeatFrequencyMS.
	return options.Client().SetHeartbeatInterval(mongoHeartbeat).ApplyURI(uri).SetAppName("ccworker")
}

func (p *resultsPart) ensureIndex(ctx context.Context, coll *mongo.Collection) error {
	m := p.cfg.Mongo
	b := backoff.New(backoff.Policy{Min: time.Second, Max: 30 * time.Second})
	for attempt := 1; ; attempt++ {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := results.EnsureIndex(ictx, coll)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("result backend %s: %w", m.Redacted(), err)
		}
		if cause, ok := results.Permanent(err); ok {
			return configError{fmt.Errorf("result backend %s: %s", m.Redacted(), cause)}
		}
		delay := b.Next()
		p.log.Warn("cannot reach the result backend; retrying", zap.String("backend", m.Redacted()),
			zap.Int("attempt", attempt), zap.Duration("next_in", delay), zap.Error(err))
		_ = backoff.Sleep(ctx, delay) // ctx's end is seen at the top of the loop
	}
}

// Stop flushes what the writer holds (until ctx ends) and disconnects.
func (p *resultsPart) Stop(ctx context.Context) error {
	err := p.writer.Stop(ctx)
	p.mu.Lock()
	client := p.client
	p.client = nil
	p.mu.Unlock()
	if client != nil {
		_ = client.Disconnect(context.Background())
	}
	if err != nil {
		return fmt.Errorf("results not flushed: %w", err)
	}
	return nil
}
