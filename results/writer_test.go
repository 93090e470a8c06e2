package results

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

// fakeStore keeps documents by id and can fail or block on demand.
type fakeStore struct {
	mu       sync.Mutex
	docs     map[string]bson.Raw
	inserts  []int // batch sizes
	replaces []int
	failNext int    // whole-command failures to return
	refuse   string // an id whose document is refused (not a duplicate)
	block    chan struct{}
}

func newFakeStore() *fakeStore { return &fakeStore{docs: map[string]bson.Raw{}} }

func (s *fakeStore) InsertMany(_ context.Context, docs []bson.Raw) (map[int]error, error) {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failNext > 0 {
		s.failNext--
		return nil, errors.New("connection refused")
	}
	s.inserts = append(s.inserts, len(docs))
	refused := map[int]error{}
	for i, d := range docs {
		id := d.Lookup("_id").StringValue()
		if id == s.refuse && d.Lookup("status").StringValue() != StatusFailure {
			refused[i] = mongo.WriteException{WriteErrors: mongo.WriteErrors{{Index: i, Code: 2, Message: "nested arrays are not supported"}}}
			continue
		}
		if _, ok := s.docs[id]; ok {
			refused[i] = mongo.WriteException{WriteErrors: mongo.WriteErrors{{Index: i, Code: 11000, Message: "E11000 duplicate key"}}}
			continue
		}
		s.docs[id] = d
	}
	return refused, nil
}

func (s *fakeStore) ReplaceMany(_ context.Context, ids []string, docs []bson.Raw) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaces = append(s.replaces, len(ids))
	for i, id := range ids {
		s.docs[id] = docs[i]
	}
	return nil
}

func (s *fakeStore) status(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if !ok {
		return ""
	}
	return d.Lookup("status").StringValue()
}

func rec(id, status string) *Record {
	return &Record{TaskID: id, Status: status, Result: "null", DateDone: time.Now()}
}

func startWriter(t *testing.T, s Store, cfg Config) *Writer {
	t.Helper()
	w := NewWriter(s, cfg)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	return w
}

func writeAll(t *testing.T, w *Writer, recs ...*Record) <-chan error {
	t.Helper()
	ch := make(chan error, len(recs))
	for _, r := range recs {
		require.NoError(t, w.Write(context.Background(), r, func(err error) { ch <- err }))
	}
	return ch
}

func TestFlushesOnSize(t *testing.T) {
	s := newFakeStore()
	w := startWriter(t, s, Config{BatchSize: 4, FlushInterval: time.Hour})
	var recs []*Record
	for i := range 8 {
		recs = append(recs, rec(fmt.Sprint(i), StatusSuccess))
	}
	done := writeAll(t, w, recs...)
	for range 8 {
		require.NoError(t, <-done)
	}
	require.Equal(t, []int{4, 4}, s.inserts)
}

func TestFlushesOnInterval(t *testing.T) {
	s := newFakeStore()
	w := startWriter(t, s, Config{BatchSize: 100, FlushInterval: 10 * time.Millisecond})
	done := writeAll(t, w, rec("a", StatusSuccess))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("not flushed by the interval")
	}
	require.Equal(t, StatusSuccess, s.status("a"))
}

func TestExistingIdsAreReplacedNotDuplicated(t *testing.T) {
	s := newFakeStore()
	w := startWriter(t, s, Config{BatchSize: 1})
	require.NoError(t, <-writeAll(t, w, rec("x", StatusRetry)))
	require.NoError(t, <-writeAll(t, w, rec("x", StatusSuccess)))
	require.Equal(t, StatusSuccess, s.status("x"))
	require.Equal(t, []int{1}, s.replaces)
}

func TestLastRecordOfAnIdInABatchWins(t *testing.T) {
	s := newFakeStore()
	w := startWriter(t, s, Config{BatchSize: 3, FlushInterval: time.Hour})
	done := writeAll(t, w, rec("x", StatusRetry), rec("y", StatusSuccess), rec("x", StatusSuccess))
	for range 3 {
		require.NoError(t, <-done)
	}
	require.Equal(t, StatusSuccess, s.status("x"))
	require.Equal(t, []int{2}, s.inserts)
}

func TestReplacesAreCapped(t *testing.T) {
	s := newFakeStore()
	w := startWriter(t, s, Config{BatchSize: 100, FlushInterval: time.Hour})
	var recs []*Record
	for i := range 100 {
		recs = append(recs, rec(fmt.Sprint(i), StatusRetry))
	}
	done := writeAll(t, w, recs...)
	for range 100 {
		require.NoError(t, <-done)
	}
	for _, r := range recs {
		r.Status = StatusSuccess
	}
	done = writeAll(t, w, recs...)
	for range 100 {
		require.NoError(t, <-done)
	}
	require.Equal(t, []int{40, 40, 20}, s.replaces, "no replace command reaches FerretDB's 50-statement hang")
}

