package canvas

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

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
func pyExcRepr(typ string, args []any) string {
	if len(args) == 1 {
		return typ + "(" + pyRepr(args[0], false) + ")"
	}
	return typ + pyRepr(args, true)
}

// pyRepr is a small Python repr() for decoded JSON values; tuple writes a
// list as a tuple.
func pyRepr(v any, tuple bool) string {
	var b strings.Builder
	writeRepr(&b, v, tuple)
	return b.String()
}

func writeRepr(b *strings.Builder, v any, tuple bool) {
	switch v := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if v {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case string:
		writePyStr(b, v)
	case []any:
		open, end := "[", "]"
		if tuple {
			open, end = "(", ")"
		}
		b.WriteString(open)
		for i, x := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, x, false)
		}
		if tuple && len(v) == 1 {
			b.WriteString(",")
		}
		b.WriteString(end)
	case map[string]any:
		b.WriteString("{")
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyStr(b, k)
			b.WriteString(": ")
			writeRepr(b, v[k], false)
		}
		b.WriteString("}")
	default:
		// Numbers: AppendJSON writes them as Python's repr does.
		if out, err := protocol.AppendJSON(nil, v); err == nil {
			b.Write(out)
		} else {
			fmt.Fprintf(b, "%v", v)
		}
	}
}

// writePyStr writes a str repr: single quotes unless the string has a single
// quote and no double quote.
func writePyStr(b *strings.Builder, s string) {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\x%02x`, r)
		case r > 0x7f && !unicode.IsPrint(r):
			if r <= 0xff {
				fmt.Fprintf(b, `\x%02x`, r)
			} else if r <= 0xffff {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				fmt.Fprintf(b, `\U%08x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
}
