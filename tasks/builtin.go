package tasks

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"time"
)

// Names of the built-in tasks; tests, demos and benchmarks depend on them.
const (
	NoopName  = "ccworker.noop"
	AddName   = "ccworker.add"
	SleepName = "ccworker.sleep"
	EchoName  = "ccworker.echo"
	FailName  = "ccworker.fail"
)

// builtins are the built-in tasks with their docstrings.
var builtins = map[string]struct {
	h   Handler
	doc string
}{
	NoopName:  {Noop, "Do nothing; return None."},
	AddName:   {Add, "Return x + y (ints stay ints; strings and lists concatenate)."},
	SleepName: {Sleep, "Wait seconds without holding a thread, then return seconds."},
	EchoName:  {Echo, "Return {'args': args, 'kwargs': kwargs}."},
	FailName:  {Fail, "Raise ValueError(message)."},
	FlakyName: {Flaky, "Retry until the retry count is n, then return n."},
}

// RegisterBuiltins registers the built-in tasks.
func RegisterBuiltins(r *Registry) error {
	for name := range builtins {
		if err := RegisterBuiltinAs(r, name, name); err != nil {
			return err
		}
	}
	return nil
}

// IsBuiltin reports whether name is a built-in task.
func IsBuiltin(name string) bool {
	_, ok := builtins[name]
	return ok
}

// RegisterBuiltinAs registers the built-in task builtin under name alone: a worker that
// does not advertise the built-ins can still serve a Celery name with one
// (ccworker_task_aliases).
func RegisterBuiltinAs(r *Registry, builtin, name string) error {
	b, ok := builtins[builtin]
	if !ok {
		return fmt.Errorf("%w: %q is not a built-in task", ErrUnknown, builtin)
	}
	return r.RegisterWith(name, b.h, Options{Doc: b.doc})
}

// Noop returns None.
func Noop(_ context.Context, c *Call) (any, error) {
	if _, err := c.Bind("noop"); err != nil {
		return nil, err
	}
	return nil, nil
}

// Add returns x + y with Python's meaning: ints stay ints (of any size), a float makes
// a float, strings and lists concatenate.
func Add(_ context.Context, c *Call) (any, error) {
	v, err := c.Bind("add", "x", "y")
	if err != nil {
		return nil, err
	}
	return add(v[0], v[1])
}

// Sleep waits for seconds without holding a thread, then returns seconds. It stops early
// with its context's cause (the soft time limit, a revoke, a shutdown).
func Sleep(ctx context.Context, c *Call) (any, error) {
	v, err := c.Bind("sleep", "seconds")
	if err != nil {
		return nil, err
	}
	s, ok := toFloat(v[0])
	if !ok || math.IsNaN(s) || s < 0 {
		return nil, Errorf("ValueError", "sleep length must be a non-negative number, not %s", pyType(v[0]))
	}
	t := time.NewTimer(time.Duration(s * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return v[0], nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// Echo returns {"args": [...], "kwargs": {...}}.
func Echo(_ context.Context, c *Call) (any, error) {
	args, kwargs := c.Args, c.Kwargs
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	return map[string]any{"args": args, "kwargs": kwargs}, nil
}

// Fail raises builtins.ValueError(message).
func Fail(_ context.Context, c *Call) (any, error) {
	v, err := c.Bind("fail", "message")
	if err != nil {
		return nil, err
	}
	return nil, NewException("builtins", "ValueError", v[0])
}

// Bind matches the call's positional and keyword arguments to the parameters named,
// all required, with the TypeError messages Python gives.
func (c *Call) Bind(fn string, params ...string) ([]any, error) {
	if len(c.Args) > len(params) {
		return nil, Errorf("TypeError", "%s() takes %d positional argument%s but %d %s given",
			fn, len(params), plural(len(params)), len(c.Args), wasWere(len(c.Args)))
	}
	out := make([]any, len(params))
	copy(out, c.Args)
	var missing []string
	for i, p := range params {
		v, ok := c.Kwargs[p]
		switch {
		case ok && i < len(c.Args):
			return nil, Errorf("TypeError", "%s() got multiple values for argument '%s'", fn, p)
		case ok:
			out[i] = v
		case i >= len(c.Args):
			missing = append(missing, "'"+p+"'")
		}
	}
	for k := range c.Kwargs {
		if !contains(params, k) {
			return nil, Errorf("TypeError", "%s() got an unexpected keyword argument '%s'", fn, k)
		}
	}
	if len(missing) > 0 {
		return nil, Errorf("TypeError", "%s() missing %d required positional argument%s: %s",
			fn, len(missing), plural(len(missing)), joinPython(missing))
	}
	return out, nil
}

func add(x, y any) (any, error) {
	switch a := x.(type) {
	case int64:
		switch b := y.(type) {
		case int64:
			s := a + b
			if (s > a) == (b > 0) {
				return s, nil
			}
			return new(big.Int).Add(big.NewInt(a), big.NewInt(b)), nil
		case *big.Int:
			return norm(new(big.Int).Add(big.NewInt(a), b)), nil
		case float64:
			return float64(a) + b, nil
		case bool:
			return add(a, boolInt(b))
		}
	case *big.Int:
		switch b := y.(type) {
		case int64:
			return norm(new(big.Int).Add(a, big.NewInt(b))), nil
		case *big.Int:
			return norm(new(big.Int).Add(a, b)), nil
		case float64:
			f, _ := new(big.Float).SetInt(a).Float64()
			return f + b, nil
		}
	case float64:
		if b, ok := toFloat(y); ok {
			return a + b, nil
		}
	case bool:
		if _, ok := y.(string); !ok {
			return add(boolInt(a), y)
		}
	case string:
		if b, ok := y.(string); ok {
			return a + b, nil
		}
	case []any:
		if b, ok := y.([]any); ok {
			return append(append(make([]any, 0, len(a)+len(b)), a...), b...), nil
		}
	}
	return nil, Errorf("TypeError", "unsupported operand type(s) for +: '%s' and '%s'", pyType(x), pyType(y))
}

func norm(b *big.Int) any {
	if b.IsInt64() {
		return b.Int64()
	}
	return b
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f, true
	case bool:
		return float64(boolInt(x)), true
	}
	return 0, false
}

// pyType names a decoded value's Python type, for error messages.
func pyType(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	case time.Time:
		return "datetime"
	}
	return fmt.Sprintf("%T", v)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// joinPython joins like Python's "'x' and 'y'" / "'x', 'y' and 'z'".
func joinPython(xs []string) string {
	switch len(xs) {
	case 1:
		return xs[0]
	case 2:
		return xs[0] + " and " + xs[1]
	}
	out := ""
	for i, x := range xs[:len(xs)-1] {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out + ", and " + xs[len(xs)-1]
}