func TestRefusedDocumentIsReplacedByAFailure(t *testing.T) {
	s := newFakeStore()
	s.refuse = "bad"
	w := startWriter(t, s, Config{BatchSize: 2, FlushInterval: time.Hour})
	done := writeAll(t, w, rec("bad", StatusSuccess), rec("good", StatusSuccess))
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	require.Equal(t, StatusFailure, s.status("bad"))
	require.Contains(t, s.docs["bad"].Lookup("result").StringValue(), "ResultStoreError")
	require.Equal(t, StatusSuccess, s.status("good"))
}

func TestFailedFlushIsRetriedAndNotAnsweredMeanwhile(t *testing.T) {
	s := newFakeStore()
	s.failNext = 3
	w := startWriter(t, s, Config{BatchSize: 1, Backoff: backoff.Policy{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond}})
	done := writeAll(t, w, rec("r", StatusSuccess))
	require.NoError(t, <-done)
	require.Equal(t, StatusSuccess, s.status("r"))
	require.Zero(t, s.failNext)
}

func TestBackPressureBlocksWrite(t *testing.T) {
	s := newFakeStore()
	s.block = make(chan struct{})
	w := NewWriter(s, Config{BatchSize: 2, FlushInterval: time.Millisecond})
	require.NoError(t, w.Start(context.Background()))
	// One batch is stuck in the store; the queue behind it holds BatchSize more.
	accepted := 0
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := w.Write(ctx, rec(fmt.Sprint(i), StatusSuccess), func(error) {})
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		accepted++
	}
	require.Less(t, accepted, 10)
	require.LessOrEqual(t, accepted, 2+2+1)
	close(s.block)
	require.NoError(t, w.Stop(context.Background()))
}

func TestStopFlushesQueuedRecords(t *testing.T) {
	s := newFakeStore()
	w := NewWriter(s, Config{BatchSize: 100, FlushInterval: time.Hour})
	require.NoError(t, w.Start(context.Background()))
	done := writeAll(t, w, rec("a", StatusSuccess), rec("b", StatusFailure))
	require.NoError(t, w.Stop(context.Background()))
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	require.Equal(t, StatusFailure, s.status("b"))
	require.ErrorIs(t, w.Write(context.Background(), rec("c", StatusSuccess), func(error) {}), ErrClosed)
}

func TestStopGivesUpOnADeadStore(t *testing.T) {
	s := newFakeStore()
	s.failNext = 1 << 30
	w := NewWriter(s, Config{BatchSize: 1, Backoff: backoff.Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}})
	require.NoError(t, w.Start(context.Background()))
	done := writeAll(t, w, rec("a", StatusSuccess))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.Stop(ctx), context.DeadlineExceeded)
	require.ErrorIs(t, <-done, ErrClosed)
}

// nestedRefusingStore refuses documents with nested arrays, as FerretDB does.
type nestedRefusingStore struct{ *fakeStore }

func (s nestedRefusingStore) InsertMany(ctx context.Context, docs []bson.Raw) (map[int]error, error) {
	refused := map[int]error{}
	var ok []bson.Raw
	var idx []int
	for i, d := range docs {
		if c, _ := d.Lookup("children").Array().Values(); len(c) > 0 {
			refused[i] = mongo.WriteException{WriteErrors: mongo.WriteErrors{{Index: i, Code: 2,
				Message: `invalid value: { "children": [ [ [ "x", null ], null ] ] } (nested arrays are not supported)`}}}
			continue
		}
		ok, idx = append(ok, d), append(idx, i)
	}
	more, err := s.fakeStore.InsertMany(ctx, ok)
	for j, e := range more {
		refused[idx[j]] = e
	}
	return refused, err
}

func TestChildrenAreFlattenedWhereNestedArraysAreRefused(t *testing.T) {
	s := nestedRefusingStore{newFakeStore()}
	w := startWriter(t, s, Config{BatchSize: 1})
	r := rec("parent", StatusSuccess)
	r.Children = []any{[]any{[]any{"child", nil}, nil}}
	require.NoError(t, <-writeAll(t, w, r))
	require.Equal(t, StatusSuccess, s.status("parent"), "stored, not replaced by a FAILURE")
	vals, _ := s.docs["parent"].Lookup("children").Array().Values()
	require.Empty(t, vals)
	// From now on children are dropped up front: no refusal, no replace.
	r2 := rec("parent2", StatusSuccess)
	r2.Children = r.Children
	require.NoError(t, <-writeAll(t, w, r2))
	require.Equal(t, []int{0, 1, 1}, s.inserts, "only the first needed a second write")
}

func TestDocumentKeepsChildrenTuples(t *testing.T) {
	r := rec("p", StatusSuccess)
	r.Children = []any{[]any{[]any{"c1", nil}, nil}}
	d := asMap(r.Document())
	require.Equal(t, bson.A{bson.A{bson.A{"c1", nil}, nil}}, d["children"])
}

