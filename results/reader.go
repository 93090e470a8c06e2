package results

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Stored is a task's stored result as a Celery client reads it.
type Stored struct {
	Status string
	// Result is the decoded result field: the return value for SUCCESS, the exception
	// map {"exc_type", "exc_message", "exc_module"} for FAILURE, RETRY and REVOKED.
	Result    any
	Traceback string
}

// Results reads the documents of ids (in batches of 500 with $in; ids without a
// document are left out). It is what celery.chord_unlock needs.
func (s MongoStore) Results(ctx context.Context, ids []string) (map[string]Stored, error) {
	out := make(map[string]Stored, len(ids))
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		cur, err := s.Coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: chunk}}}})
		if err != nil {
			return nil, fmt.Errorf("results: read %d ids: %w", len(chunk), err)
		}
		var docs []struct {
			ID        string `bson:"_id"`
			Status    string `bson:"status"`
			Result    any    `bson:"result"`
			Traceback any    `bson:"traceback"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return nil, fmt.Errorf("results: read %d ids: %w", len(chunk), err)
		}
		for _, d := range docs {
			st := Stored{Status: d.Status}
			if tb, ok := d.Traceback.(string); ok {
				st.Traceback = tb
			}
			if text, ok := d.Result.(string); ok {
				v, err := decodeJSON(text)
				if err != nil {
					return nil, fmt.Errorf("results: task %s: result is not JSON: %w", d.ID, err)
				}
				st.Result = v
			}
			out[d.ID] = st
		}
	}
	return out, nil
}

// decodeJSON reads a result field into the worker's value model: integers stay
// integers (int64, or *big.Int beyond), other numbers are float64.
func decodeJSON(text string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if b, ok := new(big.Int).SetString(string(x), 10); ok {
			return b
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	}
	return v
}
