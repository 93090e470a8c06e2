package protocol

import "time"

// Message is one delivery as the transport gave it, independent of any
// AMQP library.
type Message struct {
	ContentType     string
	ContentEncoding string
	// Headers are the AMQP application headers. Nested tables may be any
	// map type with string keys (amqp091-go's named amqp.Table included).
	Headers       map[string]any
	Body          []byte
	CorrelationID string
	ReplyTo       string
	Priority      uint8
	Properties    Properties
}

// Request is a decoded task message, normalized to protocol 2 fields.
type Request struct {
	Protocol int // 1 or 2 (a hybrid message counts as 2)

	ID     string
	Task   string
	Shadow string // alternative name for logs and events

	Args   []any
	Kwargs map[string]any

	// Raw signatures (maps) from the embed part; nil when absent.
	Callbacks []any
	Errbacks  []any
	Chain     []any // in reverse order: the next task is the last element
	Chord     any

	ETA     time.Time // zero when none; always UTC
	Expires time.Time // zero when none; always UTC

	Retries       int
	TimeLimit     time.Duration // hard limit, 0 = none
	SoftTimeLimit time.Duration // 0 = none

	RootID     string
	ParentID   string
	GroupID    string
	GroupIndex *int

	IgnoreResult bool
	Origin       string
	ArgsRepr     string
	KwargsRepr   string

	Stamps         map[string]any
	StampedHeaders []string

	// Headers holds the headers this package does not interpret (custom
	// apply_async(headers=...), replaced_task_nesting, ...). A retry must
	// carry them on.
	Headers map[string]any

	// The properties as received: the serializer is needed to re-publish
	// retries the way the client sent them.
	ContentType     string
	ContentEncoding string
	CorrelationID   string
	ReplyTo         string
	Priority        uint8
	Properties      Properties

	// rawHeaders are the message's headers as received, read only on demand (Header).
	rawHeaders map[string]any
}

// Name is the name used in logs and events: the shadow name if set,
// otherwise the task name (Celery's Request.name).
func (r *Request) Name() string {
	if r.Shadow != "" {
		return r.Shadow
	}
	return r.Task
}
