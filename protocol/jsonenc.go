package protocol

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends v encoded as JSON that Python's json.loads (kombu)
// reads back as the same value, formatted like json.dumps: separators
// ", " and ": ", ensure_ascii escapes, floats as Python's repr writes them
// (2.0, 1e+16, NaN, Infinity), ints of any size kept as ints.
//
// Besides the value model (nil, bool, ints, *big.Int, floats, string,
// []byte, []any, map[string]any, time.Time) it takes json.Marshaler
// values, slices, arrays and maps with string keys of any type, and falls
// back to encoding/json for anything else. Map keys are sorted. []byte is
// written as a string and must be valid UTF-8 (kombu 5.2 cannot encode
// bytes at all). time.Time is written like kombu 5.2: ISO-8601 with a "Z"
// suffix for UTC. Invalid UTF-8 in a string becomes U+FFFD.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	return appendJSON(dst, v, 0)
}

var errJSONDepth = errors.New("protocol: AppendJSON: value nested too deeply (cycle?)")

func appendJSON(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, errJSONDepth
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case string:
		return appendJSONString(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case *big.Int:
		if x == nil {
			return append(b, "null"...), nil
		}
		return x.Append(b, 10), nil
	case float64:
		return appendJSONFloat(b, x), nil
	case float32:
		// Python only has doubles: this is what it would see.
		return appendJSONFloat(b, float64(x)), nil
	case []byte:
		if !utf8.Valid(x) {
			return b, errors.New("protocol: AppendJSON: []byte is not valid UTF-8")
		}
		return appendJSONString(b, string(x)), nil
	case time.Time:
		b = append(b, '"')
		b = appendPyISO(b, x, true)
		return append(b, '"'), nil
	case []any:
		return appendJSONList(b, x, depth)
	case map[string]any:
		return appendJSONMap(b, x, depth)
	case ExceptionInfo:
		return x.AppendJSON(b)
	case json.Marshaler:
		return appendMarshaler(b, x)
	}
	return appendReflect(b, v, depth)
}

func appendJSONList(b []byte, x []any, depth int) ([]byte, error) {
	b = append(b, '[')
	for i, e := range x {
		if i > 0 {
			b = append(b, ", "...)
		}
		var err error
		if b, err = appendJSON(b, e, depth+1); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

// appendJSONMap writes the keys sorted, so the output is deterministic.
func appendJSONMap(b []byte, x map[string]any, depth int) ([]byte, error) {
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(x)) {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendJSONString(b, k)
		b = append(b, ": "...)
		var err error
		if b, err = appendJSON(b, x[k], depth+1); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func appendMarshaler(b []byte, m json.Marshaler) ([]byte, error) {
	if rv := reflect.ValueOf(m); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return append(b, "null"...), nil
	}
	out, err := m.MarshalJSON()
	if err != nil {
		return b, fmt.Errorf("protocol: AppendJSON: %w", err)
	}
	return append(b, out...), nil
}

// appendReflect handles named and composite types outside the value model
// (e.g. []string, map[string]int, type Celsius float64).
func appendReflect(b []byte, v any, depth int) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if _, ok := v.(encoding.TextMarshaler); !ok {
		switch rv.Kind() {
		case reflect.Bool:
			return appendJSON(b, rv.Bool(), depth)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return strconv.AppendInt(b, rv.Int(), 10), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			return strconv.AppendUint(b, rv.Uint(), 10), nil
		case reflect.Float32, reflect.Float64:
			return appendJSONFloat(b, rv.Float()), nil
		case reflect.String:
			return appendJSONString(b, rv.String()), nil
		case reflect.Pointer, reflect.Interface:
			if rv.IsNil() {
				return append(b, "null"...), nil
			}
			return appendJSON(b, rv.Elem().Interface(), depth+1)
		case reflect.Slice, reflect.Array:
			if rv.Kind() == reflect.Slice && rv.IsNil() {
				return append(b, "null"...), nil
			}
			if rv.Type().Elem().Kind() == reflect.Uint8 {
				return appendJSON(b, rv.Bytes(), depth)
			}
			b = append(b, '[')
			for i := range rv.Len() {
				if i > 0 {
					b = append(b, ", "...)
				}
				var err error
				if b, err = appendJSON(b, rv.Index(i).Interface(), depth+1); err != nil {
					return b, err
				}
			}
			return append(b, ']'), nil
		case reflect.Map:
			if rv.Type().Key().Kind() == reflect.String {
				if rv.IsNil() {
					return append(b, "null"...), nil
				}
				m := make(map[string]any, rv.Len())
				it := rv.MapRange()
				for it.Next() {
					m[it.Key().String()] = it.Value().Interface()
				}
				return appendJSON(b, m, depth)
			}
		}
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("protocol: AppendJSON: %w", err)
	}
	return append(b, out...), nil
}

// appendJSONFloat writes f as Python's float.__repr__ (and json.dumps).
func appendJSONFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	return appendPyFloat(b, f)
}

