package config

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them (or
// is a *SyntaxError / *KeyError, which also match through errors.Is), so
// callers can classify failures without parsing messages.
var (
	// ErrSyntax matches every *SyntaxError.
	ErrSyntax = errors.New("config: syntax error")
	// ErrUnsupported matches a *SyntaxError caused by a valid Python construct
	// that the literal-only reader deliberately does not evaluate.
	ErrUnsupported = errors.New("config: unsupported construct")
	// ErrEnvNotSet is returned for os.environ['X'] when X is not set.
	ErrEnvNotSet = errors.New("config: environment variable not set")
	// ErrWrongType means a setting holds a value of the wrong Python type.
	ErrWrongType = errors.New("config: wrong type")
	// ErrInvalidValue means a setting has the right type but a bad value.
	ErrInvalidValue = errors.New("config: invalid value")
	// ErrMixedSettings mirrors Celery's ImproperlyConfigured error for files
	// that mix old upper-case and new lower-case setting names.
	ErrMixedSettings = errors.New("config: old and new setting names mixed")
	// ErrUnsupportedSerializer is returned for serializers ccworker cannot produce.
	ErrUnsupportedSerializer = errors.New("config: unsupported serializer")
	// ErrBrokerURL is returned for a broker URL that cannot be used.
	ErrBrokerURL = errors.New("config: invalid broker URL")
	// ErrBrokerTLS is returned for an unusable broker_use_ssl setting,
	// including missing or unreadable certificate files.
	ErrBrokerTLS = errors.New("config: invalid broker_use_ssl")
	// ErrMongoURL is returned for a result backend URL or
	// mongodb_backend_settings that the Go MongoDB driver could not use.
	ErrMongoURL = errors.New("config: invalid MongoDB result backend")
)

// SyntaxError reports a problem in celeryconfig.py at a source position.
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

// KeyError reports a setting whose value cannot be used. Line is 0 when the
// value did not come from a file (FromValues, environment).
type KeyError struct {
	File string
	Line int
	Key  string
	Err  error
}

func (e *KeyError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Key, e.Err)
	case e.File != "":
		return fmt.Sprintf("%s: %s: %v", e.File, e.Key, e.Err)
	default:
		return fmt.Sprintf("%s: %v", e.Key, e.Err)
	}
}

// Unwrap returns the underlying error (which wraps a sentinel).
func (e *KeyError) Unwrap() error { return e.Err }
