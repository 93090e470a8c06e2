package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/results"
)

// BenchmarkStoreInsert: one batch of 256 SUCCESS documents (already marshalled, as the
// writer holds them) into the real store, per op; the client's allocations per batch are
// what the profile blamed on the driver's InsertMany (a 4 KiB bufio.Reader per document in
// ensureID, to decode an _id we set ourselves). "driver" is results.MongoStore (the driver's
// InsertMany), "command" the same insert command sent with RunCommand (no per-document
// marshal, no ensureID): the gain an own insert command would bring, before weighing what
// it gives up (the collection's write concern, retryable writes, batch splitting by size).
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
	b.Run("driver", func(b *testing.B) {
		s := results.MongoStore{Coll: db.Collection("driver")}
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			docs := batch("d", n)
			n++
			b.StartTimer()
			if refused, err := s.InsertMany(ctx, docs); err != nil || len(refused) > 0 {
				b.Fatal(err, refused)
			}
		}
	})
	b.Run("command", func(b *testing.B) {
		coll := db.Collection("command")
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			docs := batch("c", n)
			n++
			b.StartTimer()
			var res struct {
				N           int      `bson:"n"`
				WriteErrors []bson.M `bson:"writeErrors"`
			}
			err := db.RunCommand(ctx, bson.D{{Key: "insert", Value: coll.Name()}, {Key: "documents", Value: docs},
				{Key: "ordered", Value: false}}).Decode(&res)
			if err != nil || res.N != len(docs) || len(res.WriteErrors) > 0 {
				b.Fatal(err, res)
			}
		}
	})
}
