package config

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ccworker/ccworker/config/pyliteral"
)

// ErrPython matches a *PythonError: the interpreter could not import the file.
var ErrPython = errors.New("config: importing the file with Python failed")

// PythonError reports an exception raised while the interpreter imported a
// config file, as Celery would have met it at start-up.
type PythonError struct {
	File        string
	Line        int    // line of File the exception came through, 0 if none
	Interpreter string // as given
	Type, Msg   string // the exception's class name and message
	// AtFile and AtLine are where it was raised (a sibling module, os.py, ...).
	AtFile    string
	AtLine    int
	Traceback string
}

func (e *PythonError) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	s := fmt.Sprintf("%s: importing with %s: %s: %s", where, e.Interpreter, e.Type, e.Msg)
	if e.AtFile != "" && (e.AtLine != e.Line || !samePath(e.AtFile, e.File)) {
		s += fmt.Sprintf(" (raised at %s:%d)", e.AtFile, e.AtLine)
	}
	return s
}

// Unwrap returns ErrPython.
func (e *PythonError) Unwrap() error { return ErrPython }

func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// pyImportScript imports the module and prints its settings as JSON.
//
//go:embed pyimport.py
var pyImportScript string

// pyImportTimeout bounds the import: a config that hangs (a network call at
// import time) must not hang the worker's start silently.
const pyImportTimeout = 2 * time.Minute

// pyObject stands for a value JSON cannot carry (a kombu Queue, a set, a
// function...). Type is its Python type; Helper is set for modules,
// classes and functions, which are never settings.
type pyObject struct {
	Type   string
	Helper bool
}

// typeName names a setting value's Python type for error messages.
func typeName(v any) string {
	if o, ok := v.(pyObject); ok {
		return o.Type + " (a Python object ccworker cannot read; use str, int, float, bool, None, list, tuple or dict)"
	}
	return pyliteral.TypeName(v)
}

// findPython resolves the interpreter to import configs with; "" when
// there is none.
func findPython(python string) string {
	if python == "" {
		return ""
	}
	p, err := exec.LookPath(python)
	if err != nil {
		return ""
	}
	return p
}

// importPython imports path with the interpreter and returns its
// module-level settings and the line each was assigned on. The interpreter
// runs with this process's environment and working directory, as the
// Celery worker it stands in for would.
func importPython(ctx context.Context, python, path string) (*pyliteral.Module, error) {
	ctx, cancel := context.WithTimeout(ctx, pyImportTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", pyImportScript, path)
	// Leave no __pycache__ beside the user's config.
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var reply struct {
		Values map[string]any `json:"values"`
		Lines  map[string]int `json:"lines"`
		Error  *struct {
			Type, Message, Traceback string
			Line                     int
			AtFile                   string `json:"at_file"`
			AtLine                   int    `json:"at_line"`
		} `json:"error"`
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	if err := dec.Decode(&reply); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w: %s gave no answer within %v", path, ErrPython, python, pyImportTimeout)
		}
		return nil, fmt.Errorf("%s: %w: %s gave no answer (%v): %s", path, ErrPython, python,
			errors.Join(runErr, err), redactLines(lastLines(stderr.String(), 5)))
	}
	if e := reply.Error; e != nil {
		return nil, &PythonError{File: path, Line: e.Line, Interpreter: python, Type: e.Type, Msg: redactLines(e.Message),
			AtFile: e.AtFile, AtLine: e.AtLine, Traceback: redactLines(e.Traceback)}
	}
	m := &pyliteral.Module{Values: make(map[string]any, len(reply.Values)), Lines: reply.Lines}
	for k, v := range reply.Values {
		m.Values[k] = fromJSON(v)
	}
	if m.Lines == nil {
		m.Lines = map[string]int{}
	}
	return m, nil
}

// fromJSON turns the script's JSON into the values pyliteral returns:
// int64 and float64 numbers, pyObject for what JSON could not carry.
func fromJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if !strings.ContainsAny(v.String(), ".eE") {
			if n, err := v.Int64(); err == nil {
				return n
			}
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i, e := range v {
			v[i] = fromJSON(e)
		}
		return v
	case map[string]any:
		if t, ok := v["__ccworker_object__"].(string); ok {
			helper, _ := v["helper"].(bool)
			return pyObject{Type: t, Helper: helper}
		}
		for k, e := range v {
			v[k] = fromJSON(e)
		}
		return v
	}
	return v
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// redactLines redacts every line of s on its own, so that each line's URL
// loses its password.
func redactLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Redact(l)
	}
	return strings.Join(lines, "\n")
}
