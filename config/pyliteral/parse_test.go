package pyliteral

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseLiterals(t *testing.T) {
	src := `"""Module docstring.
spanning lines."""
# comment
import os, ssl
from ssl import CERT_NONE, CERT_OPTIONAL as OPT
from os import (environ, getenv,)

a = b = 'x' "y"  # implicit concatenation
s1 = "dq \"q\" \t\n\x41\u00e9\U0001F600\101\q"
s2 = r'\d+\'' R"raw"
s3 = '''tri
ple''' """more"""
s4 = 'line \
cont'
u = u'unicode'
ints = [0, 7, -2, 0x_FF, 0o17, 0b101, 1_000_000, -9223372036854775808, 9223372036854775807, 00]
floats = (1.5, -.5, 1e3, 1_0.2_5, 2., 1e-2, -1E+2)
consts = [True, False, None]
single = ('a',)
empty = ()
bare = 'a', 'b',
paren = ('a')
nested = {'k': {'n': [1, (2, 3)], }, "cr": ssl.CERT_REQUIRED, 'n': CERT_NONE, 'o': OPT,
          'multi':
              'line'}
backslash = \
    'cont'
ref = a
e1 = os.environ.get('HOME_X')
e2 = os.environ.get('HOME_X', 'dflt')
e3 = os.getenv('SET')
e4 = os.environ['SET']
e5 = environ.get('SET', 1)
e6 = getenv('NOPE', None)
cmp1 = os.environ.get('SET') == 'value'
cmp2 = 1 != 1.0
cmp3 = True == 1
x = 1; y = 2;
`
	m, err := parse("celeryconfig.py", []byte(src), mapEnv(map[string]string{"SET": "value"}))
	require.NoError(t, err)
	want := map[string]any{
		"a": "xy", "b": "xy",
		"s1":        "dq \"q\" \t\nAé😀A\\q",
		"s2":        `\d+\'raw`,
		"s3":        "tri\nplemore",
		"s4":        "line cont",
		"u":         "unicode",
		"ints":      []any{int64(0), int64(7), int64(-2), int64(255), int64(15), int64(5), int64(1000000), int64(math.MinInt64), int64(math.MaxInt64), int64(0)},
		"floats":    []any{1.5, -0.5, 1000.0, 10.25, 2.0, 0.01, -100.0},
		"consts":    []any{true, false, nil},
		"single":    []any{"a"},
		"empty":     []any{},
		"bare":      []any{"a", "b"},
		"paren":     "a",
		"nested":    map[string]any{"k": map[string]any{"n": []any{int64(1), []any{int64(2), int64(3)}}}, "cr": int64(2), "n": int64(0), "o": int64(1), "multi": "line"},
		"backslash": "cont",
		"ref":       "xy",
		"e1":        nil, "e2": "dflt", "e3": "value", "e4": "value", "e5": "value", "e6": nil,
		"cmp1": true, "cmp2": false, "cmp3": true,
		"x": int64(1), "y": int64(2),
	}
	assert.Equal(t, want, m)
}

func TestParseReferencesAreCopies(t *testing.T) {
	m, err := parse("c.py", []byte("a = [1]\nb = a\n"), nil)
	require.NoError(t, err)
	m["a"].([]any)[0] = "changed"
	assert.Equal(t, int64(1), m["b"].([]any)[0])
}

