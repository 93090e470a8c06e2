package protocol

import (
	"fmt"
	"math"
	"time"
)

// EncodeV2 builds a protocol 2 task message from r, as Celery 5.2.6's
// AMQP.as_task_v2 would: JSON body [args, kwargs, embed] and the 16
// standard headers (plus stamps/stamped_headers when set, and r.Headers
// merged at the top level like apply_async(headers=...)). It is used to
// re-publish retries and to send tasks.
//
// Header values are AMQP-friendly Go types (string, nil, bool, int32,
// int64, float64, []any). Nested maps (stamps, custom headers) are
// map[string]any: the transport must turn them into its own table type
// (amqp091-go accepts only amqp.Table). Empty ArgsRepr/KwargsRepr are
// computed like saferepr. CorrelationID defaults to the task id.
func EncodeV2(r *Request) (Message, error) {
	if r.ID == "" || r.Task == "" {
		return Message{}, fmt.Errorf("protocol: EncodeV2: task id and name are required")
	}
	args := r.Args
	if args == nil {
		args = []any{}
	}
	kwargs := r.Kwargs
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	body, err := encodeBodyV2(r, args, kwargs)
	if err != nil {
		return Message{}, err
	}
	corr := r.CorrelationID
	if corr == "" {
		corr = r.ID
	}
	return Message{
		ContentType:     ContentTypeJSON,
		ContentEncoding: "utf-8",
		Headers:         headersV2(r, args, kwargs),
		Body:            body,
		CorrelationID:   corr,
		ReplyTo:         r.ReplyTo,
		Priority:        r.Priority,
	}, nil
}

// encodeBodyV2 renders the protocol 2 body [args, kwargs, embed] in
// Celery's key order, which a map would lose.
func encodeBodyV2(r *Request, args []any, kwargs map[string]any) ([]byte, error) {
	body := make([]byte, 0, 128)
	body = append(body, '[')
	var err error
	if body, err = AppendJSON(body, args); err != nil {
		return nil, fmt.Errorf("protocol: EncodeV2 args: %w", err)
	}
	body = append(body, ", "...)
	if body, err = AppendJSON(body, kwargs); err != nil {
		return nil, fmt.Errorf("protocol: EncodeV2 kwargs: %w", err)
	}
	for i, part := range [...]struct {
		key string
		v   any
	}{{"callbacks", listOrNil(r.Callbacks)}, {"errbacks", listOrNil(r.Errbacks)}, {"chain", listOrNil(r.Chain)}, {"chord", r.Chord}} {
		if i == 0 {
			body = append(body, `, {"`...)
		} else {
			body = append(body, `, "`...)
		}
		body = append(body, part.key...)
		body = append(body, `": `...)
		if body, err = AppendJSON(body, part.v); err != nil {
			return nil, fmt.Errorf("protocol: EncodeV2 %s: %w", part.key, err)
		}
	}
	return append(body, "}]"...), nil
}

// headersV2 builds the protocol 2 headers.
func headersV2(r *Request, args []any, kwargs map[string]any) map[string]any {
	argsRepr, kwargsRepr := r.ArgsRepr, r.KwargsRepr
	if argsRepr == "" {
		argsRepr = pyRepr(args, true)
	}
	if kwargsRepr == "" {
		kwargsRepr = pyRepr(kwargs, false)
	}
	rootID := r.RootID
	if rootID == "" {
		rootID = r.ID
	}
	h := make(map[string]any, 20+len(r.Headers))
	// Custom headers first, so they cannot override the protocol fields.
	for k, v := range r.Headers {
		h[k] = v
	}
	h["lang"] = "py"
	h["task"] = r.Task
	h["id"] = r.ID
	h["shadow"] = strOrNil(r.Shadow)
	h["eta"] = timeOrNil(r.ETA)
	h["expires"] = timeOrNil(r.Expires)
	h["group"] = strOrNil(r.GroupID)
	h["group_index"] = nil
	if r.GroupIndex != nil {
		h["group_index"] = amqpInt(int64(*r.GroupIndex))
	}
	h["retries"] = amqpInt(int64(r.Retries))
	h["timelimit"] = []any{seconds(r.TimeLimit), seconds(r.SoftTimeLimit)}
	h["root_id"] = rootID
	h["parent_id"] = strOrNil(r.ParentID)
	h["argsrepr"] = argsRepr
	h["kwargsrepr"] = kwargsRepr
	h["origin"] = r.Origin
	h["ignore_result"] = r.IgnoreResult
	if r.Stamps != nil || r.StampedHeaders != nil {
		sh := make([]any, len(r.StampedHeaders))
		for i, s := range r.StampedHeaders {
			sh[i] = s
		}
		h["stamped_headers"] = sh
		stamps := r.Stamps
		if stamps == nil {
			stamps = map[string]any{}
		}
		h["stamps"] = stamps
	}
	return h
}

func listOrNil(a []any) any {
	if a == nil {
		return nil
	}
	return a
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	// Python's isoformat() of an aware UTC datetime: "+00:00", not "Z".
	return string(appendPyISO(nil, t.UTC(), false))
}

// amqpInt mirrors py-amqp, which writes ints that fit as signed 32-bit.
func amqpInt(n int64) any {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		return int32(n)
	}
	return n
}

// seconds writes a time limit as Celery does: null, an int when whole,
// else a float.
func seconds(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	if d%time.Second == 0 {
		return amqpInt(int64(d / time.Second))
	}
	return d.Seconds()
}
