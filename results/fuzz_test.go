package results

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/protocol"
)

// FuzzDocument drives any message Decode accepts into the result documents the worker
// stores for it (an echo of its arguments, a FAILURE naming it, with children) and
// checks each is valid BSON within MaxDocumentSize holding nothing MongoDB or FerretDB
// refuses (see safe.go).
func FuzzDocument(f *testing.F) {
	f.Add(protocol.ContentTypeJSON, "id-1", "ccworker.add", []byte(`[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`))
	f.Add(protocol.ContentTypeJSON, "id\x00", "ccworker.add\x00\x1b[2J\x07\r", []byte(`[["a\u0000b", [[1]], NaN, Infinity], {"$where": {"a.b": 1}, "k\u0000": 1}, null]`))
	f.Add(protocol.ContentTypeJSON, "i", "t", []byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], {}, null]`))
	f.Add(protocol.ContentTypeYAML, "i", "t", []byte("- [1, !!binary aGk=, 2024-01-01, .nan]\n- {$a: &x [1], b.c: *x}\n- null\n"))
	f.Add(protocol.ContentTypeMsgpack, "i", "t", []byte{0x93, 0x91, 0xa2, 0xff, 0xfe, 0x81, 0xa2, '$', 'x', 0x01, 0xc0})
	f.Add(protocol.ContentTypeJSON, "i", "t", []byte(`[[123456789012345678901234567890, -1e400], {"\ud800": "\udfff"}, null]`))
	accept, err := protocol.NewAccept([]string{"json", "msgpack", "yaml"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, contentType, id, task string, body []byte) {
		req, err := protocol.Decode(protocol.Message{ContentType: contentType,
			Headers: map[string]any{"id": id, "task": task, "lang": "py"}, Body: body}, accept)
		if err != nil {
			return
		}
		for _, rec := range recordsFor(req) {
			raw, err := rec.Encode()
			if err != nil {
				t.Fatalf("Encode(%s): %v", rec.Status, err)
			}
			if err := refused(raw); err != nil {
				t.Fatalf("%s document would be refused: %v", rec.Status, err)
			}
		}
	})
}

// recordsFor is what the worker stores for req: a SUCCESS echoing its arguments (or
// their text when not JSON), and a FAILURE naming the task, with a child.
func recordsFor(req *protocol.Request) []*Record {
	base := Record{TaskID: req.ID, DateDone: time.Now(), GroupID: req.GroupID, ParentID: req.ParentID,
		Name: req.Task, Args: req.Args, Kwargs: req.Kwargs, Worker: "celery@fuzz", Retry: req.Retries, Queue: "celery"}
	ok := base
	ok.Status = StatusSuccess
	if text, err := protocol.AppendJSON(nil, req.Args); err == nil {
		ok.Result = string(text)
	} else {
		text, _ := protocol.AppendJSON(nil, fmt.Sprint(req.Args))
		ok.Result = string(text)
	}
	failed := base
	failed.Status = StatusFailure
	info, _ := protocol.ExceptionInfo{Type: "NotRegistered", Module: "celery.exceptions", Args: []any{req.Task}}.AppendJSON(nil)
	failed.Result, failed.Traceback = string(info), req.ArgsRepr+"\n"+req.KwargsRepr
	failed.Children = []any{[]any{[]any{req.ID, nil}, nil}}
	return []*Record{&ok, &failed}
}

// refused returns why MongoDB or FerretDB would refuse raw, or nil: invalid BSON, over
// MaxDocumentSize, a string or key with NUL or invalid UTF-8, a key starting with '$'
// or holding '.', a NaN, nesting over 100 levels, or an array directly inside an array
// anywhere but children (the writer stores those as [] where they are refused).
func refused(raw bson.Raw) error {
	if err := raw.Validate(); err != nil {
		return fmt.Errorf("invalid BSON: %w", err)
	}
	if len(raw) > MaxDocumentSize {
		return fmt.Errorf("%d bytes, over %d", len(raw), MaxDocumentSize)
	}
	return refusedDoc(raw, "", 1)
}

func refusedDoc(d bson.Raw, path string, depth int) error {
	if depth > 100 {
		return fmt.Errorf("%s: nested over 100 levels", path)
	}
	elems, err := d.Elements()
	if err != nil {
		return err
	}
	for _, e := range elems {
		k := e.Key()
		if !utf8.ValidString(k) || strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00") {
			return fmt.Errorf("%s: key %q", path, k)
		}
		if err := refusedValue(e.Value(), path+"."+k, depth, false); err != nil {
			return err
		}
	}
	return nil
}

func refusedValue(v bson.RawValue, path string, depth int, inArray bool) error {
	switch v.Type {
	case bson.TypeString:
		s := v.StringValue()
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%s: string %q", path, s)
		}
	case bson.TypeDouble:
		if math.IsNaN(v.Double()) {
			return fmt.Errorf("%s: NaN", path)
		}
	case bson.TypeEmbeddedDocument:
		return refusedDoc(v.Document(), path, depth+1)
	case bson.TypeArray:
		if inArray && !strings.HasPrefix(path, ".children") {
			return fmt.Errorf("%s: array in an array", path)
		}
		if depth+1 > 100 {
			return fmt.Errorf("%s: nested over 100 levels", path)
		}
		vals, err := v.Array().Values()
		if err != nil {
			return err
		}
		for i, e := range vals {
			if err := refusedValue(e, fmt.Sprintf("%s[%d]", path, i), depth+1, true); err != nil {
				return err
			}
		}
	}
	return nil
}
