package protocol

import (
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxReprLen is Celery's saferepr limit for argsrepr/kwargsrepr.
const maxReprLen = 1024

// pyRepr is Celery's saferepr of args (as a tuple when tuple is set) or kwargs, for
// the argsrepr/kwargsrepr headers: Repr cut at 1024 characters with "...".
func pyRepr(v any, tuple bool) string {
	var b []byte
	if a, ok := v.([]any); ok && tuple {
		b = appendTuple(b, a, maxReprLen)
	} else {
		b = appendRepr(b, v, 0, maxReprLen)
	}
	if len(b) > maxReprLen {
		cut := maxReprLen - 3
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = append(b[:cut], "..."...)
	}
	return string(b)
}

// Repr returns Python's repr() of a decoded value (None, True, 'str', [1, 2],
// {'k': 1}, ...), as Celery shows values in logs, events and error messages. Map keys
// are sorted, since Go maps have no order.
func Repr(v any) string { return string(appendRepr(nil, v, 0, math.MaxInt)) }

// TupleRepr is Repr of args written as a Python tuple: (1,) or (1, 'a').
func TupleRepr(args []any) string { return string(appendTuple(nil, args, math.MaxInt)) }

// ExceptionRepr is BaseException.__repr__ of an exception of class typ with args:
// ValueError('boom'), or KeyError('a', 1) for several.
func ExceptionRepr(typ string, args []any) string {
	if len(args) == 1 {
		return typ + "(" + Repr(args[0]) + ")"
	}
	return typ + TupleRepr(args)
}

func appendTuple(b []byte, a []any, limit int) []byte {
	b = append(b, '(')
	for i, e := range a {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendRepr(b, e, 0, limit)
	}
	if len(a) == 1 {
		b = append(b, ',')
	}
	return append(b, ')')
}

// appendRepr stops early past limit bytes: saferepr output is cut anyway.
func appendRepr(b []byte, v any, depth, limit int) []byte {
	if depth > 20 || len(b) > limit {
		return append(b, "..."...)
	}
	switch x := v.(type) {
	case nil:
		return append(b, "None"...)
	case bool:
		if x {
			return append(b, "True"...)
		}
		return append(b, "False"...)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case *big.Int:
		if x == nil {
			return append(b, "None"...)
		}
		return x.Append(b, 10)
	case float64:
		switch {
		case math.IsNaN(x):
			return append(b, "nan"...)
		case math.IsInf(x, 1):
			return append(b, "inf"...)
		case math.IsInf(x, -1):
			return append(b, "-inf"...)
		}
		return appendPyFloat(b, x)
	case string:
		return appendPyStr(b, x)
	case []byte:
		return append(append(b, 'b'), appendPyStr(nil, string(x))...)
	case time.Time:
		return append(b, fmt.Sprintf("datetime.datetime(%d, %d, %d, %d, %d, %d, %d, tzinfo=datetime.timezone.utc)",
			x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond()/1000)...)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendRepr(b, e, depth+1, limit)
		}
		return append(b, ']')
	case map[string]any:
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendPyStr(b, k)
			b = append(b, ": "...)
			b = appendRepr(b, x[k], depth+1, limit)
		}
		return append(b, '}')
	}
	return fmt.Appendf(b, "%v", v)
}

// appendPyStr writes s quoted the way Python's str.__repr__ does.
func appendPyStr(b []byte, s string) []byte {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b = append(b, q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20 || r == 0x7f:
			b = fmt.Appendf(b, `\x%02x`, r)
		case r < 0x7f || unicode.IsPrint(r):
			b = utf8.AppendRune(b, r)
		case r <= 0xff:
			b = fmt.Appendf(b, `\x%02x`, r)
		case r <= 0xffff:
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = fmt.Appendf(b, `\U%08x`, r)
		}
	}
	return append(b, q)
}
