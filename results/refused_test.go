package results

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ccworker/ccworker/internal/backoff"
	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap/zaptest"
)

// refusedCatalogue is every kind of record a MongoDB-wire store refuses as Document
// would naively write it, each with what must be stored: "SUCCESS" (escaped in place)
// or "FAILURE" (no form of it is stored; a FAILURE names the cause).
func refusedCatalogue() []struct {
	name string
	rec  *Record
	want string
} {
	deep := any("leaf")
	for range 200 {
		deep = map[string]any{"d": deep}
	}
	mk := func(id string) *Record {
		return &Record{TaskID: id, Status: StatusSuccess, Result: "4", DateDone: time.Now(), Name: "ccworker.add",
			Args: []any{int64(2), int64(2)}, Kwargs: map[string]any{}, Worker: "w@h", Queue: "q"}
	}
	with := func(id string, f func(r *Record)) *Record { r := mk(id); f(r); return r }
	return []struct {
		name string
		rec  *Record
		want string
	}{
		{"name with NUL, ESC, BEL, CR", with("bad-name", func(r *Record) {
			r.Name, r.Status = "ccworker.add\x00\x1b[2J\x07\r", StatusFailure
			r.Result = `{"exc_type": "NotRegistered", "exc_message": ["ccworker.add\u0000\u001b[2J\u0007\r"], "exc_module": "celery.exceptions"}`
		}), StatusFailure},
		{"id with NUL", mk("bad\x00id"), StatusSuccess},
		{"string argument with NUL", with("bad-arg", func(r *Record) { r.Args = []any{"a\x00b"} }), StatusSuccess},
		{"traceback with NUL", with("bad-tb", func(r *Record) { r.Traceback = "line\x00" }), StatusSuccess},
		{"result with NUL", with("bad-result", func(r *Record) { r.Result = "\"a\x00\"" }), StatusSuccess},
		{"invalid UTF-8 name", with("bad-utf8", func(r *Record) { r.Name = "ccworker.\xff\xfe" }), StatusSuccess},
		{"kwargs key starting with $", with("bad-dollar", func(r *Record) { r.Kwargs = map[string]any{"$where": int64(1)} }), StatusSuccess},
		{"kwargs key with a dot", with("bad-dot", func(r *Record) { r.Kwargs = map[string]any{"a.b": int64(1)} }), StatusSuccess},
		{"kwargs key with NUL", with("bad-nulkey", func(r *Record) { r.Kwargs = map[string]any{"a\x00": int64(1)} }), StatusSuccess},
		{"kwargs key with invalid UTF-8", with("bad-utf8key", func(r *Record) { r.Kwargs = map[string]any{"a\xff": int64(1)} }), StatusSuccess},
		{"nested key starting with $", with("bad-nested-dollar", func(r *Record) {
			r.Args = []any{map[string]any{"x": map[string]any{"$gt": int64(1)}}}
		}), StatusSuccess},
		{"arguments nested 200 levels", with("bad-deep", func(r *Record) { r.Kwargs = map[string]any{"k": deep} }), StatusSuccess},
		{"nested arrays in arguments", with("bad-nested-args", func(r *Record) { r.Args = []any{[]any{[]any{int64(1)}}} }), StatusSuccess},
		{"children tuples (nested arrays)", with("bad-children", func(r *Record) {
			r.Children = []any{[]any{[]any{"child", nil}, nil}}
		}), StatusSuccess},
		{"infinities and NaN", with("bad-floats", func(r *Record) { r.Args = []any{math.Inf(1), math.Inf(-1), math.NaN()} }), StatusSuccess},
		{"result over 16 MiB", with("bad-big", func(r *Record) { r.Result = `"` + strings.Repeat("x", 17<<20) + `"` }), StatusSuccess},
		{"arguments over 16 MiB", with("bad-bigargs", func(r *Record) { r.Args = []any{strings.Repeat("y", 17<<20)} }), StatusSuccess},
		{"id of 4000 bytes", mk(strings.Repeat("i", 4000)), ""},
	}
}

