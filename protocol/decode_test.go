package protocol

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func mustAccept(t testing.TB, names ...string) Accept {
	t.Helper()
	a, err := NewAccept(names)
	require.NoError(t, err)
	return a
}

func TestDecodeCaptured(t *testing.T) {
	want := map[string]struct {
		args   []any
		kwargs map[string]any
	}{
		"tasks.add(2,3)":   {[]any{int64(2), int64(3)}, map[string]any{}},
		"tasks.noop":       {[]any{}, map[string]any{}},
		"tasks.sleep":      {[]any{0.01}, map[string]any{}},
		"tasks.fail":       {[]any{}, map[string]any{}},
		"tasks.add(x,y)":   {[]any{}, map[string]any{"x": int64(1), "y": int64(2)}},
		"tasks.add(1,1)+o": {[]any{int64(1), int64(1)}, map[string]any{}},
	}
	key := func(f fixture) string {
		switch {
		case strings.Contains(f.Call, "(2, 3)"):
			return "tasks.add(2,3)"
		case strings.Contains(f.Call, "kwargs"):
			return "tasks.add(x,y)"
		case strings.Contains(f.Call, "(1, 1)"):
			return "tasks.add(1,1)+o"
		}
		return f.Name[strings.Index(f.Name, "tasks."):]
	}
	accept := mustAccept(t, "json", "msgpack")
	for _, f := range loadFixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			r, err := Decode(f.message(t), accept)
			require.NoError(t, err)
			w, ok := want[key(f)]
			require.True(t, ok, key(f))
			assert.Equal(t, 2, r.Protocol)
			assert.Equal(t, f.CorrelationID, r.ID)
			assert.Equal(t, f.Headers["task"], r.Task)
			assert.Equal(t, r.Task, r.Name())
			assert.Equal(t, r.ID, r.RootID)
			assert.Equal(t, w.args, r.Args)
			assert.Equal(t, w.kwargs, r.Kwargs)
			assert.Nil(t, r.Callbacks)
			assert.Nil(t, r.Errbacks)
			assert.Nil(t, r.Chain)
			assert.Nil(t, r.Chord)
			assert.Zero(t, r.TimeLimit)
			assert.Zero(t, r.SoftTimeLimit)
			assert.Nil(t, r.GroupIndex)
			assert.Nil(t, r.Headers, "all 5.2.6 headers are known")
			assert.Equal(t, f.Headers["argsrepr"], r.ArgsRepr)
			assert.Equal(t, f.Headers["kwargsrepr"], r.KwargsRepr)
			assert.Equal(t, f.Headers["origin"], r.Origin)
			assert.Equal(t, f.ContentType, r.ContentType)
			assert.Equal(t, f.ContentEncoding, r.ContentEncoding)
			assert.Equal(t, f.ReplyTo, r.ReplyTo)
			assert.Equal(t, f.Priority, r.Priority)
			if eta, ok := f.Headers["eta"].(string); ok {
				want, err := time.Parse(time.RFC3339Nano, eta)
				require.NoError(t, err)
				assert.True(t, want.Equal(r.ETA))
				assert.Equal(t, time.UTC, r.ETA.Location())
				assert.Equal(t, time.Hour-time.Minute, r.Expires.Sub(r.ETA))
			} else {
				assert.True(t, r.ETA.IsZero())
				assert.True(t, r.Expires.IsZero())
			}
		})
	}
}

func TestDecodeNotAcceptedByDefault(t *testing.T) {
	f := fixtureByName(t, "msgpack-07-tasks.add")
	_, err := Decode(f.message(t), Accept{})
	require.ErrorIs(t, err, ErrContentDisallowed)
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, f.CorrelationID, de.ID)
	assert.Equal(t, "tasks.add", de.Task)
	assert.Equal(t, ContentTypeMsgpack, de.ContentType)
}

