package tasks

import (
	"context"
	"errors"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/protocol"
)

func call(t *testing.T, h Handler, args []any, kwargs map[string]any) (any, error) {
	t.Helper()
	return h(context.Background(), &Call{Args: args, Kwargs: kwargs})
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, RegisterBuiltins(r))
	require.ErrorIs(t, r.Register(NoopName, Noop), ErrDuplicate)
	require.NoError(t, r.Alias("cybercomq.tasks.tasks.add", AddName))
	require.ErrorIs(t, r.Alias("x", "missing"), ErrUnknown)
	require.ErrorIs(t, r.Alias("cybercomq.tasks.tasks.add", AddName), ErrDuplicate)
	h, ok := r.Lookup("cybercomq.tasks.tasks.add")
	require.True(t, ok)
	v, err := call(t, h, []any{int64(2), int64(3)}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(5), v)
	_, ok = r.Lookup("nope")
	require.False(t, ok)
	require.Equal(t, []string{AddName, EchoName, FailName, FlakyName, NoopName, SleepName, "cybercomq.tasks.tasks.add"}, r.Names())
}

func TestAdd(t *testing.T) {
	huge, _ := new(big.Int).SetString("9223372036854775808", 10)
	for _, tc := range []struct {
		x, y, want any
	}{
		{int64(2), int64(3), int64(5)},
		{int64(math.MaxInt64), int64(1), huge},
		{huge, int64(-1), int64(math.MaxInt64)},
		{int64(1), 0.5, 1.5},
		{"a", "b", "ab"},
		{[]any{int64(1)}, []any{"x"}, []any{int64(1), "x"}},
		{true, int64(1), int64(2)},
	} {
		v, err := call(t, Add, []any{tc.x, tc.y}, nil)
		require.NoError(t, err)
		require.Equal(t, tc.want, v)
	}
	v, err := call(t, Add, []any{int64(1)}, map[string]any{"y": int64(2)})
	require.NoError(t, err)
	require.Equal(t, int64(3), v)

	_, err = call(t, Add, []any{"a", int64(1)}, nil)
	requireException(t, err, "TypeError", "unsupported operand type(s) for +: 'str' and 'int'")
	_, err = call(t, Add, []any{int64(1)}, nil)
	requireException(t, err, "TypeError", "add() missing 1 required positional argument: 'y'")
	_, err = call(t, Add, nil, nil)
	requireException(t, err, "TypeError", "add() missing 2 required positional arguments: 'x' and 'y'")
	_, err = call(t, Add, []any{int64(1), int64(2), int64(3)}, nil)
	requireException(t, err, "TypeError", "add() takes 2 positional arguments but 3 were given")
	_, err = call(t, Add, []any{int64(1)}, map[string]any{"x": int64(2)})
	requireException(t, err, "TypeError", "add() got multiple values for argument 'x'")
	_, err = call(t, Add, []any{int64(1), int64(2)}, map[string]any{"z": int64(2)})
	requireException(t, err, "TypeError", "add() got an unexpected keyword argument 'z'")
}

func requireException(t *testing.T, err error, typ, msg string) {
	t.Helper()
	var e *Exception
	require.ErrorAs(t, err, &e)
	require.Equal(t, "builtins", e.Module)
	require.Equal(t, typ, e.Type)
	require.Equal(t, []any{msg}, e.Args)
}

func TestNoopEchoFail(t *testing.T) {
	v, err := call(t, Noop, nil, nil)
	require.NoError(t, err)
	require.Nil(t, v)
	_, err = call(t, Noop, []any{int64(1)}, nil)
	requireException(t, err, "TypeError", "noop() takes 0 positional arguments but 1 was given")

	v, err = call(t, Echo, []any{int64(1), "a"}, map[string]any{"k": true})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"args": []any{int64(1), "a"}, "kwargs": map[string]any{"k": true}}, v)
	v, err = call(t, Echo, nil, nil)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"args": []any{}, "kwargs": map[string]any{}}, v)

	_, err = call(t, Fail, []any{"boom"}, nil)
	requireException(t, err, "ValueError", "boom")
	require.Equal(t, "ValueError(boom)", err.Error())
}

func TestSleep(t *testing.T) {
	start := time.Now()
	v, err := call(t, Sleep, []any{0.02}, nil)
	require.NoError(t, err)
	require.Equal(t, 0.02, v)
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	v, err = call(t, Sleep, []any{int64(0)}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(0), v, "returns what it was given")

	cause := errors.New("soft limit")
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel(cause) }()
	_, err = Sleep(ctx, &Call{Args: []any{int64(60)}})
	require.ErrorIs(t, err, cause)

	_, err = call(t, Sleep, []any{"x"}, nil)
	requireException(t, err, "ValueError", "sleep length must be a non-negative number, not str")
	_, err = call(t, Sleep, []any{-1.0}, nil)
	require.Error(t, err)
}

