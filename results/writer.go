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
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/protocol"
)

// ErrClosed is returned by Write after Stop, and passed to the callbacks of records
// that could not be written before Stop gave up.
var ErrClosed = errors.New("results: writer closed")

// ErrUnstorable is passed to the callback of a record the store refused in every form,
// even as a FAILURE (say an id too long for its index): writing it again cannot help.
var ErrUnstorable = errors.New("results: the result store refuses this task's result in every form")

// Store is where batches go. MongoStore is the real one.
type Store interface {
	// InsertMany inserts docs without ordering. Documents refused one by one (a
	// duplicate _id, a document the server will not take) come back by index; err is
	// for failures of the whole command: retried when StoreWide, else each document
	// is written alone to find the one at fault.
	InsertMany(ctx context.Context, docs []bson.Raw) (refused map[int]error, err error)
	// ReplaceMany upserts docs by _id (the writer sends one document at a time when
	// looking for the one a store refuses).
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
		batches, docs, replaced, failures, refused uint64
		lastFlush                                  time.Duration
		lastBatch                                  int
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

// Start starts the flushing goroutine, which runs until Stop; ctx only bounds
// starting. A second Start does nothing.
func (w *Writer) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.start()
	return nil
}

func (w *Writer) start() { w.started.Do(func() { go w.loop() }) }