func TestDecodeV2Full(t *testing.T) {
	h := v2Headers("tasks.add", "id-1", map[string]any{
		"shadow":                "nice.name",
		"eta":                   "2024-01-02T03:04:05Z",
		"expires":               "2024-01-02T05:04:05.5+02:00",
		"group":                 "g-1",
		"group_index":           int8(3),
		"retries":               int64(2),
		"timelimit":             []any{int32(30), 20.5},
		"root_id":               "root",
		"parent_id":             "parent",
		"ignore_result":         true,
		"stamped_headers":       []any{"stamp1"},
		"stamps":                table{"stamp1": "v", "nested": table{"n": int16(1)}},
		"stamp1":                "v",
		"x-custom":              []any{table{"a": uint32(7)}},
		"meth":                  "run",
		"replaced_task_nesting": int32(1),
	})
	body := `[[1, "two", [3]], {"k": {"n": null}}, {"callbacks": [{"task": "cb", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}], "errbacks": [], "chain": [{"task": "c2"}, {"task": "c1"}], "chord": {"task": "body"}}]`
	r, err := Decode(jsonMsg(h, body), Accept{})
	require.NoError(t, err)
	assert.Equal(t, "nice.name", r.Name())
	assert.Equal(t, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), r.ETA)
	assert.Equal(t, time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC), r.Expires)
	assert.Equal(t, "g-1", r.GroupID)
	require.NotNil(t, r.GroupIndex)
	assert.Equal(t, 3, *r.GroupIndex)
	assert.Equal(t, 2, r.Retries)
	assert.Equal(t, 30*time.Second, r.TimeLimit)
	assert.Equal(t, 20500*time.Millisecond, r.SoftTimeLimit)
	assert.Equal(t, "root", r.RootID)
	assert.Equal(t, "parent", r.ParentID)
	assert.True(t, r.IgnoreResult)
	assert.Equal(t, []string{"stamp1"}, r.StampedHeaders)
	assert.Equal(t, map[string]any{"stamp1": "v", "nested": map[string]any{"n": int64(1)}}, r.Stamps)
	assert.Equal(t, map[string]any{
		"stamp1":                "v",
		"x-custom":              []any{map[string]any{"a": int64(7)}},
		"replaced_task_nesting": int64(1),
	}, r.Headers)
	assert.Equal(t, []any{int64(1), "two", []any{int64(3)}}, r.Args)
	assert.Equal(t, map[string]any{"k": map[string]any{"n": nil}}, r.Kwargs)
	require.Len(t, r.Callbacks, 1)
	assert.Equal(t, "cb", r.Callbacks[0].(map[string]any)["task"])
	assert.Equal(t, []any{}, r.Errbacks)
	assert.Equal(t, []any{map[string]any{"task": "c2"}, map[string]any{"task": "c1"}}, r.Chain)
	assert.Equal(t, map[string]any{"task": "body"}, r.Chord)
}

func TestDecodeEmbedNull(t *testing.T) {
	r, err := Decode(jsonMsg(v2Headers("t", "i", nil), `[[], {}, null]`), Accept{})
	require.NoError(t, err)
	assert.Nil(t, r.Callbacks)
	assert.Nil(t, r.Chord)
}

func TestDecodeHybrid(t *testing.T) {
	// Headers carry the task name; the body is a protocol 1 style map.
	h := map[string]any{"task": "tasks.add", "id": "hid", "retries": int32(4)}
	body := `{"task": "ignored.name", "id": "bodyid", "args": [1], "kwargs": {"a": 1}, "eta": "2024-05-06T07:08:09",
		"retries": 1, "timelimit": [10, null], "callbacks": [{"task": "cb"}], "errbacks": null, "chord": null,
		"origin": "o", "utc": true, "unknown": 1}`
	r, err := Decode(jsonMsg(h, body), Accept{})
	require.NoError(t, err)
	assert.Equal(t, 2, r.Protocol)
	assert.Equal(t, "tasks.add", r.Task, "headers win")
	assert.Equal(t, "hid", r.ID)
	assert.Equal(t, 4, r.Retries)
	assert.Equal(t, "o", r.Origin)
	assert.Equal(t, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), r.ETA)
	assert.Equal(t, 10*time.Second, r.TimeLimit)
	assert.Zero(t, r.SoftTimeLimit)
	assert.Equal(t, []any{int64(1)}, r.Args)
	assert.Equal(t, map[string]any{"a": int64(1)}, r.Kwargs)
	assert.Len(t, r.Callbacks, 1)
	assert.Nil(t, r.Chain)
	assert.Nil(t, r.Headers)

	// A protocol 2 body that is a map without args is not a task.
	_, err = Decode(jsonMsg(h, `{"task": "x"}`), Accept{})
	require.ErrorIs(t, err, ErrUnknownMessage)
}

