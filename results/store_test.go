package results

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/testenv"
)

func TestInsertChunkEnd(t *testing.T) {
	docs := func(sizes ...int) []bson.Raw {
		out := make([]bson.Raw, len(sizes))
		for i, n := range sizes {
			out[i] = make(bson.Raw, n)
		}
		return out
	}
	const mib = 1 << 20
	for _, c := range []struct {
		name  string
		docs  []bson.Raw
		start int
		want  int
	}{
		{"all fit", docs(100, 200, 300), 0, 3},
		{"split by size", docs(6*mib, 6*mib, 6*mib), 0, 2},
		{"the rest", docs(6*mib, 6*mib, 6*mib), 2, 3},
		{"one over the limit goes alone", docs(17*mib, 10), 0, 1},
		{"the document after a big one", docs(15*mib, 2*mib), 0, 1},
		{"sizes include the array's keys", docs(maxInsertBytes/2-arrayElemOverhead, maxInsertBytes/2-arrayElemOverhead+1), 0, 1},
		{"exactly the limit", docs(maxInsertBytes/2-arrayElemOverhead, maxInsertBytes/2-arrayElemOverhead), 0, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, insertChunkEnd(c.docs, c.start))
		})
	}
	t.Run("statement count", func(t *testing.T) {
		many := make([]bson.Raw, maxWriteBatch+10)
		for i := range many {
			many[i] = bson.Raw{5, 0, 0, 0, 0}
		}
		assert.Equal(t, maxWriteBatch, insertChunkEnd(many, 0))
		assert.Equal(t, len(many), insertChunkEnd(many, maxWriteBatch))
	})
}

// TestInsertManySplitsAndMapsRefusals: a batch over one command's size goes as several
// insert commands, and a document refused in a later command comes back under its index
// in the whole batch, the others stored.
func TestInsertManySplitsAndMapsRefusals(t *testing.T) {
	db := testenv.Database(t)
	var mu sync.Mutex
	var inserts []int // documents per insert command
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "insert" {
			mu.Lock()
			defer mu.Unlock()
			docs, _ := e.Command.Lookup("documents").Array().Values()
			inserts = append(inserts, len(docs))
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURL(t)).SetMonitor(monitor).SetTimeout(2 * time.Minute))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database(db.Name()).Collection("celery_taskmeta")
	store := MongoStore{Coll: coll}

	ctx := context.Background()
	big := func(id string) bson.Raw {
		r := rec(id, StatusSuccess)
		r.Result = `"` + strings.Repeat("x", 6<<20) + `"`
		raw, err := r.Encode()
		require.NoError(t, err)
		return raw
	}
	refused, err := store.InsertMany(ctx, []bson.Raw{big("dup")})
	require.NoError(t, err)
	require.Empty(t, refused)

	mu.Lock()
	inserts = nil
	mu.Unlock()
	refused, err = store.InsertMany(ctx, []bson.Raw{big("a"), big("b"), big("dup"), big("c")})
	require.NoError(t, err)
	require.Len(t, refused, 1, "%v", refused)
	require.True(t, mongo.IsDuplicateKeyError(refused[2]), "%v", refused[2])
	mu.Lock()
	assert.Equal(t, []int{2, 2}, inserts)
	mu.Unlock()
	for _, id := range []string{"a", "b", "c", "dup"} {
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, id)
	}
}
