package protocol

import (
	"errors"
	"strings"
)

// Sentinel errors returned (wrapped in a *DecodeError) by Decode. They map
// to what a Celery worker does with the message (spec 1.5).
var (
	// ErrUnknownMessage: neither a protocol 2 nor a protocol 1 task message.
	// Celery rejects it without requeue.
	ErrUnknownMessage = errors.New("protocol: unknown message")
	// ErrContentDisallowed: the content type is not accepted (pickle never
	// is). Celery rejects it without requeue.
	ErrContentDisallowed = errors.New("protocol: content type not accepted")
	// ErrDecode: the body cannot be decompressed or deserialized. Celery
	// acknowledges (drops) it.
	ErrDecode = errors.New("protocol: cannot decode body")
	// ErrInvalidTask: the message decoded but is structurally wrong (args not
	// a list, bad eta, ...). Celery rejects it without requeue.
	ErrInvalidTask = errors.New("protocol: invalid task message")
)

// DecodeError is the error type returned by Decode. ID and Task are set
// when they were known at the point of failure, so the caller can log the
// failure and store a result for the task.
type DecodeError struct {
	ID          string
	Task        string
	ContentType string
	Err         error // wraps one of the Err* sentinels
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	sep := " ("
	if e.Task != "" {
		b.WriteString(sep + "task " + e.Task)
		sep = ", "
	}
	if e.ID != "" {
		b.WriteString(sep + "id " + e.ID)
		sep = ", "
	}
	if e.ContentType != "" {
		b.WriteString(sep + "content type " + e.ContentType)
		sep = ", "
	}
	if sep == ", " {
		b.WriteByte(')')
	}
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }
