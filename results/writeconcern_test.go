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

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/internal/testenv"
)

// TestWriteConcernFromTheURLReachesEveryWrite: w=majority and journal=true in the result
// backend URL (what docs/cluster.md asks of a replica set) survive ccworker's URL rewriting
// and go with every insert and replace the writer sends, so a result the writer reports
// durable (and the task is acked for) is on a majority of the members, and survives a
// primary failover.
func TestWriteConcernFromTheURLReachesEveryWrite(t *testing.T) {
	base := strings.TrimSuffix(testenv.MongoURL(t), "/")
	db := testenv.Name(t, "wc")
	m, err := config.ParseMongoBackend(base+"/"+db+"?w=majority&journal=true&wtimeoutMS=10000", nil)
	require.NoError(t, err)
	assert.Contains(t, m.URI, "w=majority")
	assert.Contains(t, m.URI, "journal=true")

	var mu sync.Mutex
	concerns := map[string]bson.Raw{} // command name -> its writeConcern
	monitor := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName != "insert" && e.CommandName != "update" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if wc, err := e.Command.LookupErr("writeConcern"); err == nil {
			concerns[e.CommandName] = wc.Document()
		} else {
			concerns[e.CommandName] = nil
		}
	}}
	opts := options.Client().ApplyURI(m.URI).SetMonitor(monitor)
	client, err := mongo.Connect(opts)
	require.NoError(t, err)
	coll := client.Database(m.Database).Collection(m.Collection)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = client.Database(m.Database).Drop(ctx)
		_ = client.Disconnect(ctx)
	})

	w := startWriter(t, MongoStore{Coll: coll, WriteConcern: opts.WriteConcern}, Config{BatchSize: 1})
	rec := &Record{TaskID: "wc-1", Status: StatusSuccess, Result: "1", DateDone: time.Now()}
	for range 2 { // an insert, then a replace of the same id
		select {
		case err := <-writeAll(t, w, rec):
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("the write was never acknowledged")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, cmd := range []string{"insert", "update"} {
		wc, ok := concerns[cmd]
		require.True(t, ok, "no %s command seen", cmd)
		require.NotNil(t, wc, "%s sent without a writeConcern", cmd)
		assert.Equal(t, "majority", wc.Lookup("w").StringValue(), cmd)
		assert.True(t, wc.Lookup("j").Boolean(), cmd)
	}
}
