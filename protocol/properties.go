package protocol

import "time"

// Properties are the AMQP basic properties of a message that Message and Request have no
// fields of their own for. Celery hands every property to the task (request.properties),
// so a task can read app_id, message_id and the rest.
type Properties struct {
	DeliveryMode uint8
	Expiration   string
	MessageID    string
	Timestamp    time.Time
	Type         string
	UserID       string
	AppID        string
}

// Header returns the message header name as received (protocol 1 and 2 alike: the AMQP
// application headers), with nested tables as map[string]any.
func (r *Request) Header(name string) (any, bool) {
	if r.rawHeaders == nil {
		v, ok := r.Headers[name]
		return v, ok
	}
	v, ok := r.rawHeaders[name]
	if !ok {
		return nil, false
	}
	if n, err := normalize(v, 1); err == nil {
		return n, true
	}
	return v, true
}

// MessageHeaders returns a copy of every message header as received (see Header). It is
// what Celery's request.properties['application_headers'] holds; for a protocol 2
// message, each of them is also an attribute of Celery's request.
func (r *Request) MessageHeaders() map[string]any {
	src := r.rawHeaders
	if src == nil {
		src = r.Headers
	}
	out := make(map[string]any, len(src))
	for k := range src {
		out[k], _ = r.Header(k)
	}
	return out
}

// PropertyMap returns the message's properties the way Celery gives them to the task as
// request.properties: py-amqp's names, the properties kombu always sends
// (content_type, content_encoding, application_headers, delivery_mode, priority) and
// the others that were set.
func (r *Request) PropertyMap() map[string]any {
	p := r.Properties
	m := map[string]any{
		"content_type":        r.ContentType,
		"content_encoding":    r.ContentEncoding,
		"application_headers": r.MessageHeaders(),
		"delivery_mode":       int64(p.DeliveryMode),
		"priority":            int64(r.Priority),
	}
	for k, v := range map[string]string{
		"correlation_id": r.CorrelationID, "reply_to": r.ReplyTo, "expiration": p.Expiration,
		"message_id": p.MessageID, "type": p.Type, "user_id": p.UserID, "app_id": p.AppID,
	} {
		if v != "" {
			m[k] = v
		}
	}
	if !p.Timestamp.IsZero() {
		m["timestamp"] = p.Timestamp.UTC()
	}
	return m
}