// Write queues rec; done is called with nil once the write holding it is acknowledged by
// the server, or with an error if it never will be (the writer stopped first, or the
// server refused even the fallback document). done runs on the writer's goroutine, once
// per record of a batch: it should hand the report over (the worker sends it to its
// completion goroutine) rather than do slow work there. Write blocks while the writer is
// full, until ctx is done.
func (w *Writer) Write(ctx context.Context, rec *Record, done func(error)) error {
	raw, err := rec.Encode()
	if err != nil {
		// Cannot happen for values a message decodes to; if it does, the task still
		// ends with a document a client can read.
		if raw, err = fallback(rec, err).Encode(); err != nil {
			return err
		}
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
// records not yet written get ErrClosed. Stop before Start, or twice, is fine.
func (w *Writer) Stop(ctx context.Context) error {
	w.start() // a writer never started still has to answer its callbacks
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
	Refused                 uint64 // documents refused, stored in another form or as a FAILURE
	LastFlush               time.Duration
	LastBatch               int // records in the last batch written
	Queued                  int
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.stats.Lock()
	defer w.stats.Unlock()
	return Stats{Batches: w.stats.batches, Docs: w.stats.docs, Replaced: w.stats.replaced,
		Failures: w.stats.failures, Refused: w.stats.refused, LastFlush: w.stats.lastFlush, LastBatch: w.stats.lastBatch, Queued: len(w.in)}
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

// flush writes one batch, retrying with backoff while the store as a whole fails, then
// answers every callback. A document the store refuses for its content never holds the
// batch: it is stored in another form or as a FAILURE (see write and writeOne).
func (w *Writer) flush(batch []pending) {
	start := time.Now()
	// The last record for an id wins (a RETRY then a SUCCESS of the same task); the
	// others are answered when it is written.
	last := make(map[string]int, len(batch))
	for i, p := range batch {
		last[p.id] = i
	}
	todo := make([]pending, 0, len(last))
	for i, p := range batch {
		if last[p.id] == i {
			todo = append(todo, p)
		}
	}
	unique := len(todo)
	out := make(map[string]error, len(todo)) // the answer for each id written or given up
	strikes := map[string]int{}
	failing := false
	b := backoff.New(w.cfg.Backoff)
	for attempt := 1; ; attempt++ {
		var err error
		if attempt <= isolateAfter {
			todo, err = w.write(todo, out)
		} else {
			todo, err = w.isolate(todo, out, strikes)
		}
		if err == nil {
			if failing {
				w.log.Info("result store is writable again", zap.Int("attempts", attempt))
			}
			w.answer(batch, out, nil)
			w.stats.Lock()
			w.stats.batches++
			w.stats.docs += uint64(unique)
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
				zap.Int("records", len(todo)), zap.Error(err))
			failing = true
		} else {
			w.log.Debug("result store write failed again", zap.Int("attempt", attempt), zap.Error(err))
		}
		select {
		case <-w.abort:
			w.answer(batch, out, fmt.Errorf("%w: %v", ErrClosed, err))
			return
		case <-time.After(delay):
		}
	}
}

// isolateAfter is how many times a batch is written whole before its documents are
// written one at a time: a document can look like a store-wide failure (FerretDB drops
// the connection on some values), and only writing it alone tells.
const isolateAfter = 2

// maxStrikes is how many times a document alone may fail with what looks like a
// store-wide failure before the writer stores it in the forms a store is more likely to
// take (writeOne). During a real outage those fail too and the document is held.
const maxStrikes = 3

// isolate writes todo one document at a time, stopping at the first store-wide failure,
// whose document goes to the back of the queue with a strike, so that one document the
// store chokes on cannot hold the others.
func (w *Writer) isolate(todo []pending, out map[string]error, strikes map[string]int) ([]pending, error) {
	for i, p := range todo {
		if err := w.writeOne(p, nil, strikes[p.id] >= maxStrikes, out); err != nil {
			strikes[p.id]++
			return append(append([]pending(nil), todo[i+1:]...), p), err
		}
	}
	return nil, nil
}

// write stores todo: one unordered insert, then replaces for the ids that already
// existed, and each document the store refused, alone (writeOne). It records the answer
// of every id it settles in out and returns what is left to write after a store-wide
// failure, with that failure.
func (w *Writer) write(todo []pending, out map[string]error) (rest []pending, err error) {
	ctx := context.Background()
	docs := make([]bson.Raw, len(todo))
	for i := range todo {
		if w.flatChildren && len(todo[i].rec.Children) > 0 {
			flat := *todo[i].rec
			flat.Children = nil
			if raw, err := flat.Encode(); err == nil {
				todo[i].doc = raw
			}
		}
		docs[i] = todo[i].doc
	}
	refused, err := w.store.InsertMany(ctx, docs)
	if err != nil {
		if StoreWide(err) {
			return todo, err
		}
		// A failure of the whole command that is not the store's: one document's
		// content (FerretDB on PostgreSQL fails the command at a string PostgreSQL
		// refuses, keeping the documents before it). Find it by writing each alone.
		return w.writeEach(todo, nil, out)
	}
	var dups, bad []pending
	var causes []error
	for i, p := range todo {
		switch e, ok := refused[i]; {
		case !ok:
			out[p.id] = nil
		case mongo.IsDuplicateKeyError(e):
			dups = append(dups, p)
		default:
			bad, causes = append(bad, p), append(causes, e)
		}
	}
	for start := 0; start < len(dups); start += w.cfg.MaxReplaceBatch {
		chunk := dups[start:min(start+w.cfg.MaxReplaceBatch, len(dups))]
		ids, again := make([]string, len(chunk)), make([]bson.Raw, len(chunk))
		for i, p := range chunk {
			ids[i], again[i] = safeString(p.id), p.doc
		}
		err := w.store.ReplaceMany(ctx, ids, again)
		if err == nil {
			for _, p := range chunk {
				out[p.id] = nil
			}
			w.stats.Lock()
			w.stats.replaced += uint64(len(chunk))
			w.stats.Unlock()
			continue
		}
		if StoreWide(err) {
			return append(bad, dups[start:]...), err
		}
		bad = append(bad, chunk...)
		causes = append(causes, make([]error, len(chunk))...)
	}
	return w.writeEach(bad, causes, out)
}

// writeEach writes each of todo alone; causes (nil, or one per record) says why the
// store refused it already. It stops at a store-wide failure and returns what is left.
func (w *Writer) writeEach(todo []pending, causes []error, out map[string]error) ([]pending, error) {
	for i, p := range todo {
		var cause error
		if causes != nil {
			cause = causes[i]
		}
		if err := w.writeOne(p, cause, false, out); err != nil {
			return todo[i:], err
		}
	}
	return nil, nil
}

// writeOne stores p alone, upserting by id, trying forms the store is more and more
// likely to take: the document itself (unless cause says it was refused already), the
// document with children [] (FerretDB refuses their nested arrays), without arguments
// and children, and last a FAILURE naming why the result could not be stored. It
// returns only store-wide failures, except that a struck document (one that failed
// alone maxStrikes times as if the store were down) goes on to the next forms: if the
// store is down they fail too. A record no form of which is stored gets ErrUnstorable
// in out.
func (w *Writer) writeOne(p pending, cause error, struck bool, out map[string]error) error {
	forms := []func() (*Record, bool){
		func() (*Record, bool) { return p.rec, cause == nil },
		func() (*Record, bool) {
			if len(p.rec.Children) == 0 || !isNestedArrayError(cause) {
				return nil, false
			}
			if !w.flatChildren {
				w.log.Warn("the result store refuses nested arrays (FerretDB?): storing children as [] from now on")
				w.flatChildren = true
			}
			flat := *p.rec
			flat.Children = nil
			return &flat, true
		},
		func() (*Record, bool) {
			plain := *p.rec
			plain.Args, plain.Kwargs, plain.Children = nil, nil, nil
			return &plain, p.rec.Args != nil || p.rec.Kwargs != nil || len(p.rec.Children) > 0
		},
		func() (*Record, bool) {
			w.log.Error("result store refused a result document; storing a FAILURE in its place",
				zap.String("task_id", p.id), zap.String("task", p.rec.Name), zap.Error(cause))
			return fallback(p.rec, cause), true
		},
	}
	for i, form := range forms {
		rec, ok := form()
		if !ok {
			continue
		}
		raw := p.doc
		if rec != p.rec {
			var err error
			if raw, err = rec.Encode(); err != nil {
				cause = err
				continue
			}
		}
		err := w.put(p.id, raw)
		if err == nil {
			if i > 0 {
				w.stats.Lock()
				w.stats.refused++
				w.stats.Unlock()
			}
			out[p.id] = nil
			return nil
		}
		if StoreWide(err) && !(struck && i == 0) {
			return err
		}
		cause = err
	}
	w.log.Error("result store refused even a FAILURE for this task; its message is settled without a result",
		zap.String("task_id", p.id), zap.Error(cause))
	out[p.id] = fmt.Errorf("%w: %w", ErrUnstorable, cause)
	w.stats.Lock()
	w.stats.refused++
	w.stats.Unlock()
	return nil
}

// put stores one document: inserted, or replacing the document of the same id.
func (w *Writer) put(id string, raw bson.Raw) error {
	ctx := context.Background()
	refused, err := w.store.InsertMany(ctx, []bson.Raw{raw})
	if err != nil {
		return err
	}
	if e, ok := refused[0]; ok {
		if !mongo.IsDuplicateKeyError(e) {
			return e
		}
		return w.store.ReplaceMany(ctx, []string{safeString(id)}, []bson.Raw{raw})
	}
	return nil
}

// answer calls every callback of batch: with its id's answer in out, or with
// otherwise for the ids not settled.
func (w *Writer) answer(batch []pending, out map[string]error, otherwise error) {
	for _, p := range batch {
		if err, ok := out[p.id]; ok {
			p.done(err)
		} else {
			p.done(otherwise)
		}
	}
}

// isNestedArrayError tells FerretDB's refusal of nested arrays (code 2, "nested arrays
// are not supported").
func isNestedArrayError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "nested arrays")
}

