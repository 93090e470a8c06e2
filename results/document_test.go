package results

import (
	"context"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func asMap(d bson.D) map[string]any {
	m := make(map[string]any, len(d))
	for _, e := range d {
		m[e.Key] = e.Value
	}
	return m
}

func keys(d bson.D) []string {
	var ks []string
	for _, e := range d {
		ks = append(ks, e.Key)
	}
	return ks
}

func TestDocumentHasCeleryFieldsInOrder(t *testing.T) {
	r := &Record{TaskID: "id1", Status: StatusSuccess, Result: "5", DateDone: time.Unix(1700000000, 0),
		ParentID: "p", Name: "ccworker.add", Args: []any{int64(2), int64(3)}, Kwargs: map[string]any{},
		Worker: "celery@vm", Queue: "remote"}
	d := r.Document()
	require.Equal(t, []string{"status", "result", "traceback", "children", "date_done", "parent_id",
		"name", "args", "kwargs", "worker", "retries", "queue", "_id"}, keys(d))
	m := asMap(d)
	require.Nil(t, m["traceback"])
	require.Equal(t, bson.A{}, m["children"])
	require.Equal(t, bson.NewDateTimeFromTime(time.Unix(1700000000, 0)), m["date_done"])
	require.Equal(t, bson.A{int32(2), int32(3)}, m["args"])
	require.Equal(t, int32(0), m["retries"])
}

func TestDocumentNullsWhatIsUnknownOrNotReady(t *testing.T) {
	d := (&Record{TaskID: "id", Status: StatusRetry, Result: "null", DateDone: time.Now()}).Document()
	m := asMap(d)
	for _, k := range []string{"date_done", "name", "args", "kwargs", "worker", "queue", "traceback"} {
		v, ok := m[k]
		require.True(t, ok, k)
		require.Nil(t, v, k)
	}
	require.NotContains(t, keys(d), "group_id")
}

func TestPortableValues(t *testing.T) {
	big := new(big.Int).Lsh(big.NewInt(1), 70)
	d := asMap((&Record{TaskID: "i", Status: StatusSuccess, Args: []any{
		[]any{int64(1), []any{int64(2)}}, int64(1) << 40, big, math.Inf(1),
	}, Kwargs: map[string]any{"m": []any{[]any{"a"}}}}).Document())
	require.Equal(t, bson.A{`[1, [2]]`, int64(1) << 40, big.String(), "Infinity"}, d["args"])
	require.Equal(t, bson.D{{Key: "m", Value: bson.A{`["a"]`}}}, d["kwargs"])
}

// The same documents against a real MongoDB-wire server: inserts, replaces of existing
// ids, nested-array arguments, and the date_done index.
func TestMongoStoreRoundTrip(t *testing.T) {
	db := testenv.Database(t)
	coll := db.Collection("celery_taskmeta")
	ctx := context.Background()
	require.NoError(t, EnsureIndex(ctx, coll))
	w := startWriter(t, MongoStore{Coll: coll}, Config{BatchSize: 10, FlushInterval: 5 * time.Millisecond})

	first := &Record{TaskID: "a", Status: StatusRetry, Result: `{"exc_type": "KeyError", "exc_message": ["k"], "exc_module": "builtins"}`,
		Traceback: "tb", Name: "ccworker.flaky", Args: []any{[]any{int64(1), []any{int64(2)}}}, Kwargs: map[string]any{"x": "y"}}
	done := writeAll(t, w, first, &Record{TaskID: "b", Status: StatusSuccess, Result: "null", DateDone: time.Now()})
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	second := *first
	second.Status, second.Result, second.Traceback, second.DateDone = StatusSuccess, "3", "", time.Now()
	require.NoError(t, <-writeAll(t, w, &second))

	var got bson.D
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got))
	m := asMap(got)
	require.Equal(t, StatusSuccess, m["status"])
	require.Equal(t, "3", m["result"])
	require.IsType(t, bson.DateTime(0), m["date_done"])
	n, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 2, n)

	cur, err := coll.Indexes().List(ctx)
	require.NoError(t, err)
	var idx []bson.M
	require.NoError(t, cur.All(ctx, &idx))
	var names []any
	for _, i := range idx {
		names = append(names, i["name"])
	}
	require.Contains(t, names, "date_done_1")
}
