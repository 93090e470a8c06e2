// Package results writes task results into MongoDB the way Celery's MongoDB backend does,
// in batches: new documents go in unordered bulk inserts and only ids that already exist
// (retries, redeliveries) are replaced. A record's callback runs once the write holding it
// is acknowledged, which is when the worker acks the message.
package results

import (
	"maps"
	"math"
	"math/big"
	"slices"
	"time"

	"github.com/ccworker/ccworker/protocol"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Celery task states written by the worker.
const (
	StatusStarted = "STARTED"
	StatusSuccess = "SUCCESS"
	StatusFailure = "FAILURE"
	StatusRetry   = "RETRY"
	StatusRevoked = "REVOKED"
)

// Record is one task's result document.
type Record struct {
	TaskID    string
	Status    string
	Result    string // the serialized value: JSON text, as result_serializer=json writes it
	Traceback string // "" is stored as null
	DateDone  time.Time
	GroupID   string // stored only when set, as Celery does
	ParentID  string // stored only when set
	// The extended fields are always written (null when unknown): Celery 5.3.4+ clients
	// with result_extended=True subscript them and fail with KeyError when one is missing.
	Name   string
	Args   []any
	Kwargs map[string]any
	Worker string
	Retry  int
	Queue  string
	// Children are the result tuples of the tasks this one sent (callbacks, the next
	// chain step), as Celery stores them: [[[id, null], null], ...]. nil is stored as [].
	Children []any
}

// Ready reports whether the state is final (SUCCESS, FAILURE, REVOKED).
func (r *Record) Ready() bool {
	return r.Status == StatusSuccess || r.Status == StatusFailure || r.Status == StatusRevoked
}

// Document returns the BSON document in Celery's field order (spec §2.3), with every
// string and key in a form both MongoDB and FerretDB store (safe.go).
func (r *Record) Document() bson.D {
	doc := make(bson.D, 0, 14)
	doc = append(doc,
		bson.E{Key: "status", Value: safeString(r.Status)},
		bson.E{Key: "result", Value: safeString(r.Result)},
		bson.E{Key: "traceback", Value: nullString(r.Traceback)},
		bson.E{Key: "children", Value: children(r.Children)},
	)
	if r.Ready() && !r.DateDone.IsZero() {
		doc = append(doc, bson.E{Key: "date_done", Value: bson.NewDateTimeFromTime(r.DateDone)})
	} else {
		doc = append(doc, bson.E{Key: "date_done", Value: nil})
	}
	if r.GroupID != "" {
		doc = append(doc, bson.E{Key: "group_id", Value: safeString(r.GroupID)})
	}
	if r.ParentID != "" {
		doc = append(doc, bson.E{Key: "parent_id", Value: safeString(r.ParentID)})
	}
	var args, kwargs any
	if r.Args != nil {
		args = portableArray(r.Args, 1)
	}
	if r.Kwargs != nil {
		kwargs = portableValue(r.Kwargs, false, 1)
	}
	doc = append(doc,
		bson.E{Key: "name", Value: nullString(r.Name)},
		bson.E{Key: "args", Value: args},
		bson.E{Key: "kwargs", Value: kwargs},
		bson.E{Key: "worker", Value: nullString(r.Worker)},
		bson.E{Key: "retries", Value: int32(r.Retry)},
		bson.E{Key: "queue", Value: nullString(r.Queue)},
		bson.E{Key: "_id", Value: safeString(r.TaskID)},
	)
	return doc
}

// children writes result tuples as they are: nested arrays, which real MongoDB stores
// and FerretDB refuses (the writer then stores [] instead; see Writer).
func children(c []any) bson.A {
	out := bson.A{}
	for _, v := range c {
		out = append(out, rawValue(v, 1))
	}
	return out
}

func rawValue(v any, depth int) any {
	switch x := v.(type) {
	case []any:
		if depth > maxDepth {
			return nil
		}
		out := make(bson.A, len(x))
		for i, e := range x {
			out[i] = rawValue(e, depth+1)
		}
		return out
	case string:
		return safeString(x)
	}
	return v
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return safeString(s)
}

func portableArray(a []any, depth int) bson.A {
	out := make(bson.A, len(a))
	for i, v := range a {
		out[i] = portableValue(v, true, depth+1)
	}
	return out
}

// portableValue converts a decoded task argument into BSON that both MongoDB and
// FerretDB store, and that pymongo reads back as Python would have written it:
//   - ints that fit in 32 bits become int32, as pymongo writes them;
//   - integers beyond 64 bits become their decimal string (BSON has no such type);
//   - an array directly inside an array becomes its JSON text, because FerretDB
//     rejects nested arrays (real MongoDB accepts them; we write only what both accept);
//   - infinite floats become "Infinity"/"-Infinity", which FerretDB also rejects, and
//     NaN becomes "NaN" (FerretDB closes the connection on it);
//   - strings and keys are escaped where a store would refuse them (safe.go), and a
//     value nested deeper than maxDepth becomes its JSON text.
func portableValue(v any, inArray bool, depth int) any {
	if depth > maxDepth {
		if text, err := protocol.AppendJSON(nil, v); err == nil {
			return safeString(string(text))
		}
		return nil
	}
	switch x := v.(type) {
	case string:
		return safeString(x)
	case int64:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int32(x)
		}
		return x
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int32(x)
		}
		return int64(x)
	case *big.Int:
		return x.String()
	case float64:
		if math.IsInf(x, 1) {
			return "Infinity"
		}
		if math.IsInf(x, -1) {
			return "-Infinity"
		}
		if math.IsNaN(x) {
			return "NaN" // FerretDB v1 drops the connection on a NaN
		}
		return x
	case []any:
		if inArray {
			// Python's JSON of the array: json.loads gives the value back.
			if text, err := protocol.AppendJSON(nil, x); err == nil {
				return safeString(string(text))
			}
			return nil
		}
		return portableArray(x, depth)
	case map[string]any:
		d := make(bson.D, 0, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			d = append(d, bson.E{Key: safeKey(k), Value: portableValue(x[k], false, depth+1)})
		}
		return d
	default:
		return v
	}
}
