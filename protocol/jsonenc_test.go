package protocol

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(`{"m":1}`), nil }

type badMarshaler struct{}

func (badMarshaler) MarshalJSON() ([]byte, error) { return nil, errors.New("boom") }

type celsius float64

func TestAppendJSON(t *testing.T) {
	bigN, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	var nilBig *big.Int
	var nilMarshaler *json.RawMessage
	cases := []struct {
		in   any
		want string
	}{
		{nil, "null"},
		{true, "true"},
		{false, "false"},
		{int64(-5), "-5"}, {int(7), "7"}, {int8(-8), "-8"}, {int16(16), "16"}, {int32(32), "32"},
		{uint(1), "1"}, {uint8(8), "8"}, {uint16(16), "16"}, {uint32(32), "32"}, {uint64(math.MaxUint64), "18446744073709551615"},
		{bigN, "-123456789012345678901234567890"}, {nilBig, "null"},
		{2.0, "2.0"}, {0.0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {0.01, "0.01"}, {1e16, "1e+16"}, {1.5e16, "1.5e+16"},
		{1234567890123456.0, "1234567890123456.0"}, {0.0001, "0.0001"}, {0.00001, "1e-05"}, {1e100, "1e+100"},
		{123.456, "123.456"}, {1e-300, "1e-300"}, {float32(0.1), "0.10000000149011612"}, {1e22, "1e+22"},
		{math.NaN(), "NaN"}, {math.Inf(1), "Infinity"}, {math.Inf(-1), "-Infinity"},
		{"plain", `"plain"`},
		{"q\"b\\n\n\r\t\b\f\x01\x7f", `"q\"b\\n\n\r\t\b\f\u0001\u007f"`},
		{"é😀", `"\u00e9\ud83d\ude00"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
		{[]byte("bytes"), `"bytes"`},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), `"2024-01-02T03:04:05Z"`},
		{time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC), `"2024-01-02T03:04:05.123456Z"`},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", -90*60)), `"2024-01-02T03:04:05-01:30"`},
		{[]any{}, "[]"},
		{[]any{int64(1), "a", nil, []any{2.5}}, `[1, "a", null, [2.5]]`},
		{map[string]any{}, "{}"},
		{map[string]any{"b": int64(1), "a": map[string]any{"c": []any{}}}, `{"a": {"c": []}, "b": 1}`},
		{[]string{"x", "y"}, `["x", "y"]`},
		{[]int(nil), "null"},
		{[2]int{1, 2}, "[1, 2]"},
		{map[string]int{"z": 1, "y": 2}, `{"y": 2, "z": 1}`},
		{celsius(21.5), "21.5"},
		{marshaler{}, `{"m":1}`},
		{nilMarshaler, "null"},
		{struct {
			A int `json:"a"`
		}{3}, `{"a":3}`},
		{&[]any{int64(1)}, "[1]"},
		{ExceptionInfo{Type: "E", Module: "m"}, `{"exc_type": "E", "exc_message": [], "exc_module": "m"}`},
	}
	for _, tc := range cases {
		got, err := AppendJSON([]byte("prefix:"), tc.in)
		require.NoError(t, err, "%#v", tc.in)
		assert.Equal(t, "prefix:"+tc.want, string(got), "%#v", tc.in)
	}

	for _, bad := range []any{[]byte{0xff}, badMarshaler{}, make(chan int), map[string]any{"k": []byte{0xfe}}, []any{func() {}}} {
		_, err := AppendJSON(nil, bad)
		assert.Error(t, err, "%T", bad)
	}
	cyc := []any{nil}
	cyc[0] = cyc
	_, err := AppendJSON(nil, cyc)
	assert.ErrorIs(t, err, errJSONDepth)
}

// TestAppendJSONRoundTrip checks that what AppendJSON writes, the decoder
// (which follows Python's json.loads) reads back as the same value.
func TestAppendJSONRoundTrip(t *testing.T) {
	bigN, _ := new(big.Int).SetString("99999999999999999999999", 10)
	v := []any{nil, true, int64(math.MinInt64), bigN, 0.1, 1e-7, 3.0, 1e300, "ünï\x00", map[string]any{"k": []any{}}}
	b, err := AppendJSON(nil, v)
	require.NoError(t, err)
	got, err := decodeJSON(b)
	require.NoError(t, err)
	assert.Equal(t, v, got)
	for _, f := range []float64{math.SmallestNonzeroFloat64, math.MaxFloat64, 5e-324, 123456789.123, 1 / 3.0} {
		b, err := AppendJSON(nil, f)
		require.NoError(t, err)
		got, err := decodeJSON(b)
		require.NoError(t, err)
		assert.Equal(t, f, got, string(b))
	}
}

func TestExceptionInfoAppendJSON(t *testing.T) {
	for _, tc := range []struct {
		in   ExceptionInfo
		want string
	}{
		{ExceptionInfo{Type: "ValueError", Module: "builtins", Args: []any{"bad"}},
			`{"exc_type": "ValueError", "exc_message": ["bad"], "exc_module": "builtins"}`},
		{ExceptionInfo{Type: "TimeLimitExceeded", Module: "billiard.exceptions", Args: []any{30.0}},
			`{"exc_type": "TimeLimitExceeded", "exc_message": [30.0], "exc_module": "billiard.exceptions"}`},
		{ExceptionInfo{Type: "Custom"}, `{"exc_type": "Custom", "exc_message": [], "exc_module": null}`},
	} {
		got, err := tc.in.AppendJSON(nil)
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(got))
	}
	_, err := ExceptionInfo{Type: "E", Args: []any{[]byte{0xff}}}.AppendJSON(nil)
	assert.Error(t, err)
}

func TestEncodeV2MatchesCaptured(t *testing.T) {
	f := fixtureByName(t, "json-01-tasks.add")
	captured := f.message(t)
	r := &Request{
		ID: f.CorrelationID, Task: "tasks.add", Args: []any{int64(2), int64(3)},
		Origin: "gen27792@vm", ReplyTo: f.ReplyTo,
	}
	m, err := EncodeV2(r)
	require.NoError(t, err)
	assert.Equal(t, string(captured.Body), string(m.Body))
	assert.Equal(t, captured.Headers, m.Headers)
	assert.Equal(t, captured.ContentType, m.ContentType)
	assert.Equal(t, captured.ContentEncoding, m.ContentEncoding)
	assert.Equal(t, captured.CorrelationID, m.CorrelationID)
	assert.Equal(t, captured.ReplyTo, m.ReplyTo)

	// The eta format of the captured countdown message.
	r.ETA = time.Date(2026, 11, 26, 17, 41, 25, 962289000, time.UTC)
	r.TimeLimit, r.SoftTimeLimit = 30*time.Second, 1500*time.Millisecond
	m, err = EncodeV2(r)
	require.NoError(t, err)
	assert.Equal(t, "2026-11-26T17:41:25.962289+00:00", m.Headers["eta"])
	assert.Equal(t, []any{int32(30), 1.5}, m.Headers["timelimit"])

	_, err = EncodeV2(&Request{Task: "t"})
	assert.Error(t, err)
	_, err = EncodeV2(&Request{ID: "i", Task: "t", Args: []any{[]byte{0xff}}})
	assert.Error(t, err)
	_, err = EncodeV2(&Request{ID: "i", Task: "t", Kwargs: map[string]any{"k": []byte{0xff}}})
	assert.Error(t, err)
	_, err = EncodeV2(&Request{ID: "i", Task: "t", Chord: []byte{0xff}})
	assert.Error(t, err)
}

func TestEncodeV2RoundTrip(t *testing.T) {
	gi := 2
	bigN, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	r := &Request{
		Protocol: 2,
		ID:       "3f0e7a3c-1111-2222-3333-444455556666", Task: "tasks.add", Shadow: "shadowed",
		Args:      []any{int64(1), 2.5, "é", nil, true, []any{bigN}, map[string]any{"x": math.Inf(1)}},
		Kwargs:    map[string]any{"k": "v", "when": time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339)},
		Callbacks: []any{map[string]any{"task": "cb", "args": []any{}, "kwargs": map[string]any{}, "options": map[string]any{}, "subtask_type": nil, "immutable": false}},
		Errbacks:  []any{map[string]any{"task": "eb"}},
		Chain:     []any{map[string]any{"task": "c2"}, map[string]any{"task": "c1"}},
		Chord:     map[string]any{"task": "body"},
		ETA:       time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC),
		Expires:   time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC),
		Retries:   3, TimeLimit: 30 * time.Second, SoftTimeLimit: 2500 * time.Millisecond,
		RootID: "root", ParentID: "parent", GroupID: "group", GroupIndex: &gi,
		IgnoreResult: true, Origin: "gen1@host", ArgsRepr: "(1, ...)", KwargsRepr: "{...}",
		Stamps: map[string]any{"s": "v"}, StampedHeaders: []string{"s"},
		Headers:     map[string]any{"s": "v", "custom": map[string]any{"n": int64(1)}},
		ContentType: ContentTypeJSON, ContentEncoding: "utf-8",
		CorrelationID: "3f0e7a3c-1111-2222-3333-444455556666", ReplyTo: "reply", Priority: 7,
	}
	m, err := EncodeV2(r)
	require.NoError(t, err)
	m.Headers = amqpHeaders(m.Headers).(map[string]any) // nested maps as the broker would return them
	got, err := Decode(m, Accept{})
	require.NoError(t, err)
	assert.Equal(t, "v", got.MessageHeaders()["s"])
	got.rawHeaders = nil // kept for Header, not part of the round trip
	assert.Equal(t, r, got)

	// Minimal request: reprs computed, root id defaulted.
	m, err = EncodeV2(&Request{ID: "i", Task: "t", Args: []any{"a'b", int64(1)}, Kwargs: map[string]any{"k": []any{nil, false}}})
	require.NoError(t, err)
	assert.Equal(t, `("a'b", 1)`, m.Headers["argsrepr"])
	assert.Equal(t, "{'k': [None, False]}", m.Headers["kwargsrepr"])
	got, err = Decode(m, Accept{})
	require.NoError(t, err)
	assert.Equal(t, "i", got.RootID)
	assert.Equal(t, []any{"a'b", int64(1)}, got.Args)
}

func TestPyRepr(t *testing.T) {
	for _, tc := range []struct {
		in    any
		tuple bool
		want  string
	}{
		{[]any{}, true, "()"},
		{[]any{int64(1)}, true, "(1,)"},
		{[]any{0.01, 2.0, math.NaN(), math.Inf(-1)}, true, "(0.01, 2.0, nan, -inf)"},
		{[]any{"it's", `"q"`, "a\nb\x00é\u200b"}, false, `["it's", '"q"', 'a\nb\x00é\u200b']`},
		{[]any{[]byte("b"), nil, true, map[string]any{"b": int64(1), "a": []any{}}}, false, "[b'b', None, True, {'a': [], 'b': 1}]"},
	} {
		assert.Equal(t, tc.want, pyRepr(tc.in, tc.tuple))
	}
	long := pyRepr([]any{string(make([]byte, 2000))}, true)
	assert.LessOrEqual(t, len(long), maxReprLen)
	assert.Contains(t, long, "...")
}