// fallback is the FAILURE stored when the server refuses every form of rec's document.
func fallback(rec *Record, cause error) *Record {
	msg := fmt.Sprintf("result of task %s could not be stored: %v", rec.TaskID, cause)
	msg = truncate(msg, maxFieldBytes)
	payload, err := protocol.ExceptionInfo{Type: "ResultStoreError", Module: "ccworker", Args: []any{msg}}.AppendJSON(nil)
	if err != nil {
		payload = []byte(`{"exc_type": "ResultStoreError", "exc_message": [], "exc_module": "ccworker"}`)
	}
	return &Record{
		TaskID:    rec.TaskID,
		Status:    StatusFailure,
		Result:    string(payload),
		Traceback: msg,
		DateDone:  time.Now(),
		Name:      truncate(rec.Name, maxFieldBytes),
		Worker:    rec.Worker,
		Retry:     rec.Retry,
		Queue:     rec.Queue,
	}
}

// MongoStore is a Store on a MongoDB (or MongoDB-wire) collection.
type MongoStore struct {
	Coll *mongo.Collection
	// WriteConcern goes with every insert (nil: the server's default). Set it to the
	// client's (options.ClientOptions.WriteConcern, from the URL's w and journal): the
	// inserts are own commands, and the driver does not tell a collection's.
	WriteConcern *writeconcern.WriteConcern
}

