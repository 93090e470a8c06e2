package pyliteral

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Parse returns is a *SyntaxError or an
// *EnvError, which match these through errors.Is.
var (
	// ErrSyntax matches every *SyntaxError.
	ErrSyntax = errors.New("pyliteral: syntax error")
	// ErrUnsupported matches a *SyntaxError caused by a valid Python construct
	// that the literal-only reader deliberately does not evaluate.
	ErrUnsupported = errors.New("pyliteral: unsupported construct")
	// ErrEnvNotSet is returned for os.environ['X'] when X is not set.
	ErrEnvNotSet = errors.New("pyliteral: environment variable not set")
)

// SyntaxError reports a problem in the source at a position.
// Line and Col are 1-based; Col counts characters (runes), not bytes.
type SyntaxError struct {
	File      string
	Line, Col int
	// Construct names a valid Python construct the reader does not support
	// ("function call", "f-string", ...). It is empty for plain syntax errors.
	Construct string
	// Msg is the description of a plain syntax error, or extra detail for
	// an unsupported construct.
	Msg string
}

func (e *SyntaxError) Error() string {
	pos := fmt.Sprintf("%s:%d:%d: ", e.File, e.Line, e.Col)
	if e.Construct == "" {
		return pos + e.Msg
	}
	s := pos + fmt.Sprintf("unsupported construct %q (only literal assignments are read)", e.Construct)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Is makes errors.Is(err, ErrSyntax) true for every SyntaxError and
// errors.Is(err, ErrUnsupported) true for unsupported constructs.
func (e *SyntaxError) Is(target error) bool {
	return target == ErrSyntax || (target == ErrUnsupported && e.Construct != "")
}

// EnvError reports os.environ['NAME'] for a variable that is not set,
// which raises KeyError in Python.
type EnvError struct {
	File      string
	Line, Col int
	Name      string
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("%s:%d:%d: environment variable %q is not set (os.environ[%q])", e.File, e.Line, e.Col, e.Name, e.Name)
}

// Unwrap returns ErrEnvNotSet.
func (e *EnvError) Unwrap() error { return ErrEnvNotSet }
