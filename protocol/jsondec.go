package protocol

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting in every decoder. Python's json module fails
// with RecursionError near 1000 levels, so nothing valid is lost.
const maxDepth = 1000

// maxIntDigits mirrors Python's default int_max_str_digits (3.11+): longer
// integer literals fail in Python too, and the limit keeps big.Int parsing
// from going quadratic on hostile input.
const maxIntDigits = 4300

var errJSONSyntax = errors.New("invalid JSON")

// decodeJSON parses data as Python's json.loads (with kombu 5.3+'s
// __type__/__value__ object hook) would: NaN, Infinity and -Infinity are
// accepted and integers keep arbitrary precision.
func decodeJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("JSON body is not valid UTF-8")
	}
	d := jsonDecoder{data: data}
	d.stack = d.stackBuf[:0]
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.syntax("extra data")
	}
	return v, nil
}

type jsonDecoder struct {
	data []byte
	pos  int
	// stack collects array elements of all open arrays, so each array is
	// allocated once at its final size instead of growing by append.
	stack    []any
	stackBuf [8]any
}

func (d *jsonDecoder) syntax(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errJSONSyntax, what, d.pos)
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) literal(lit string, v any) (any, error) {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return nil, d.syntax("unexpected character")
	}
	d.pos += len(lit)
	return v, nil
}

func (d *jsonDecoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.syntax("unexpected end of input")
	}
	switch c := d.data[d.pos]; c {
	case '{':
		if depth >= maxDepth {
			return nil, d.syntax("nesting too deep")
		}
		return d.object(depth + 1)
	case '[':
		if depth >= maxDepth {
			return nil, d.syntax("nesting too deep")
		}
		return d.array(depth + 1)
	case '"':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return s, nil
	case 't':
		return d.literal("true", true)
	case 'f':
		return d.literal("false", false)
	case 'n':
		return d.literal("null", nil)
	case 'N':
		return d.literal("NaN", math.NaN())
	case 'I':
		return d.literal("Infinity", math.Inf(1))
	case '-':
		if d.pos+1 < len(d.data) && d.data[d.pos+1] == 'I' {
			d.pos++
			return d.literal("Infinity", math.Inf(-1))
		}
		return d.number()
	default:
		if c >= '0' && c <= '9' {
			return d.number()
		}
		return nil, d.syntax("unexpected character")
	}
}

func (d *jsonDecoder) array(depth int) (any, error) {
	d.pos++ // '['
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return []any{}, nil
	}
	base := len(d.stack)
	for {
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.stack = append(d.stack, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.syntax("unterminated array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			a := make([]any, len(d.stack)-base)
			copy(a, d.stack[base:])
			clear(d.stack[base:]) // don't pin values after the decode
			d.stack = d.stack[:base]
			return a, nil
		default:
			return nil, d.syntax("expected ',' or ']'")
		}
	}
}

func (d *jsonDecoder) object(depth int) (any, error) {
	d.pos++ // '{'
	m := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.syntax("expected string key")
		}
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.syntax("expected ':'")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.syntax("unterminated object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			if len(m) == 2 {
				return reviveEnvelope(m)
			}
			return m, nil
		default:
			return nil, d.syntax("expected ',' or '}'")
		}
	}
}

// key decodes an object key, reusing constant strings for the keys every
// task message carries so they cost no allocation.
func (d *jsonDecoder) key() (string, error) {
	start := d.pos + 1
	for i := start; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			if s, ok := internKey(d.data[start:i]); ok {
				d.pos = i + 1
				return s, nil
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	return d.str()
}

func internKey(b []byte) (string, bool) {
	// The compiler does not allocate for a switch on string(b).
	switch string(b) {
	case "callbacks":
		return "callbacks", true
	case "errbacks":
		return "errbacks", true
	case "chain":
		return "chain", true
	case "chord":
		return "chord", true
	case "__type__":
		return "__type__", true
	case "__value__":
		return "__value__", true
	case "task":
		return "task", true
	case "args":
		return "args", true
	case "kwargs":
		return "kwargs", true
	case "options":
		return "options", true
	case "subtask_type":
		return "subtask_type", true
	case "immutable":
		return "immutable", true
	}
	return "", false
}

// str decodes a string starting at the opening quote.
func (d *jsonDecoder) str() (string, error) {
	start := d.pos + 1
	i := start
	for ; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			d.pos = i + 1
			return string(d.data[start:i]), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			d.pos = i
			return "", d.syntax("control character in string")
		}
	}
	return d.strEscaped(start, i)
}