// InsertMany implements Store. It sends its own insert commands instead of the driver's
// InsertMany, which marshals every document again and reads each through a fresh 4 KiB
// buffer to find an _id the writer always sets (BenchmarkStoreInsert: 5.9 KiB and 49
// allocations per document against 1.2 KiB and 13). What the driver adds is added here: the
// collection's write concern, and batches split at the server's command size and statement
// count limits. Retryable writes are not needed: the writer retries store-wide failures
// itself, and an insert that had landed comes back as a duplicate and is replaced.
func (s MongoStore) InsertMany(ctx context.Context, docs []bson.Raw) (map[int]error, error) {
	var refused map[int]error
	for start := 0; start < len(docs); {
		end := insertChunkEnd(docs, start)
		errs, err := s.insert(ctx, docs[start:end])
		if err != nil {
			return nil, err
		}
		for i, e := range errs {
			if refused == nil {
				refused = make(map[int]error, len(errs))
			}
			refused[start+i] = e
		}
		start = end
	}
	return refused, nil
}

const (
	// maxInsertBytes caps the documents of one insert command: MongoDB takes commands up
	// to 16 MiB + 16 KiB, the 16 KiB being room for the command's own fields. A single
	// document is at most MaxDocumentSize, so it always fits alone.
	maxInsertBytes = 16 << 20
	// maxWriteBatch is MongoDB's maxWriteBatchSize: statements per write command.
	maxWriteBatch = 100_000
	// arrayElemOverhead is the bytes a document takes in the documents array besides its
	// own: a type byte, its index as a decimal key (up to 5 digits) and the key's NUL.
	arrayElemOverhead = 7
)

// insertChunkEnd returns the end of the chunk of docs starting at start that one insert
// command can carry.
func insertChunkEnd(docs []bson.Raw, start int) int {
	size := 0
	for i := start; i < len(docs); i++ {
		size += len(docs[i]) + arrayElemOverhead
		if i > start && (size > maxInsertBytes || i-start == maxWriteBatch) {
			return i
		}
	}
	return len(docs)
}

// insert sends one unordered insert command for docs; documents the server refused come
// back by their index in docs.
func (s MongoStore) insert(ctx context.Context, docs []bson.Raw) (map[int]error, error) {
	cmd := bson.D{{Key: "insert", Value: s.Coll.Name()}, {Key: "documents", Value: docs}, {Key: "ordered", Value: false}}
	if wc := writeConcernDoc(s.WriteConcern); wc != nil {
		cmd = append(cmd, bson.E{Key: "writeConcern", Value: wc})
	}
	err := s.Coll.Database().RunCommand(ctx, cmd).Err()
	if err == nil {
		return nil, nil
	}
	var we mongo.WriteException
	if !errors.As(err, &we) || we.WriteConcernError != nil || len(we.WriteErrors) == 0 {
		return nil, fmt.Errorf("results: insert into %s: %w", s.Coll.Name(), err)
	}
	refused := make(map[int]error, len(we.WriteErrors))
	for _, e := range we.WriteErrors {
		if e.Index < 0 || e.Index >= len(docs) {
			return nil, fmt.Errorf("results: insert into %s: the store reports document %d of %d: %w", s.Coll.Name(), e.Index, len(docs), err)
		}
		refused[e.Index] = mongo.WriteException{WriteErrors: mongo.WriteErrors{e}}
	}
	return refused, nil
}

// writeConcernDoc is wc as a command's writeConcern field, as the driver sends it (w and
// j), or nil for the server's default.
func writeConcernDoc(wc *writeconcern.WriteConcern) bson.D {
	if wc == nil {
		return nil
	}
	var d bson.D
	switch w := wc.W.(type) {
	case int:
		d = append(d, bson.E{Key: "w", Value: int32(w)})
	case string:
		d = append(d, bson.E{Key: "w", Value: w})
	}
	if wc.Journal != nil {
		d = append(d, bson.E{Key: "j", Value: *wc.Journal})
	}
	return d
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