// TestRefusedDocumentsAreIsolated writes the catalogue interleaved with valid records
// in one batch to the real MongoDB-wire server: every valid record is stored as it is,
// every bad one in a form the store takes, and every callback answers.
func TestRefusedDocumentsAreIsolated(t *testing.T) {
	coll := testenv.Database(t).Collection("celery_taskmeta")
	w := startWriter(t, MongoStore{Coll: coll}, Config{BatchSize: 100, FlushInterval: 50 * time.Millisecond, Logger: zaptest.NewLogger(t)})
	cat := refusedCatalogue()
	var recs []*Record
	for i, c := range cat {
		recs = append(recs, rec(fmt.Sprintf("ok-%d-a", i), StatusSuccess), c.rec, rec(fmt.Sprintf("ok-%d-b", i), StatusSuccess))
	}
	done := writeAll(t, w, recs...)
	for range recs {
		select {
		case err := <-done:
			if err != nil {
				require.ErrorIs(t, err, ErrUnstorable)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("a record was never answered: the batch is held")
		}
	}
	ctx := context.Background()
	status := func(id string) (string, bson.Raw) {
		raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: safeString(id)}}).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return "", nil
		}
		require.NoError(t, err)
		return raw.Lookup("status").StringValue(), raw
	}
	for i, c := range cat {
		for _, id := range []string{fmt.Sprintf("ok-%d-a", i), fmt.Sprintf("ok-%d-b", i)} {
			s, _ := status(id)
			require.Equal(t, StatusSuccess, s, "valid record %s beside %q", id, c.name)
		}
		s, raw := status(c.rec.TaskID)
		t.Logf("%-32s stored %q (%d bytes)", c.name, s, len(raw))
		if c.want == "" {
			continue // the store decides (MongoDB takes long ids, FerretDB on PostgreSQL may not)
		}
		require.Equal(t, c.want, s, c.name)
		require.Len(t, raw, len(raw))
		require.NoError(t, raw.Validate(), c.name)
		require.LessOrEqual(t, len(raw), MaxDocumentSize, c.name)
	}
}

// rawPoisonStore is the real store, but it first puts back into marked documents what
// Document escapes, so the writer meets the store's own refusals: a NUL string (FerretDB
// on PostgreSQL fails the whole insert command), a NaN (FerretDB v1 drops the
// connection), a '$' key (a per-document write error). Forms without arguments pass.
type rawPoisonStore struct{ MongoStore }

func (s rawPoisonStore) poison(docs []bson.Raw) []bson.Raw {
	out := make([]bson.Raw, len(docs))
	for i, d := range docs {
		out[i] = d
		name, _ := d.Lookup("name").StringValueOK()
		if args := d.Lookup("args"); args.Type != bson.TypeArray {
			continue
		}
		var v any
		switch name {
		case "poison.nul":
			v = "a\x00b"
		case "poison.nan":
			v = math.NaN()
		case "poison.dollar":
			v = bson.D{{Key: "$x", Value: 1}}
		default:
			continue
		}
		var doc bson.D
		if err := bson.Unmarshal(d, &doc); err != nil {
			panic(err)
		}
		raw, err := bson.Marshal(append(doc, bson.E{Key: "x", Value: v}))
		if err != nil {
			panic(err)
		}
		out[i] = raw
	}
	return out
}

func (s rawPoisonStore) InsertMany(ctx context.Context, docs []bson.Raw) (map[int]error, error) {
	return s.MongoStore.InsertMany(ctx, s.poison(docs))
}

func (s rawPoisonStore) ReplaceMany(ctx context.Context, ids []string, docs []bson.Raw) error {
	return s.MongoStore.ReplaceMany(ctx, ids, s.poison(docs))
}

// TestStoreRefusalsAreIsolated: documents the real store refuses in each of its ways, in
// the middle of batches of valid ones, are stored without their arguments, and every
// valid document of their batch is stored as it is.
func TestStoreRefusalsAreIsolated(t *testing.T) {
	coll := testenv.Database(t).Collection("celery_taskmeta")
	w := startWriter(t, rawPoisonStore{MongoStore{Coll: coll}}, Config{BatchSize: 50, FlushInterval: 50 * time.Millisecond,
		Backoff: backoff.Policy{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}, Logger: zaptest.NewLogger(t)})
	var recs []*Record
	for i := range 40 {
		r := rec(fmt.Sprintf("ok-%d", i), StatusSuccess)
		r.Args, r.Name = []any{int64(i)}, "ccworker.add"
		recs = append(recs, r)
		if i%10 == 5 {
			p := rec(fmt.Sprintf("poison-%d", i), StatusSuccess)
			p.Args, p.Name = []any{int64(i)}, []string{"poison.nul", "poison.nan", "poison.dollar", "poison.nul"}[i/10]
			recs = append(recs, p)
		}
	}
	done := writeAll(t, w, recs...)
	for range recs {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * time.Minute):
			t.Fatal("a record was never answered: the batch is held")
		}
	}
	ctx := context.Background()
	for _, r := range recs {
		raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: r.TaskID}}).Raw()
		require.NoError(t, err, r.TaskID)
		require.Equal(t, StatusSuccess, raw.Lookup("status").StringValue(), r.TaskID)
		if strings.HasPrefix(r.TaskID, "poison") {
			require.Equal(t, bson.TypeNull, raw.Lookup("args").Type, "%s stored without its arguments", r.Name)
		} else {
			require.Equal(t, bson.TypeArray, raw.Lookup("args").Type, r.TaskID)
		}
	}
}
