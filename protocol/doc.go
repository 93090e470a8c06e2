// Package protocol decodes Celery task messages (protocol 1, 2 and the
// hybrid form) as a Celery 5.2.6 worker does, and encodes the JSON that
// Celery's clients and result backend read back.
//
// Decoded values use a small value model shared by every serializer:
// nil, bool, int64, *big.Int (integers outside int64), float64, string,
// []byte, []any, map[string]any and time.Time.
//
// Decode reports failures as *DecodeError values wrapping one of the
// sentinel errors ErrUnknownMessage, ErrContentDisallowed, ErrDecode or
// ErrInvalidTask; the caller picks Celery's outcome (ack, reject) from the
// sentinel with errors.Is.
package protocol