func TestDecodeV1(t *testing.T) {
	body := `{"task": "tasks.add", "id": "v1id", "args": [2, "x"], "kwargs": {"k": 1.5}, "retries": 1,
		"eta": "2024-01-02T03:04:05.000001", "expires": "2024-01-03T00:00:00+01:00", "utc": true,
		"taskset": "ts", "group_index": 0, "timelimit": [5, 3], "callbacks": null, "errbacks": [{"task": "e"}],
		"chord": null}`
	m := jsonMsg(map[string]any{}, body)
	m.Headers = map[string]any{"custom": table{"a": int32(1)}}
	r, err := Decode(m, Accept{})
	require.NoError(t, err)
	assert.Equal(t, 1, r.Protocol)
	assert.Equal(t, "tasks.add", r.Task)
	assert.Equal(t, "v1id", r.ID)
	assert.Equal(t, "ts", r.GroupID)
	require.NotNil(t, r.GroupIndex)
	assert.Equal(t, 0, *r.GroupIndex)
	assert.Equal(t, time.Date(2024, 1, 2, 3, 4, 5, 1000, time.UTC), r.ETA)
	assert.Equal(t, time.Date(2024, 1, 2, 23, 0, 0, 0, time.UTC), r.Expires)
	assert.Equal(t, 5*time.Second, r.TimeLimit)
	assert.Equal(t, 3*time.Second, r.SoftTimeLimit)
	assert.Equal(t, "(2, 'x')", r.ArgsRepr)
	assert.Equal(t, "{'k': 1.5}", r.KwargsRepr)
	assert.Equal(t, []any{map[string]any{"task": "e"}}, r.Errbacks)
	assert.Equal(t, map[string]any{"custom": map[string]any{"a": int64(1)}}, r.Headers)

	// utc=false: naive times are local time.
	local := time.FixedZone("test", -5*3600)
	old := time.Local
	t.Cleanup(func() { time.Local = old })
	time.Local = local
	r, err = Decode(jsonMsg(nil, `{"task": "t", "id": "i", "eta": "2024-01-02T03:04:05", "utc": false}`), Accept{})
	require.NoError(t, err)
	assert.Equal(t, time.Date(2024, 1, 2, 8, 4, 5, 0, time.UTC), r.ETA)
	assert.Equal(t, []any{}, r.Args)
	assert.Equal(t, map[string]any{}, r.Kwargs)
	assert.Equal(t, "()", r.ArgsRepr)
}

func TestDecodeMsgpackTypes(t *testing.T) {
	big1 := new(big.Int).SetUint64(math.MaxUint64)
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	require.NoError(t, enc.Encode([]any{
		[]any{[]byte{0xff, 0}, "ü", int64(-5), uint64(math.MaxUint64), float32(1.5), 2.25, true, nil, int64(math.MinInt64),
			time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)},
		map[string]any{"k": map[string]any{"n": []any{}}},
		nil,
	}))
	m := Message{ContentType: ContentTypeMsgpack, Headers: v2Headers("t", "i", nil), Body: buf.Bytes()}
	r, err := Decode(m, mustAccept(t, "msgpack"))
	require.NoError(t, err)
	assert.Equal(t, []any{[]byte{0xff, 0}, "ü", int64(-5), big1, 1.5, 2.25, true, nil, int64(math.MinInt64),
		time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)}, r.Args)
	assert.Equal(t, map[string]any{"k": map[string]any{"n": []any{}}}, r.Kwargs)

	for name, body := range map[string][]byte{
		"int key":     {0x93, 0x90, 0x81, 0x01, 0x01, 0xc0},
		"bad utf8":    {0x93, 0x91, 0xa1, 0xff, 0x80, 0xc0},
		"extra":       {0x93, 0x90, 0x80, 0xc0, 0xc0},
		"short":       {0x93, 0x90, 0x80},
		"huge array":  {0x93, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"ext type":    {0x93, 0xd4, 0x05, 0x00, 0x80, 0xc0},
		"never used":  {0xc1},
		"bad ts size": {0x93, 0xd5, 0xff, 0x00, 0x00, 0x80, 0xc0},
	} {
		m.Body = body
		_, err := Decode(m, mustAccept(t, "msgpack"))
		assert.ErrorIs(t, err, ErrDecode, name)
	}
	// bin keys are allowed (strict_map_key accepts bytes).
	m.Body = []byte{0x93, 0x90, 0x81, 0xc4, 0x01, 'k', 0x01, 0xc0}
	r, err = Decode(m, mustAccept(t, "msgpack"))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"k": int64(1)}, r.Kwargs)
}