func TestResultsReader(t *testing.T) {
	db := testenv.Database(t)
	coll := db.Collection("celery_taskmeta")
	w := startWriter(t, MongoStore{Coll: coll}, Config{BatchSize: 3, FlushInterval: time.Millisecond})
	ok := rec("ok", StatusSuccess)
	ok.Result = `{"n": 5, "f": 1.5, "big": 123456789012345678901234567890}`
	failed := rec("bad", StatusFailure)
	failed.Result, failed.Traceback = `{"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"}`, "tb"
	done := writeAll(t, w, ok, failed)
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	got, err := MongoStore{Coll: coll}.Results(context.Background(), []string{"ok", "bad", "missing"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	m := got["ok"].Result.(map[string]any)
	require.Equal(t, int64(5), m["n"])
	require.Equal(t, 1.5, m["f"])
	require.Equal(t, "123456789012345678901234567890", m["big"].(interface{ String() string }).String())
	require.Equal(t, StatusFailure, got["bad"].Status)
	require.Equal(t, "tb", got["bad"].Traceback)
}

// chokingStore drops the connection on documents with a marked name, as FerretDB does on
// a NaN, and fails everything while down is set.
type chokingStore struct {
	*fakeStore
	mu   sync.Mutex
	down bool
}

func (s *chokingStore) InsertMany(ctx context.Context, docs []bson.Raw) (map[int]error, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, errors.New("connection(127.0.0.1:27017) incomplete read of message header: EOF")
	}
	for _, d := range docs {
		if n, _ := d.Lookup("name").StringValueOK(); n == "choke" && d.Lookup("args").Type == bson.TypeArray {
			return nil, errors.New("connection(127.0.0.1:27017) incomplete read of message header: EOF")
		}
	}
	return s.fakeStore.InsertMany(ctx, docs)
}

func TestADocumentThatLooksLikeAnOutageIsIsolated(t *testing.T) {
	s := &chokingStore{fakeStore: newFakeStore()}
	w := startWriter(t, s, Config{BatchSize: 10, FlushInterval: time.Hour, Backoff: backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}})
	var recs []*Record
	for i := range 10 {
		r := rec(fmt.Sprint(i), StatusSuccess)
		r.Args = []any{int64(i)}
		if i == 4 {
			r.Name = "choke"
		}
		recs = append(recs, r)
	}
	done := writeAll(t, w, recs...)
	for range recs {
		require.NoError(t, <-done)
	}
	for _, r := range recs {
		require.Equal(t, StatusSuccess, s.status(r.TaskID))
		want := bson.TypeArray
		if r.Name == "choke" {
			want = bson.TypeNull // stored without the arguments it chokes on
		}
		require.Equal(t, want, s.docs[r.TaskID].Lookup("args").Type, r.TaskID)
	}
}

func TestAnOutageDoesNotDegradeDocuments(t *testing.T) {
	s := &chokingStore{fakeStore: newFakeStore(), down: true}
	w := startWriter(t, s, Config{BatchSize: 5, FlushInterval: time.Hour, Backoff: backoff.Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}})
	var recs []*Record
	for i := range 5 {
		r := rec(fmt.Sprint(i), StatusSuccess)
		r.Args = []any{int64(i)}
		recs = append(recs, r)
	}
	done := writeAll(t, w, recs...)
	time.Sleep(200 * time.Millisecond) // many attempts, every document struck out
	select {
	case err := <-done:
		t.Fatalf("answered (%v) while the store is down", err)
	default:
	}
	s.mu.Lock()
	s.down = false
	s.mu.Unlock()
	for range recs {
		require.NoError(t, <-done)
	}
	for _, r := range recs {
		require.Equal(t, bson.TypeArray, s.docs[r.TaskID].Lookup("args").Type, "%s stored whole", r.TaskID)
	}
}

func TestStoreWide(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errors.New("connection refused"), true},
		{context.DeadlineExceeded, true},
		{mongo.CommandError{Code: 10107, Message: "not writable primary"}, true},
		{mongo.CommandError{Code: 18, Message: "auth"}, true},
		{mongo.CommandError{Code: 1, Name: "InternalError", Message: "failed to connect to `host=127.0.0.1`: dial error"}, true},
		{mongo.CommandError{Code: 1, Name: "InternalError", Message: "ERROR: terminating connection due to administrator command (SQLSTATE 57P01)"}, true},
		{mongo.CommandError{Code: 1, Name: "InternalError", Message: "ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05)"}, false},
		{mongo.CommandError{Code: 10334, Message: "BSONObjectTooLarge"}, false},
		{mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 2, Message: "invalid key"}}}, false},
		{mongo.WriteException{WriteConcernError: &mongo.WriteConcernError{Code: 64}}, true},
		// UnsatisfiableWriteConcern, as an own insert command reports it
		{fmt.Errorf("results: insert into celery_taskmeta: %w", mongo.WriteException{WriteConcernError: &mongo.WriteConcernError{Code: 100}}), true},
	} {
		require.Equal(t, c.want, StoreWide(c.err), "%v", c.err)
	}
}