func TestFlaky(t *testing.T) {
	req := &protocol.Request{ID: "x", Task: FlakyName}
	_, err := Flaky(context.Background(), &Call{Args: []any{int64(2)}, Request: req})
	var r *Retry
	require.ErrorAs(t, err, &r)
	now := time.Now()
	require.Equal(t, now, r.When(now), "countdown=0: at once")
	n, ok := r.Limit()
	require.True(t, ok)
	require.Equal(t, 2, n)
	require.Equal(t, "RuntimeError", r.Exc.Type)

	_, err = Flaky(context.Background(), &Call{Args: []any{int64(2)}, Kwargs: map[string]any{"countdown": 1.5}, Request: req})
	require.ErrorAs(t, err, &r)
	require.Equal(t, now.Add(1500*time.Millisecond), r.When(now))

	req.Retries = 2
	v, err := Flaky(context.Background(), &Call{Args: []any{int64(2)}, Request: req})
	require.NoError(t, err)
	require.Equal(t, int64(2), v)

	_, err = Flaky(context.Background(), &Call{Args: []any{"x"}, Request: req})
	requireException(t, err, "TypeError", "flaky() n must be a non-negative int, not str")
}

func TestRetryDefaults(t *testing.T) {
	now := time.Now()
	r := &Retry{}
	require.Equal(t, now.Add(DefaultRetryDelay), r.When(now))
	n, ok := r.Limit()
	require.True(t, ok)
	require.Equal(t, DefaultMaxRetries, n)
	_, ok = (&Retry{MaxRetries: -1}).Limit()
	require.False(t, ok)
	eta := now.Add(time.Hour)
	require.Equal(t, eta, (&Retry{ETA: eta, Countdown: time.Second}).When(now))
	require.Equal(t, "Retry in 3m0s", r.Error())
}

func TestOptions(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, RegisterBuiltins(r))
	require.NoError(t, r.RegisterWith("quiet", Noop, Options{IgnoreResult: true, Doc: "shh"}))
	require.NoError(t, r.Alias("q2", "quiet"))
	require.Equal(t, Options{IgnoreResult: true, Doc: "shh"}, r.Options("q2"))
	require.Contains(t, r.Options(AddName).Doc, "x + y")
	require.Equal(t, Options{}, r.Options("missing"))
}

type table map[string]any // as amqp091-go's amqp.Table

// A Go task reads any header of its message, custom ones included, and the properties.
func TestCallHeaderAndProperties(t *testing.T) {
	m, err := protocol.EncodeV2(&protocol.Request{ID: "id-1", Task: "t"})
	require.NoError(t, err)
	m.Headers["authenticated_user"] = table{"username": "admin", "n": int32(3)}
	m.Properties.AppID = "app"
	req, err := protocol.Decode(m, protocol.Accept{})
	require.NoError(t, err)
	c := &Call{Request: req, Delivery: Delivery{RoutingKey: "celery", Redelivered: true}}

	v, ok := c.Header("authenticated_user")
	require.True(t, ok)
	require.Equal(t, map[string]any{"username": "admin", "n": int64(3)}, v)
	v, ok = c.Header("id")
	require.True(t, ok)
	require.Equal(t, "id-1", v)
	_, ok = c.Header("nope")
	require.False(t, ok)

	p := c.Properties()
	require.Equal(t, "app", p["app_id"])
	require.Equal(t, "application/json", p["content_type"])
	require.Equal(t, "id-1", p["application_headers"].(map[string]any)["id"])
	require.Equal(t, true, c.DeliveryInfo()["redelivered"])
	require.Equal(t, "celery", c.DeliveryInfo()["routing_key"])

	var none Call
	_, ok = none.Header("id")
	require.False(t, ok)
	require.Empty(t, none.Properties())
}

func TestAnnotate(t *testing.T) {
	r := NewRegistry()
	require.NoError(t, r.RegisterWith("t", func(context.Context, *Call) (any, error) { return nil, nil }, Options{Doc: "d"}))
	require.NoError(t, r.Alias("a", "t"))
	no := false
	assert.True(t, r.Annotate("t", func(o *Options) { o.AcksLate = &no }))
	assert.False(t, *r.Options("a").AcksLate, "an alias has its target's options")
	assert.Equal(t, "d", r.Options("t").Doc)
	assert.False(t, r.Annotate("a", func(*Options) {}), "only a registered name")
	assert.False(t, r.Annotate("none", func(*Options) {}))
}