// appendPyFloat formats a finite float like Python's repr: the shortest
// round-tripping digits, positional notation when the decimal exponent is
// in [-4, 16), otherwise d.ddde±XX, and always a ".0" or exponent so the
// value reads back as a float.
func appendPyFloat(b []byte, f float64) []byte {
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64) // -d.dddde±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		b = append(b, '-')
	}
	ePos := 0
	for i, c := range e {
		if c == 'e' {
			ePos = i
			break
		}
	}
	mant, exp := e[:ePos], e[ePos+1:]
	x, _ := strconv.Atoi(string(exp))
	digits := make([]byte, 0, 20)
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	decpt := x + 1
	if decpt > -4 && decpt <= 16 {
		switch {
		case decpt <= 0:
			b = append(b, "0."...)
			for range -decpt {
				b = append(b, '0')
			}
			b = append(b, digits...)
		case decpt >= len(digits):
			b = append(b, digits...)
			for range decpt - len(digits) {
				b = append(b, '0')
			}
			b = append(b, ".0"...)
		default:
			b = append(b, digits[:decpt]...)
			b = append(b, '.')
			b = append(b, digits[decpt:]...)
		}
		return b
	}
	b = append(b, digits[0])
	if len(digits) > 1 {
		b = append(b, '.')
		b = append(b, digits[1:]...)
	}
	b = append(b, 'e')
	if x < 0 {
		b = append(b, '-')
		x = -x
	} else {
		b = append(b, '+')
	}
	if x < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(x), 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s with json.dumps' ensure_ascii escaping:
// everything outside printable ASCII is \uXXXX (lowercase hex), with
// surrogate pairs above U+FFFF.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r >= 0x10000 {
				r1, r2 := utf16Pair(r)
				b = appendU(b, r1)
				b = appendU(b, r2)
			} else {
				b = appendU(b, r) // includes U+FFFD for invalid bytes
			}
			i += size
			start = i
			continue
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendPyISO writes t as Python's datetime.isoformat() of an aware
// datetime: microseconds only when non-zero, offset ±HH:MM. With z, a
// zero offset is written "Z" as kombu 5.2's JSON encoder does.
func appendPyISO(b []byte, t time.Time, z bool) []byte {
	t = t.Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		b = t.AppendFormat(b, "2006-01-02T15:04:05")
	} else {
		b = t.AppendFormat(b, "2006-01-02T15:04:05.000000")
	}
	if _, off := t.Zone(); off == 0 && z {
		return append(b, 'Z')
	}
	return t.AppendFormat(b, "-07:00")
}

// ExceptionInfo is a Python exception as Celery's result backend stores it
// with a non-pickle serializer (spec 2.6).
type ExceptionInfo struct {
	Type   string // exc_type: the class __qualname__, e.g. "ValueError"
	Module string // exc_module, e.g. "builtins"; "" is written as null
	Args   []any  // exc_message: the exception's args
}

// AppendJSON appends {"exc_type": ..., "exc_message": [...], "exc_module": ...}
// in Celery's key order.
func (e ExceptionInfo) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"exc_type": `...)
	dst = appendJSONString(dst, e.Type)
	dst = append(dst, `, "exc_message": `...)
	args := e.Args
	if args == nil {
		args = []any{}
	}
	dst, err := appendJSON(dst, args, 1)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `, "exc_module": `...)
	if e.Module == "" {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSONString(dst, e.Module)
	}
	return append(dst, '}'), nil
}
