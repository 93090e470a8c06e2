package results

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
)

// ErrClosed is returned by Write after Stop, and passed to the callbacks of records
// that could not be written before Stop gave up.
var ErrClosed = errors.New("results: writer closed")

// Store is where batches go. MongoStore is the real one.
type Store interface {
	// InsertMany inserts docs without ordering. Documents refused one by one (a
	// duplicate _id, a document the server will not take) come back by index; err is
	// for failures of the whole command, which are retried.
	InsertMany(ctx context.Context, docs []bson.Raw) (refused map[int]error, err error)
	// ReplaceMany upserts docs by _id.
	ReplaceMany(ctx context.Context, ids []string, docs []bson.Raw) error
}

// Config tunes a Writer. The zero value gets the defaults noted.
type Config struct {
	BatchSize     int           // flush when this many records wait (default 256)
	FlushInterval time.Duration // or when the oldest has waited this long (default 5ms)
	// MaxReplaceBatch caps the statements of one replace command (default 40): FerretDB
	// hangs on an update command with 50 or more statements that match documents.
	MaxReplaceBatch int
	// Backoff spaces the retries of a failed flush (default 100 ms … 5 s: the results
	// hold acks back, so the writer retries sooner than a broker reconnect does).
	Backoff backoff.Policy
	Logger  *zap.Logger
}