func TestDecodeYAML(t *testing.T) {
	body := `- [1, 2.5, "s", null, true, 2024-01-02T03:04:05Z, 123456789012345678901234567890, !!binary aGk=, .nan]
- {k: &a {x: 1}, j: *a, m: {<<: *a, y: 2}, 3: three}
- {callbacks: null, errbacks: null, chain: null, chord: null}
`
	m := Message{ContentType: ContentTypeYAML, Headers: v2Headers("t", "i", nil), Body: []byte(body)}
	r, err := Decode(m, mustAccept(t, "yaml"))
	require.NoError(t, err)
	bigN, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	require.Len(t, r.Args, 9)
	assert.Equal(t, []any{int64(1), 2.5, "s", nil, true, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), bigN, []byte("hi")}, r.Args[:8])
	assert.True(t, math.IsNaN(r.Args[8].(float64)))
	assert.Equal(t, map[string]any{
		"k": map[string]any{"x": int64(1)}, "j": map[string]any{"x": int64(1)},
		"m": map[string]any{"x": int64(1), "y": int64(2)}, "3": "three",
	}, r.Kwargs)

	for name, body := range map[string]string{
		"python tag": "- !!python/tuple [1]\n- {}\n- null\n",
		"syntax":     "- [1\n",
		"bomb":       "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
	} {
		m.Body = []byte(body)
		_, err := Decode(m, mustAccept(t, "yaml"))
		assert.ErrorIs(t, err, ErrDecode, name)
	}
	m.Body = nil // empty document is None: not a task body
	_, err = Decode(m, mustAccept(t, "yaml"))
	assert.ErrorIs(t, err, ErrUnknownMessage)
}

func compressWith(t *testing.T, method string, data []byte) []byte {
	var buf bytes.Buffer
	switch method {
	case "zlib":
		w := zlib.NewWriter(&buf)
		w.Write(data)
		w.Close()
	case "gzip":
		w := gzip.NewWriter(&buf)
		w.Write(data)
		w.Close()
	case "zstd":
		w, err := zstd.NewWriter(&buf)
		require.NoError(t, err)
		w.Write(data)
		w.Close()
	case "brotli":
		w := brotli.NewWriter(&buf)
		w.Write(data)
		w.Close()
	}
	return buf.Bytes()
}

// xzBody is lzma.compress(b'[[2, 3], {}, null]') from Python: kombu's lzma codec.
const xzBody = "fd377a585a000004e6d6b4460200210116000000742fe5a30100115b5b322c20335d2c207b7d2c206e756c6c5d0000003dfaa94051d38b2900012a124b0854bc1fb6f37d010000000004595a"

// bz2Body is bz2.compress(b'[[2, 3], {}, null]') from Python.
const bz2Body = "425a6839314159265359d26bef4a0000049b8040041800000a0005020a2000221a19008069a680f1c9110adb4e8ef177245385090d26bef4a0"

func TestDecodeCompression(t *testing.T) {
	plain := []byte(`[[2, 3], {}, null]`)
	for _, tc := range []struct{ header, method string }{
		{"application/x-gzip", "zlib"},
		{"zlib", "zlib"},
		{"gzip", "gzip"},
		{"application/zstd", "zstd"},
		{"zstd", "zstd"},
		{"application/x-brotli", "brotli"},
	} {
		t.Run(tc.header, func(t *testing.T) {
			m := jsonMsg(v2Headers("t", "i", map[string]any{"compression": tc.header}), "")
			m.Body = compressWith(t, tc.method, plain)
			r, err := Decode(m, Accept{})
			require.NoError(t, err)
			assert.Equal(t, []any{int64(2), int64(3)}, r.Args)
			assert.NotContains(t, r.Headers, "compression")
		})
	}
	t.Run("bzip2", func(t *testing.T) {
		m := jsonMsg(v2Headers("t", "i", map[string]any{"compression": "application/x-bz2"}), "")
		m.Body = mustHex(t, bz2Body)
		if _, err := bzip2.NewReader(bytes.NewReader(m.Body)).Read(make([]byte, 1)); err != nil {
			t.Skipf("fixture: %v", err)
		}
		r, err := Decode(m, Accept{})
		require.NoError(t, err)
		assert.Equal(t, []any{int64(2), int64(3)}, r.Args)
	})
	t.Run("lzma", func(t *testing.T) {
		m := jsonMsg(v2Headers("t", "i", map[string]any{"compression": "application/x-lzma"}), "")
		m.Body = mustHex(t, xzBody)
		r, err := Decode(m, Accept{})
		require.NoError(t, err)
		assert.Equal(t, []any{int64(2), int64(3)}, r.Args)
	})
	for _, method := range []string{"application/x-lzma", "application/x-brotli", "snappy"} {
		m := jsonMsg(v2Headers("t", "i", map[string]any{"compression": method}), "xx")
		_, err := Decode(m, Accept{})
		assert.ErrorIs(t, err, ErrDecode, method)
	}
	// Corrupt data and a zip bomb.
	m := jsonMsg(v2Headers("t", "i", map[string]any{"compression": "zlib"}), "not zlib")
	_, err := Decode(m, Accept{})
	assert.ErrorIs(t, err, ErrDecode)
	m.Body = compressWith(t, "zlib", make([]byte, MaxBodySize+1))
	_, err = Decode(m, Accept{})
	assert.ErrorIs(t, err, ErrDecode)
	assert.ErrorContains(t, err, "larger than")
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hexDecode(s)
	require.NoError(t, err)
	return b
}

