package config

import (
	"errors"
	"fmt"

	"github.com/ccworker/ccworker/config/pyliteral"
)

// Sentinel errors. Every error returned by this package wraps one of them (or
// is a *pyliteral.SyntaxError / *KeyError, which also match through errors.Is), so
// callers can classify failures without parsing messages.
var (
	// ErrSyntax matches every *pyliteral.SyntaxError from reading the file.
	ErrSyntax = pyliteral.ErrSyntax
	// ErrUnsupported matches a *pyliteral.SyntaxError caused by a valid Python
	// construct that the literal reader does not evaluate (and no interpreter
	// was available to import the file instead).
	ErrUnsupported = pyliteral.ErrUnsupported
	// ErrEnvNotSet is returned for os.environ['X'] when X is not set.
	ErrEnvNotSet = pyliteral.ErrEnvNotSet
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