func (c *Config) setDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 5 * time.Millisecond
	}
	if c.MaxReplaceBatch <= 0 || c.MaxReplaceBatch > 49 {
		c.MaxReplaceBatch = 40
	}
	if c.Backoff.Min <= 0 {
		c.Backoff.Min = 100 * time.Millisecond
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

type pending struct {
	id   string
	doc  bson.Raw
	rec  *Record // kept to build a fallback document if the server refuses this one
	done func(error)
}

// Writer batches records into a Store. Write blocks while the batch in flight and the
// queue behind it are full, so a slow database slows the worker instead of filling its
// memory.
type Writer struct {
	store Store
	cfg   Config
	log   *zap.Logger

	in      chan pending
	stop    chan struct{} // closed by Stop: flush what is queued, then exit
	abort   chan struct{} // closed when Stop's context ends: give up retrying
	done    chan struct{} // closed when the loop has exited
	stopped sync.Once
	aborted sync.Once
	started sync.Once

	// flatChildren is set once the server has refused nested arrays (FerretDB): from
	// then on children are stored as [] (only the loop goroutine touches it).
	flatChildren bool

	stats struct {
		sync.Mutex
		batches, docs, replaced, failures uint64
		lastFlush                         time.Duration
		lastBatch                         int
	}
}

// NewWriter returns a Writer; call Start before Write.
func NewWriter(store Store, cfg Config) *Writer {
	cfg.setDefaults()
	return &Writer{
		store: store, cfg: cfg, log: cfg.Logger,
		in:   make(chan pending, cfg.BatchSize),
		stop: make(chan struct{}), abort: make(chan struct{}), done: make(chan struct{}),
	}
}

// Start starts the flushing goroutine.
func (w *Writer) Start() { w.started.Do(func() { go w.loop() }) }

// Write queues rec; done is called with nil once the write holding it is acknowledged by
// the server, or with an error if it never will be (the writer stopped first, or the
// server refused even the fallback document). Write blocks while the writer is full,
// until ctx is done.
func (w *Writer) Write(ctx context.Context, rec *Record, done func(error)) error {
	raw, err := bson.Marshal(rec.Document())
	if err != nil {
		return fmt.Errorf("results: encode document for %s: %w", rec.TaskID, err)
	}
	select {
	case <-w.stop:
		return ErrClosed
	default:
	}
	select {
	case w.in <- pending{id: rec.TaskID, doc: raw, rec: rec, done: done}:
		return nil
	case <-w.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop flushes what is queued and stops. If ctx ends first it stops retrying, and the
// records not yet written get ErrClosed.
func (w *Writer) Stop(ctx context.Context) error {
	w.Start() // a writer never started still has to answer its callbacks
	w.stopped.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.aborted.Do(func() { close(w.abort) })
		<-w.done
		return ctx.Err()
	}
}

// Stats is a snapshot of the writer's counters.
type Stats struct {
	Batches, Docs, Replaced uint64
	Failures                uint64 // failed batch writes (each retried)
	LastFlush               time.Duration
	LastBatch               int // records in the last batch written
	Queued                  int
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.stats.Lock()
	defer w.stats.Unlock()
	return Stats{Batches: w.stats.batches, Docs: w.stats.docs, Replaced: w.stats.replaced,
		Failures: w.stats.failures, LastFlush: w.stats.lastFlush, LastBatch: w.stats.lastBatch, Queued: len(w.in)}
}

func (w *Writer) loop() {
	defer close(w.done)
	batch := make([]pending, 0, w.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(batch) > 0 {
			w.flush(batch)
			clear(batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case p := <-w.in:
			batch = append(batch, p)
			if len(batch) == 1 {
				timer.Reset(w.cfg.FlushInterval)
			}
			if len(batch) >= w.cfg.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		case <-w.stop:
			for {
				select {
				case p := <-w.in:
					batch = append(batch, p)
					if len(batch) >= w.cfg.BatchSize {
						flush()
					}
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	}
}

// flush writes one batch, retrying with backoff until it is written or the writer is
// aborted, then answers every callback.
func (w *Writer) flush(batch []pending) {
	start := time.Now()
	// The last record for an id wins (a RETRY then a SUCCESS of the same task); the
	// others are answered when it is written.
	last := make(map[string]int, len(batch))
	for i, p := range batch {
		last[p.id] = i
	}
	unique := make([]pending, 0, len(last))
	for i, p := range batch {
		if last[p.id] == i {
			unique = append(unique, p)
		}
	}
	failing := false
	b := backoff.New(w.cfg.Backoff)
	for attempt := 1; ; attempt++ {
		refused, replaced, err := w.write(unique)
		if err == nil {
			if failing {
				w.log.Info("result store is writable again", zap.Int("attempts", attempt))
			}
			w.answer(batch, refused)
			w.stats.Lock()
			w.stats.batches++
			w.stats.docs += uint64(len(unique))
			w.stats.replaced += uint64(replaced)
			w.stats.lastFlush = time.Since(start)
			w.stats.lastBatch = len(batch)
			w.stats.Unlock()
			return
		}
		delay := b.Next()
		w.stats.Lock()
		w.stats.failures++
		w.stats.Unlock()
		if !failing {
			w.log.Warn("result store write failed; retrying until it succeeds (messages stay unacked)",
				zap.Int("records", len(unique)), zap.Error(err))
			failing = true
		} else {
			w.log.Debug("result store write failed again", zap.Int("attempt", attempt), zap.Error(err))
		}
		select {
		case <-w.abort:
			for _, p := range batch {
				p.done(fmt.Errorf("%w: %v", ErrClosed, err))
			}
			return
		case <-time.After(delay):
		}
	}
}

// write stores the unique records: one unordered insert, then replaces for the ids that
// already existed, then fallback documents for records the server refused outright.
// It returns the records that remain refused, by id.
func (w *Writer) write(unique []pending) (refused map[string]error, replaced int, err error) {
	ctx := context.Background()
	docs := make([]bson.Raw, len(unique))
	for i, p := range unique {
		if w.flatChildren && len(p.rec.Children) > 0 {
			flat := *p.rec
			flat.Children = nil
			if raw, err := bson.Marshal(flat.Document()); err == nil {
				unique[i].doc = raw
			}
		}
		docs[i] = unique[i].doc
	}
	bad, err := w.store.InsertMany(ctx, docs)
	if err != nil {
		return nil, 0, err
	}
	if len(bad) == 0 {
		return nil, 0, nil
	}
	var ids []string
	var again []bson.Raw
	for i, e := range bad {
		p := unique[i]
		if mongo.IsDuplicateKeyError(e) {
			ids, again = append(ids, p.id), append(again, p.doc)
			continue
		}
		if len(p.rec.Children) > 0 && isNestedArrayError(e) {
			// FerretDB refuses Celery's children tuples (real MongoDB takes them):
			// store the same document with children [], now and from now on.
			if !w.flatChildren {
				w.log.Warn("the result store refuses nested arrays (FerretDB?): storing children as [] from now on")
				w.flatChildren = true
			}
			flat := *p.rec
			flat.Children = nil
			if raw, err := bson.Marshal(flat.Document()); err == nil {
				ids, again = append(ids, p.id), append(again, raw)
				continue
			}
		}
		// The server will never take this document (too large, a value it cannot
		// store): store a FAILURE that says so, so the task still ends with one
		// final document a client can read.
		fb, ferr := bson.Marshal(fallback(p.rec, e).Document())
		if ferr != nil {
			if refused == nil {
				refused = map[string]error{}
			}
			refused[p.id] = e
			continue
		}
		w.log.Error("result store refused a result document; storing a FAILURE in its place",
			zap.String("task_id", p.id), zap.Error(e))
		ids, again = append(ids, p.id), append(again, fb)
	}
	for start := 0; start < len(ids); start += w.cfg.MaxReplaceBatch {
		end := min(start+w.cfg.MaxReplaceBatch, len(ids))
		if err := w.store.ReplaceMany(ctx, ids[start:end], again[start:end]); err != nil {
			return nil, 0, err
		}
	}
	return refused, len(ids), nil
}

func (w *Writer) answer(batch []pending, refused map[string]error) {
	for _, p := range batch {
		p.done(refused[p.id])
	}
}

// isNestedArrayError tells FerretDB's refusal of nested arrays (code 2, "nested arrays
// are not supported").
func isNestedArrayError(err error) bool {
	var we mongo.WriteException
	if errors.As(err, &we) {
		for _, e := range we.WriteErrors {
			if strings.Contains(e.Message, "nested arrays") {
				return true
			}
		}
	}
	return false
}

// fallback is the FAILURE stored when the server refuses rec's own document.
func fallback(rec *Record, cause error) *Record {
	msg := fmt.Sprintf("result of task %s could not be stored: %v", rec.TaskID, cause)
	return &Record{
		TaskID:    rec.TaskID,
		Status:    StatusFailure,
		Result:    fmt.Sprintf(`{"exc_type": "ResultStoreError", "exc_message": [%q], "exc_module": "ccworker"}`, msg),
		Traceback: msg,
		DateDone:  time.Now(),
		Name:      rec.Name,
		Worker:    rec.Worker,
		Retry:     rec.Retry,
		Queue:     rec.Queue,
	}
}

// MongoStore is a Store on a MongoDB (or MongoDB-wire) collection.
type MongoStore struct{ Coll *mongo.Collection }

// InsertMany implements Store.
func (s MongoStore) InsertMany(ctx context.Context, docs []bson.Raw) (map[int]error, error) {
	_, err := s.Coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		refused := make(map[int]error, len(bwe.WriteErrors))
		for _, we := range bwe.WriteErrors {
			refused[we.Index] = mongo.WriteException{WriteErrors: mongo.WriteErrors{we.WriteError}}
		}
		return refused, nil
	}
	return nil, err
}

// ReplaceMany implements Store.
func (s MongoStore) ReplaceMany(ctx context.Context, ids []string, docs []bson.Raw) error {
	models := make([]mongo.WriteModel, len(ids))
	for i := range ids {
		models[i] = mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: ids[i]}}).
			SetReplacement(docs[i]).SetUpsert(true)
	}
	_, err := s.Coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	return err
}

// EnsureIndex creates the date_done index Celery's backend creates on first use.
func EnsureIndex(ctx context.Context, coll *mongo.Collection) error {
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "date_done", Value: 1}}})
	if err != nil {
		return fmt.Errorf("results: create date_done index: %w", err)
	}
	return nil
}