func TestDecodeErrors(t *testing.T) {
	h := func(o map[string]any) map[string]any { return v2Headers("tasks.x", "the-id", o) }
	cases := []struct {
		name   string
		msg    Message
		want   error
		wantID string
	}{
		{"pickle", Message{ContentType: "application/x-python-serialize", Headers: h(nil), Body: []byte("\x80")}, ErrContentDisallowed, "the-id"},
		{"yaml not accepted", Message{ContentType: ContentTypeYAML, Headers: h(nil)}, ErrContentDisallowed, "the-id"},
		{"unknown type", Message{ContentType: "text/plain", Headers: h(nil)}, ErrContentDisallowed, "the-id"},
		{"raw data", Message{ContentType: "application/data", Headers: h(nil)}, ErrUnknownMessage, "the-id"},
		{"empty type", Message{Headers: h(nil)}, ErrUnknownMessage, "the-id"},
		{"v1 not a map", jsonMsg(nil, `[1, 2]`), ErrUnknownMessage, ""},
		{"v1 no task", jsonMsg(map[string]any{}, `{"id": "x"}`), ErrUnknownMessage, "x"},
		{"v2 body scalar", jsonMsg(h(nil), `"x"`), ErrUnknownMessage, "the-id"},
		{"bad json", jsonMsg(h(nil), `[[], {}, {`), ErrDecode, "the-id"},
		{"trailing", jsonMsg(h(nil), `[[], {}, null] x`), ErrDecode, "the-id"},
		{"bad utf8", jsonMsg(h(nil), "[[\"\xff\"], {}, null]"), ErrDecode, "the-id"},
		{"v1 bad json", jsonMsg(nil, `{`), ErrDecode, ""},
		{"envelope unknown", jsonMsg(h(nil), `[[{"__type__": "pickle", "__value__": "x"}], {}, null]`), ErrDecode, "the-id"},
		{"compression type", jsonMsg(h(map[string]any{"compression": int32(1)}), `[]`), ErrDecode, "the-id"},
		{"args not list", jsonMsg(h(nil), `[{}, {}, null]`), ErrInvalidTask, "the-id"},
		{"kwargs not map", jsonMsg(h(nil), `[[], [], null]`), ErrInvalidTask, "the-id"},
		{"kwargs null", jsonMsg(h(nil), `[[], null, null]`), ErrInvalidTask, "the-id"},
		{"embed not map", jsonMsg(h(nil), `[[], {}, 1]`), ErrInvalidTask, "the-id"},
		{"callbacks not list", jsonMsg(h(nil), `[[], {}, {"callbacks": {}}]`), ErrInvalidTask, "the-id"},
		{"body length", jsonMsg(h(nil), `[[], {}]`), ErrInvalidTask, "the-id"},
		{"bad eta", jsonMsg(h(map[string]any{"eta": "tomorrow"}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"eta day", jsonMsg(h(map[string]any{"eta": "2024-02-30T00:00:00"}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"numeric expires", jsonMsg(h(map[string]any{"expires": int32(60)}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"timelimit shape", jsonMsg(h(map[string]any{"timelimit": []any{int32(1)}}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"timelimit type", jsonMsg(h(map[string]any{"timelimit": "30"}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"timelimit negative", jsonMsg(h(map[string]any{"timelimit": []any{-1.0, nil}}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"timelimit nan", jsonMsg(h(map[string]any{"timelimit": []any{math.NaN(), nil}}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"retries type", jsonMsg(h(map[string]any{"retries": "1"}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"retries fraction", jsonMsg(h(map[string]any{"retries": 1.5}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"group_index type", jsonMsg(h(map[string]any{"group_index": "1"}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"ignore_result type", jsonMsg(h(map[string]any{"ignore_result": "yes"}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"stamps type", jsonMsg(h(map[string]any{"stamps": []any{}}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"stamped_headers type", jsonMsg(h(map[string]any{"stamped_headers": []any{int32(1)}}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"origin type", jsonMsg(h(map[string]any{"origin": int32(1)}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"id missing", jsonMsg(h(map[string]any{"id": del{}}), `[[], {}, null]`), ErrInvalidTask, ""},
		{"task empty", jsonMsg(h(map[string]any{"task": ""}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"task null", jsonMsg(h(map[string]any{"task": nil}), `[[], {}, null]`), ErrInvalidTask, "the-id"},
		{"v1 args", jsonMsg(nil, `{"task": "t", "id": "v1", "args": 1}`), ErrInvalidTask, "v1"},
		{"v1 args null", jsonMsg(nil, `{"task": "t", "id": "v1", "args": null}`), ErrInvalidTask, "v1"},
		{"v1 kwargs", jsonMsg(nil, `{"task": "t", "id": "v1", "kwargs": []}`), ErrInvalidTask, "v1"},
		{"v1 utc", jsonMsg(nil, `{"task": "t", "id": "v1", "utc": 1}`), ErrInvalidTask, "v1"},
		{"v1 taskset", jsonMsg(nil, `{"task": "t", "id": "v1", "taskset": 1}`), ErrInvalidTask, "v1"},
		{"v1 no id", jsonMsg(nil, `{"task": "t"}`), ErrInvalidTask, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode(tc.msg, Accept{})
			require.Error(t, err)
			assert.Nil(t, r)
			assert.ErrorIs(t, err, tc.want)
			for _, other := range []error{ErrUnknownMessage, ErrContentDisallowed, ErrDecode, ErrInvalidTask} {
				if other != tc.want {
					assert.NotErrorIs(t, err, other)
				}
			}
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			if tc.wantID != "" || de.ID != "" {
				assert.Equal(t, tc.wantID, de.ID)
			}
			assert.Equal(t, tc.msg.ContentType, de.ContentType)
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	err := &DecodeError{ID: "i", Task: "t", ContentType: "application/json", Err: ErrDecode}
	assert.Equal(t, "protocol: cannot decode body (task t, id i, content type application/json)", err.Error())
	assert.Equal(t, "protocol: cannot decode body", (&DecodeError{Err: ErrDecode}).Error())
	assert.True(t, errors.Is(err, ErrDecode))
}

func TestDecodeEnvelopes(t *testing.T) {
	args := `[{"__type__": "datetime", "__value__": "2024-01-02T03:04:05.123456+01:00"},
		{"__type__": "datetime", "__value__": "2024-01-02T03:04:05"},
		{"__type__": "date", "__value__": "2024-01-02"},
		{"__type__": "time", "__value__": "03:04:05"},
		{"__type__": "decimal", "__value__": "1.50"},
		{"__type__": "uuid", "__value__": {"hex": "0123456789abcdef0123456789abcdef", "version": 4}},
		{"__type__": "uuid", "__value__": {"hex": "{01234567-89ab-cdef-0123-456789ABCDEF}"}},
		{"__type__": "bytes", "__value__": "hé"},
		{"__type__": "base64", "__value__": "/wA="},
		{"__type__": "datetime", "__value__": "x", "other": 1},
		{"__type__": "x"}]`
	r, err := Decode(jsonMsg(v2Headers("t", "i", nil), "["+args+`, {}, null]`), Accept{})
	require.NoError(t, err)
	assert.Equal(t, []any{
		time.Date(2024, 1, 2, 2, 4, 5, 123456000, time.UTC),
		time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC),
		"03:04:05",
		"1.50",
		"01234567-89ab-4def-8123-456789abcdef",
		"01234567-89ab-cdef-0123-456789abcdef",
		[]byte("hé"),
		[]byte{0xff, 0},
		map[string]any{"__type__": "datetime", "__value__": "x", "other": int64(1)},
		map[string]any{"__type__": "x"},
	}, r.Args)

	for _, bad := range []string{
		`{"__type__": "datetime", "__value__": "nope"}`,
		`{"__type__": "datetime", "__value__": 1}`,
		`{"__type__": "date", "__value__": "2024-01-02T00:00:00"}`,
		`{"__type__": "uuid", "__value__": {"hex": "zz"}}`,
		`{"__type__": "uuid", "__value__": {"hex": "0123456789abcdef0123456789abcdeg"}}`,
		`{"__type__": "uuid", "__value__": {"hex": "0123456789abcdef0123456789abcdef", "version": 9}}`,
		`{"__type__": "uuid", "__value__": {"hex": "0123456789abcdef0123456789abcdef", "bytes": 1}}`,
		`{"__type__": "uuid", "__value__": "0123456789abcdef0123456789abcdef"}`,
		`{"__type__": "uuid", "__value__": {}}`,
		`{"__type__": "base64", "__value__": "!!"}`,
		`{"__type__": 1, "__value__": "x"}`,
	} {
		_, err := Decode(jsonMsg(v2Headers("t", "i", nil), "[["+bad+`], {}, null]`), Accept{})
		assert.ErrorIs(t, err, ErrDecode, bad)
	}
}

func TestDecodeJSONNumbers(t *testing.T) {
	body := `[[NaN, Infinity, -Infinity, 12345678901234567890123, -9223372036854775808, 9223372036854775807,
		-0, 1e400, 1.5e-400, 0.5, 1E+2, 123456789012345678, "\u00e9\ud83d\ude00\ud800x\"\\\/\b\f\n\r\t"], {}, null]`
	r, err := Decode(jsonMsg(v2Headers("t", "i", nil), body), Accept{})
	require.NoError(t, err)
	a := r.Args
	assert.True(t, math.IsNaN(a[0].(float64)))
	assert.Equal(t, math.Inf(1), a[1])
	assert.Equal(t, math.Inf(-1), a[2])
	bigN, _ := new(big.Int).SetString("12345678901234567890123", 10)
	assert.Equal(t, bigN, a[3])
	assert.Equal(t, int64(math.MinInt64), a[4])
	assert.Equal(t, int64(math.MaxInt64), a[5])
	assert.Equal(t, int64(0), a[6])
	assert.Equal(t, math.Inf(1), a[7])
	assert.Equal(t, 0.0, a[8])
	assert.Equal(t, 0.5, a[9])
	assert.Equal(t, 100.0, a[10])
	assert.Equal(t, int64(123456789012345678), a[11])
	assert.Equal(t, "é😀\ufffdx\"\\/\b\f\n\r\t", a[12])

	for _, bad := range []string{"01", "1.", ".5", "-", "+1", "1e", "nan", "[1,]", `{"a" 1}`, `{1: 2}`, "\"\x01\"", `"\x"`, `"\u12"`, "tru", strings.Repeat("[", 1001) + strings.Repeat("]", 1001), "1" + strings.Repeat("0", 5000)} {
		_, err := Decode(jsonMsg(v2Headers("t", "i", nil), "[["+bad+"], {}, null]"), Accept{})
		assert.ErrorIs(t, err, ErrDecode, bad)
	}
}

func TestDecodeISOForms(t *testing.T) {
	want := time.Date(2026, 11, 26, 17, 41, 25, 962289000, time.UTC)
	for in, w := range map[string]time.Time{
		"2026-11-26T17:41:25.962289+00:00": want,
		"2026-11-26T17:41:25.962289Z":      want,
		"2026-11-26T17:41:25.962289":       want,
		"2026-11-26 17:41:25.962289":       want,
		"2026-11-26T18:41:25.962289+0100":  want,
		"2026-11-26T12:41:25.962289-05":    want,
		"2026-11-26T17:41:25.9622891234Z":  want,
		"2026-11-26T17:41:25+00:00":        want.Truncate(time.Second),
		"2026-11-26T17:41Z":                want.Truncate(time.Minute),
		"2026-11-26":                       time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		"2024-2-29":                        time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"":                                 {},
	} {
		r, err := Decode(jsonMsg(v2Headers("t", "i", map[string]any{"eta": in}), `[[], {}, null]`), Accept{})
		require.NoError(t, err, in)
		assert.True(t, w.Equal(r.ETA), "%s: %v", in, r.ETA)
	}
	// An AMQP timestamp header is used as is.
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))
	r, err := Decode(jsonMsg(v2Headers("t", "i", map[string]any{"eta": ts, "expires": []byte("2024-01-01")}), `[[], {}, null]`), Accept{})
	require.NoError(t, err)
	assert.Equal(t, ts.UTC(), r.ETA)
	assert.Equal(t, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), r.Expires)

	for _, bad := range []string{"2026-13-01", "2026-11-26T25:00:00", "2026-11-26T17:41:25.", "2026-11-26T17:41:25+25:00",
		"2026-11-26T17:41:25 garbage", "26-11-2026", "2026-11-26T17", "2026-11-26T17:61", "2026-11-26T17:41:61"} {
		_, err := Decode(jsonMsg(v2Headers("t", "i", map[string]any{"eta": bad}), `[[], {}, null]`), Accept{})
		assert.ErrorIs(t, err, ErrInvalidTask, bad)
	}
}

func TestDecodeHeaderNumberTypes(t *testing.T) {
	for _, v := range []any{int8(2), int16(2), int32(2), int64(2), int(2), uint8(2), uint16(2), uint32(2), uint64(2), uint(2), float32(2), 2.0} {
		r, err := Decode(jsonMsg(v2Headers("t", "i", map[string]any{"retries": v, "timelimit": []any{v, float32(0.5)}}), `[[], {}, null]`), Accept{})
		require.NoError(t, err, "%T", v)
		assert.Equal(t, 2, r.Retries, "%T", v)
		assert.Equal(t, 2*time.Second, r.TimeLimit, "%T", v)
		assert.Equal(t, 500*time.Millisecond, r.SoftTimeLimit)
	}
	r, err := Decode(jsonMsg(v2Headers("t", "i", map[string]any{"retries": nil, "timelimit": nil, "ignore_result": nil}), `[[], {}, null]`), Accept{})
	require.NoError(t, err)
	assert.Zero(t, r.Retries)
}

func TestNewAccept(t *testing.T) {
	a, err := NewAccept(nil)
	require.NoError(t, err)
	assert.True(t, a.Accepts(ContentTypeJSON))
	assert.False(t, a.Accepts(ContentTypeMsgpack))
	assert.False(t, a.Accepts(ContentTypeYAML))

	a, err = NewAccept([]string{"msgpack", "application/x-yaml"})
	require.NoError(t, err)
	assert.False(t, a.Accepts(ContentTypeJSON))
	assert.True(t, a.Accepts(ContentTypeMsgpack))
	assert.True(t, a.Accepts(ContentTypeYAML))
	assert.False(t, a.Accepts("application/x-python-serialize"))

	a, err = NewAccept([]string{"application/json", "yaml", "application/x-msgpack"})
	require.NoError(t, err)
	assert.True(t, a.Accepts(ContentTypeJSON) && a.Accepts(ContentTypeMsgpack) && a.Accepts(ContentTypeYAML))

	for _, bad := range []string{"pickle", "application/x-python-serialize", "bson", ""} {
		_, err := NewAccept([]string{"json", bad})
		assert.Error(t, err, bad)
	}
}

func TestRequestName(t *testing.T) {
	r := &Request{Task: "a"}
	assert.Equal(t, "a", r.Name())
	r.Shadow = "b"
	assert.Equal(t, "b", r.Name())
}

func TestDecodeDoesNotMutateHeaders(t *testing.T) {
	h := v2Headers("t", "i", map[string]any{"custom": table{"a": int32(1)}})
	_, err := Decode(jsonMsg(h, `[[], {}, null]`), Accept{})
	require.NoError(t, err)
	assert.Equal(t, table{"a": int32(1)}, h["custom"])
}

// A protocol 1 body is read in map order; an error must name the task whichever field
// was read first (the id was named in about 1 of 4 runs).
func TestDecodeErrorNamesProtocol1Task(t *testing.T) {
	body := []byte(`{"task": "tasks.add", "id": "v1-id", "args": [1, 2], "kwargs": {}, "retries": 1e400, "eta": null, "utc": true}`)
	for range 50 {
		_, err := Decode(Message{ContentType: ContentTypeJSON, ContentEncoding: "utf-8", Body: body}, Accept{})
		var de *DecodeError
		require.ErrorAs(t, err, &de)
		require.Equal(t, "v1-id", de.ID, "%v", err)
		require.Equal(t, "tasks.add", de.Task)
	}
}
