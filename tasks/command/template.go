package command

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
)

// Placeholders that are not argument names.
const (
	argsJSON   = "args_json"
	kwargsJSON = "kwargs_json"
)

// part is a literal run of text or a placeholder of a template.
type part struct {
	text string // the literal, or the placeholder's name
	ph   bool
	pos  int // index into Args when ph and the name is a number, else -1
}

// template is one argv element (or the shell script) as parsed by parseTemplate.
type template []part

var placeholderName = regexp.MustCompile(`^(?:[0-9]+|[A-Za-z_][A-Za-z0-9_]*)$`)

// parseTemplate reads s with Python str.format's brace rules: {name} is a placeholder,
// {{ and }} are literal braces. Only plain names are allowed: {0}, {steps},
// {args_json}, {kwargs_json}; no attributes, indexes, conversions or format specs.
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t = append(t, part{text: lit.String(), pos: -1})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '{':
			if i+1 < len(s) && s[i+1] == '{' {
				lit.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%w: %q: unmatched '{' (write {{ for a literal brace)", ErrSpec, s)
			}
			name := s[i+1 : i+1+end]
			if !placeholderName.MatchString(name) {
				return nil, fmt.Errorf("%w: %q: placeholder {%s}: only {N}, {name}, {%s} and {%s} are supported",
					ErrSpec, s, name, argsJSON, kwargsJSON)
			}
			flush()
			p := part{text: name, ph: true, pos: -1}
			if name[0] >= '0' && name[0] <= '9' {
				n, err := strconv.Atoi(name)
				if err != nil {
					return nil, fmt.Errorf("%w: %q: placeholder {%s}: %w", ErrSpec, s, name, err)
				}
				p.pos = n
			}
			t = append(t, p)
			i += end + 1
		case '}':
			if i+1 < len(s) && s[i+1] == '}' {
				lit.WriteByte('}')
				i++
				continue
			}
			return nil, fmt.Errorf("%w: %q: single '}' (write }} for a literal brace)", ErrSpec, s)
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

// render fills the placeholders from the call; quote is applied to each substituted
// value (shell quoting, or the identity). A placeholder without a value is a TypeError.
func (t template) render(task string, c *tasks.Call, quote func(string) string) (string, error) {
	var b strings.Builder
	for _, p := range t {
		if !p.ph {
			b.WriteString(p.text)
			continue
		}
		v, err := value(task, c, p)
		if err != nil {
			return "", err
		}
		b.WriteString(quote(v))
	}
	return b.String(), nil
}

// value is the text a placeholder stands for.
func value(task string, c *tasks.Call, p part) (string, error) {
	switch {
	case p.text == argsJSON:
		return toJSON(argsOf(c))
	case p.text == kwargsJSON:
		return toJSON(kwargsOf(c))
	case p.pos >= 0:
		if p.pos >= len(c.Args) {
			return "", tasks.Errorf("TypeError", "%s() missing required positional argument {%d}: got %d positional argument%s",
				task, p.pos, len(c.Args), plural(len(c.Args)))
		}
		return pyStr(c.Args[p.pos]), nil
	}
	v, ok := c.Kwargs[p.text]
	if !ok {
		return "", tasks.Errorf("TypeError", "%s() missing required keyword argument: '%s'", task, p.text)
	}
	return pyStr(v), nil
}

func toJSON(v any) (string, error) {
	b, err := protocol.AppendJSON(nil, v)
	if err != nil {
		return "", tasks.Errorf("TypeError", "arguments are not JSON serializable: %v", err)
	}
	return string(b), nil
}

func argsOf(c *tasks.Call) []any {
	if c.Args == nil {
		return []any{}
	}
	return c.Args
}

func kwargsOf(c *tasks.Call) map[string]any {
	if c.Kwargs == nil {
		return map[string]any{}
	}
	return c.Kwargs
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// pyStr is Python's str() of a decoded value: strings as they are, datetimes in
// str(datetime) form, everything else as repr() (ints as ints, floats as Python writes
// them, True/False/None, lists and dicts in Python notation).
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		s := x.Format("2006-01-02 15:04:05")
		if us := x.Nanosecond() / 1000; us != 0 {
			s += fmt.Sprintf(".%06d", us)
		}
		return s + x.Format("-07:00")
	}
	return protocol.Repr(v)
}

// shellQuote is Python's shlex.quote: s unchanged when it is made only of safe
// characters, else in single quotes with embedded single quotes escaped.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func identity(s string) string { return s }
