package canvas

import (
	"strings"

	"github.com/ccworker/ccworker/protocol"
)

// excRepr is repr() of the exception Celery revives from a stored exception
// map (exception_to_python): ClassName(*exc_message).
func excRepr(v any) string {
	m, _ := v.(map[string]any)
	typ, _ := m["exc_type"].(string)
	if i := strings.LastIndexByte(typ, '.'); i >= 0 {
		typ = typ[i+1:]
	}
	if typ == "" {
		typ = "Exception"
	}
	args, ok := m["exc_message"].([]any)
	if !ok {
		args = []any{m["exc_message"]}
	}
	return pyExcRepr(typ, args)
}

// pyExcRepr is BaseException.__repr__.
func pyExcRepr(typ string, args []any) string { return protocol.ExceptionRepr(typ, args) }

// pyRepr is Python's repr() of a decoded value; tuple writes a list as a tuple.
func pyRepr(v any, tuple bool) string {
	if a, ok := v.([]any); ok && tuple {
		return protocol.TupleRepr(a)
	}
	return protocol.Repr(v)
}