func TestParseCRLFAndBOM(t *testing.T) {
	m, err := parse("c.py", []byte("\ufeffa = 1\r\nb = [\r\n 2]\r\n"), nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": int64(1), "b": []any{int64(2)}}, m)
}

func TestParseUnsupported(t *testing.T) {
	cases := []struct {
		src       string
		line, col int
		construct string
	}{
		{"x = f(1)", 1, 5, "function call"},
		{"import os\nx = os.path.join('a')", 2, 5, "function call"},
		{"x = 'a,b'.split(',')", 1, 5, "function call"},
		{"x = f'{y}'", 1, 5, "f-string"},
		{"x = b'raw'", 1, 5, "bytes literal"},
		{"a = 1\nif a:\n    b = 2", 2, 1, "if statement"},
		{"for i in []:\n  pass", 1, 1, "for loop"},
		{"while True:\n  pass", 1, 1, "while loop"},
		{"def f():\n  pass", 1, 1, "function definition"},
		{"class C:\n  pass", 1, 1, "class definition"},
		{"with x:\n  pass", 1, 1, "with statement"},
		{"try:\n  pass\nexcept:\n  pass", 1, 1, "try statement"},
		{"x = 1 + 2", 1, 7, "arithmetic"},
		{"x = 'a' + 'b'", 1, 9, "arithmetic"},
		{"x = 'a%s' % 'b'", 1, 11, "arithmetic"},
		{"x = -'a'", 1, 5, "arithmetic"},
		{"x = ~1", 1, 5, "arithmetic"},
		{"x = y", 1, 5, "undefined name"},
		{"x = sys.argv", 1, 5, "undefined name"},
		{"import sys", 1, 8, "import"},
		{"import os.path", 1, 8, "import"},
		{"from datetime import timedelta", 1, 6, "import"},
		{"from os import path", 1, 16, "import"},
		{"from ssl import *", 1, 17, "star import"},
		{"x = {1: 'a'}", 1, 6, "non-string dict key"},
		{"x = {'a', 'b'}", 1, 5, "set literal"},
		{"x = {**y}", 1, 6, "dict unpacking"},
		{"x = [i for i in y]", 1, 8, "comprehension"},
		{"x = {k: 1 for k in y}", 1, 11, "comprehension"},
		{"x = 1 if y else 2", 1, 7, "conditional expression"},
		{"x = a and b", 1, 7, "boolean operator"},
		{"x = not a", 1, 5, "boolean operator"},
		{"x = 1 < 2", 1, 7, "comparison"},
		{"x = 'a' in 'abc'", 1, 9, "comparison"},
		{"x = 1 == 1 == 1", 1, 12, "chained comparison"},
		{"x = [1] == [1]", 1, 5, "container comparison"},
		{"x = 1\nx += 1", 2, 3, "augmented assignment"},
		{"x: int = 1", 1, 2, "annotated assignment"},
		{"a, b = 1, 2", 1, 1, "tuple unpacking"},
		{"import os\nos.environ['X'] = 'y'", 2, 1, "item assignment"},
		{"import os\nos.x = 1", 2, 1, "attribute assignment"},
		{"x = lambda: 1", 1, 5, "lambda"},
		{"x = 1j", 1, 5, "complex number"},
		{"x = [1][0]", 1, 5, "subscript"},
		{"import os\nx = os.environ['A':'B']", 2, 19, "slice"},
		{"import os\nx = os.getenv(key='A')", 2, 15, "keyword argument"},
		{"import os\nx = os", 2, 5, "module reference"},
		{"import os\nx = os.environ.copy", 2, 5, "attribute access"},
		{"import os\nx = os.sep", 2, 5, "attribute access"},
		{"x = ...", 1, 5, "Ellipsis"},
		{"x = 99999999999999999999", 1, 5, "integer out of range"},
		{`x = '\N{DASH}'`, 1, 5, `\N{...} escape`},
		{"@dec\ndef f(): pass", 1, 1, "decorator"},
		{"print('hi')", 1, 1, "function call"},
		{"1", 1, 1, "expression statement"},
		{"x = (yield)", 1, 6, "yield expression"},
		{"x = [*a]", 1, 6, "starred expression"},
		{"x = (y := 1)", 1, 8, "assignment expression"},
		{"del x", 1, 1, "del statement"},
		{"assert x", 1, 1, "assert statement"},
		{"pass", 1, 1, "pass statement"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			_, err := parse("celeryconfig.py", []byte(tc.src), nil)
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.construct, se.Construct, "%v", err)
			assert.Equal(t, "celeryconfig.py", se.File)
			assert.Equal(t, [2]int{tc.line, tc.col}, [2]int{se.Line, se.Col}, "%v", err)
			assert.ErrorIs(t, err, ErrUnsupported)
			assert.ErrorIs(t, err, ErrSyntax)
		})
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	src := strings.Repeat("\n", 11) + "abc = len('x')\n"
	_, err := parse("celeryconfig.py", []byte(src), nil)
	require.Error(t, err)
	assert.Equal(t, `celeryconfig.py:12:7: unsupported construct "function call" (only literal assignments are read): len()`, err.Error())
	_, err = parse("c.py", []byte("x = 'a"), nil)
	assert.Equal(t, "c.py:1:5: unterminated string literal", err.Error())
}

