package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/results"
)

// BenchmarkStoreInsert: one batch of 256 SUCCESS documents (already marshalled, as the
// writer holds them) into the real store, per op. "store" is results.MongoStore (its own
// insert command), "driver" the driver's InsertMany it replaced, which marshals each document
// again and reads it through a fresh 4 KiB bufio.Reader to find the _id (ensureID): the
// client's allocations per batch are the difference.
func BenchmarkStoreInsert(b *testing.B) {
	db := testenv.Database(b)
	ctx := context.Background()
	run := time.Now().UnixNano() // ids unique across -count runs
	batch := func(prefix string, n int) []bson.Raw {
		docs := make([]bson.Raw, 256)
		for i := range docs {
			rec := &results.Record{TaskID: fmt.Sprintf("%s-%d-%d-%03d", prefix, run, n, i), Status: results.StatusSuccess,
				Result: "null", DateDone: time.Now()}
			raw, err := bson.Marshal(rec.Document())
			if err != nil {
				b.Fatal(err)
			}
			docs[i] = raw
		}
		return docs
	}
	n := 0
	b.Run("store", func(b *testing.B) {
		s := results.MongoStore{Coll: db.Collection("store")}
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			docs := batch("s", n)
			n++
			b.StartTimer()
			if refused, err := s.InsertMany(ctx, docs); err != nil || len(refused) > 0 {
				b.Fatal(err, refused)
			}
		}
	})
	b.Run("driver", func(b *testing.B) {
		coll := db.Collection("driver")
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			docs := batch("d", n)
			n++
			b.StartTimer()
			if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
