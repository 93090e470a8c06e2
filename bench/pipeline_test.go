package bench

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/results"
)

// celeryAdd is the body and headers Celery 5.2.6 sends for add(2, 3) (captured).
func celeryAdd() protocol.Message {
	return protocol.Message{
		ContentType: "application/json", ContentEncoding: "utf-8",
		Headers: map[string]any{
			"lang": "py", "task": "ccworker.add", "id": "ac2180eb-dc40-4efc-a641-6d6ae6eb282b", "shadow": nil,
			"eta": nil, "expires": nil, "group": nil, "group_index": nil, "retries": int32(0),
			"timelimit": []any{nil, nil}, "root_id": "ac2180eb-dc40-4efc-a641-6d6ae6eb282b", "parent_id": nil,
			"argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen24950@vm", "ignore_result": false,
		},
		Body:          []byte(`[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		CorrelationID: "ac2180eb-dc40-4efc-a641-6d6ae6eb282b",
	}
}

// BenchmarkDecodeCeleryJSON: one captured Celery message into a Request.
func BenchmarkDecodeCeleryJSON(b *testing.B) {
	m := celeryAdd()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.Decode(m, protocol.Accept{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResultDocument: a SUCCESS record to the BSON the writer sends.
func BenchmarkResultDocument(b *testing.B) {
	rec := &results.Record{TaskID: "ac2180eb-dc40-4efc-a641-6d6ae6eb282b", Status: results.StatusSuccess,
		Result: "5", DateDone: time.Now(), Name: "ccworker.add", Args: []any{int64(2), int64(3)},
		Kwargs: map[string]any{}, Worker: "celery@vm", Queue: "remote"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bson.Marshal(rec.Document()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolDispatch: submit a no-op job and wait for its outcome callback, with 512 slots.
func BenchmarkPoolDispatch(b *testing.B) {
	p, err := pool.New(512)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(context.Background())
	var wg sync.WaitGroup
	job := pool.Job{Run: func(context.Context) (any, error) { return nil, nil }, Done: func(pool.Outcome) { wg.Done() }}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		if err := p.Submit(ctx, job); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

// nullStore accepts every batch at once: the writer's own cost per record.
type nullStore struct{}

func (nullStore) InsertMany(context.Context, []bson.Raw) (map[int]error, error) { return nil, nil }
func (nullStore) ReplaceMany(context.Context, []string, []bson.Raw) error       { return nil }

// BenchmarkResultWriter: records through the batching writer (256 a batch) to a store that
// costs nothing, callbacks included.
func BenchmarkResultWriter(b *testing.B) {
	w := results.NewWriter(nullStore{}, results.Config{BatchSize: 256, FlushInterval: time.Millisecond})
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer w.Stop(context.Background())
	var wg sync.WaitGroup
	done := func(error) { wg.Done() }
	rec := &results.Record{TaskID: "id", Status: results.StatusSuccess, Result: "null", DateDone: time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		if err := w.Write(ctx, rec, done); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}