// strEscaped finishes a string from i, the first backslash; start is the
// offset after the opening quote.
func (d *jsonDecoder) strEscaped(start, i int) (string, error) {
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, d.data[start:i]...)
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return string(buf), nil
		case c < 0x20:
			d.pos = i
			return "", d.syntax("control character in string")
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		if i+1 >= len(d.data) {
			break
		}
		i++
		switch e := d.data[i]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			var err error
			if buf, i, err = d.appendUnicodeEscape(buf, i); err != nil {
				return "", err
			}
		default:
			d.pos = i
			return "", d.syntax("invalid escape")
		}
		i++
	}
	d.pos = len(d.data)
	return "", d.syntax("unterminated string")
}

// appendUnicodeEscape decodes the \uXXXX escape whose 'u' is at i (and a
// following low surrogate), returning the offset of its last digit.
func (d *jsonDecoder) appendUnicodeEscape(buf []byte, i int) ([]byte, int, error) {
	r, ok := hex4(d.data[i+1:])
	if !ok {
		d.pos = i
		return buf, i, d.syntax("invalid \\u escape")
	}
	i += 4
	if utf16.IsSurrogate(r) {
		// Python keeps a lone surrogate; Go strings can't, so it
		// becomes U+FFFD like encoding/json does.
		if i+6 < len(d.data) && d.data[i+1] == '\\' && d.data[i+2] == 'u' {
			if r2, ok := hex4(d.data[i+3:]); ok {
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				}
			}
		}
		if utf16.IsSurrogate(r) {
			r = utf8.RuneError
		}
	}
	return utf8.AppendRune(buf, r), i, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number follows Python's NUMBER_RE: -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?
func (d *jsonDecoder) number() (any, error) {
	start := d.pos
	i := d.pos
	if d.data[i] == '-' {
		i++
	}
	digits := i
	switch {
	case i < len(d.data) && d.data[i] == '0':
		i++
	case i < len(d.data) && d.data[i] >= '1' && d.data[i] <= '9':
		for i < len(d.data) && d.data[i] >= '0' && d.data[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return nil, d.syntax("invalid number")
	}
	intEnd := i
	isFloat := false
	if i+1 < len(d.data) && d.data[i] == '.' && isDigit(d.data[i+1]) {
		isFloat = true
		i += 2
		for i < len(d.data) && isDigit(d.data[i]) {
			i++
		}
	}
	if i < len(d.data) && (d.data[i] == 'e' || d.data[i] == 'E') {
		j := i + 1
		if j < len(d.data) && (d.data[j] == '+' || d.data[j] == '-') {
			j++
		}
		if j < len(d.data) && isDigit(d.data[j]) {
			isFloat = true
			for j < len(d.data) && isDigit(d.data[j]) {
				j++
			}
			i = j
		}
	}
	d.pos = i
	lit := d.data[start:i]
	if isFloat {
		f, err := strconv.ParseFloat(string(lit), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, d.syntax("invalid number")
		}
		// Out of range: Python's float() gives ±inf or 0 as well.
		return f, nil
	}
	if intEnd-digits <= 18 {
		// At most 18 digits always fits in an int64.
		var n int64
		for _, c := range d.data[digits:intEnd] {
			n = n*10 + int64(c-'0')
		}
		if digits != start {
			n = -n
		}
		return n, nil
	}
	return parseBigInt(string(lit))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseBigInt parses a decimal integer, returning an int64 when it fits.
func parseBigInt(s string) (any, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	if len(s) > maxIntDigits+1 {
		return nil, fmt.Errorf("integer literal longer than %d digits", maxIntDigits)
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, fmt.Errorf("invalid integer %q", s)
	}
	return b, nil
}
