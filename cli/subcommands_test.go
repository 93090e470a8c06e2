package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSubcommandUsageErrorsExit2(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "bogus"},
		{"inspect", "ping", "extra"},
		{"inspect", "query_task"},
		{"inspect", "ping", "--bogus-flag"},
		{"control", "bogus"},
		{"control", "revoke"},
		{"control", "cancel_consumer"},
		{"control", "shutdown", "x"},
		{"call"},
		{"call", "ccworker.add", "--args", "{}"},
		{"call", "ccworker.add", "--kwargs", "[1]"},
		{"call", "ccworker.add", "-n", "0"},
		{"call", "ccworker.add", "--wait", "-b", "amqp://guest:guest@127.0.0.1:1//"}, // no result backend
		{"purge", "extra"},
		{"bogus-command"},
	} {
		code, _, _ := capture(t, args...)
		assert.Equal(t, exitConfig, code, "%v", args)
	}
}

func TestNoBrokerExits1(t *testing.T) {
	isolate(t)
	code, _, stderr := capture(t, "inspect", "ping", "-b", "amqp://guest:guest@127.0.0.1:1//", "-t", "0.2")
	assert.Equal(t, exitError, code, stderr)
	assert.Contains(t, stderr, "cannot connect to the broker")
}

func TestVersionCommand(t *testing.T) {
	isolate(t)
	code, stdout, _ := capture(t, "version")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "ccworker ")
}

func TestPrettyLikeCelery(t *testing.T) {
	var buf = &stringsBuilder{}
	printReplies(buf, map[string]json.RawMessage{
		"b@h": json.RawMessage(`{"ok": "pong"}`),
		"a@h": json.RawMessage(`["ccworker.add", "ccworker.sleep"]`),
		"c@h": json.RawMessage(`[]`),
		"d@h": json.RawMessage(`{"error": "No such command"}`),
		"e@h": json.RawMessage(`{"pid": 5, "clock": "3"}`),
	})
	assert.Equal(t, `->  a@h: OK
    * ccworker.add
    * ccworker.sleep
->  b@h: OK
        pong
->  c@h: OK
    - empty -
->  d@h: ERROR
        No such command
->  e@h: OK
    {
        "clock": "3",
        "pid": 5
    }
`, buf.String())
}

type stringsBuilder struct{ b []byte }

func (s *stringsBuilder) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *stringsBuilder) String() string              { return string(s.b) }

func TestDecodeJSONArgKeepsIntegers(t *testing.T) {
	v, err := decodeJSONArg(`[2, 3.5, {"n": 7}, "x", null]`)
	require.NoError(t, err)
	assert.Equal(t, []any{int64(2), 3.5, map[string]any{"n": int64(7)}, "x", nil}, v)
	_, err = decodeJSONArg(`[1] [2]`)
	assert.Error(t, err)
}

func TestFormatException(t *testing.T) {
	assert.Equal(t, "TypeError: unsupported operand", formatException(map[string]any{
		"exc_type": "TypeError", "exc_message": []any{"unsupported operand"}, "exc_module": "builtins"}))
	assert.Equal(t, "myapp.Boom: a, 3", formatException(map[string]any{
		"exc_type": "Boom", "exc_message": []any{"a", int64(3)}, "exc_module": "myapp"}))
	assert.Equal(t, `"x"`, formatException("x"))
}