func TestParseSyntaxErrors(t *testing.T) {
	cases := []struct {
		src       string
		line, col int
	}{
		{"x = 'abc", 1, 5},
		{"x = '''abc\n\n", 1, 5},
		{"x = [1, 2", 1, 10},
		{"x = (1))", 1, 8},
		{"  x = 1", 1, 1},
		{"x = 012", 1, 5},
		{"x = 1__0", 1, 6},
		{"x = 1e", 1, 5},
		{"x = 0x", 1, 5},
		{"x = 1abc", 1, 5},
		{"x = $", 1, 5},
		{"x = 1 \\ 2", 1, 7},
		{`x = '\x4'`, 1, 5},
		{`x = '\ud800'`, 1, 5},
		{"x =", 1, 4},
		{"x = 1 2", 1, 7},
		{"True = 1", 1, 1},
		{"x = \\", 1, 5},
		{"x = 'a'\x00", 1, 8},
		{"x = '\xff'", 1, 6},
		{"é = 'ü'  + 1\n", 1, 10},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			_, err := parse("c.py", []byte(tc.src), nil)
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, [2]int{tc.line, tc.col}, [2]int{se.Line, se.Col}, "%v", err)
			assert.ErrorIs(t, err, ErrSyntax)
		})
	}
}

func TestParseNestingLimit(t *testing.T) {
	deep := "x = " + strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	_, err := parse("c.py", []byte(deep), nil)
	assert.ErrorIs(t, err, ErrSyntax)
	_, err = parse("c.py", []byte("x = "+strings.Repeat("-", 5000)+"1"), nil)
	assert.ErrorIs(t, err, ErrSyntax)
	m, err := parse("c.py", []byte("x = --1\ny = +-1.5"), nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1), m["x"])
	assert.Equal(t, -1.5, m["y"])
}

func TestParseEnvMissing(t *testing.T) {
	_, err := parse("celeryconfig.py", []byte("import os\n\nx = os.environ['RABBITMQ_DEFAULT_USER']\n"), nil)
	var ee *EnvError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "RABBITMQ_DEFAULT_USER", ee.Name)
	assert.Equal(t, [2]int{3, 5}, [2]int{ee.Line, ee.Col})
	assert.True(t, errors.Is(err, ErrEnvNotSet))
	assert.Contains(t, err.Error(), `celeryconfig.py:3:5: environment variable "RABBITMQ_DEFAULT_USER" is not set`)
}

func TestParseLabConfig(t *testing.T) {
	src, err := os.ReadFile("../testdata/lab_celeryconfig.py")
	require.NoError(t, err)
	m, err := parse("celeryconfig.py", src, mapEnv(map[string]string{"LAB_SERIALIZER": "msgpack", "LAB_RESULT_EXTENDED": "1"}))
	require.NoError(t, err)
	assert.Equal(t, "msgpack", m["task_serializer"])
	assert.Equal(t, true, m["result_extended"])
	assert.Equal(t, false, m["task_ignore_result"])
	assert.Equal(t, map[string]any{"tasks.*": map[string]any{"queue": "remote"}}, m["task_routes"])
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"../testdata/lab_celeryconfig.py", "../testdata/cybercommons_celeryconfig.py"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("import os\nx = os.environ.get('A', 'b') == 'c'\ny = [1, (2,), {'a': -1.5e3}]\n"))
	f.Add([]byte("x = '''a\\\nb''' r'\\'' 0x_ff"))
	f.Fuzz(func(t *testing.T, src []byte) {
		m, err := parse("c.py", src, mapEnv(map[string]string{"A": "1"}))
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

// parse returns only the values, as most tests need.
func parse(file string, src []byte, env func(string) (string, bool)) (map[string]any, error) {
	m, err := Parse(file, src, env)
	if err != nil {
		return nil, err
	}
	return m.Values, nil
}

func TestParseLinesAndTypeNames(t *testing.T) {
	m, err := Parse("c.py", []byte("a = 1\n\nb = [\n  2]\na = 'again'\n"), nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"a": 5, "b": 3}, m.Lines, "the line of the last assignment")
	for v, want := range map[any]string{nil: "None", "s": "str", int64(1): "int", 1.5: "float", true: "bool"} {
		assert.Equal(t, want, TypeName(v))
	}
	assert.Equal(t, "list", TypeName([]any{}))
	assert.Equal(t, "dict", TypeName(map[string]any{}))
}
