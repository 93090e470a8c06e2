package protocol

import (
	"fmt"
	"time"
)

// Decode turns a delivery into a Request the way a Celery 5.2.6 worker
// reads it (spec 1.5): headers with a "task" key mark protocol 2 (or the
// hybrid form when the body is a map with "args"); otherwise the body must
// be a protocol 1 map with a "task" key.
//
// The content types application/data and application/text (and an empty
// one, which kombu treats as application/data) are raw payloads that can
// never be a task, so they give ErrUnknownMessage.
//
// Every error is a *DecodeError wrapping ErrUnknownMessage,
// ErrContentDisallowed, ErrDecode or ErrInvalidTask.
func Decode(m Message, accept Accept) (*Request, error) {
	taskHdr, isV2 := m.Headers["task"]
	var id, task string
	if isV2 {
		// Known before the body is read, so the caller can store a failure.
		task, _ = asString(taskHdr)
		id, _ = asString(m.Headers["id"])
	}

	if !accept.Accepts(m.ContentType) {
		switch m.ContentType {
		case "", "application/data", "application/text":
			return fail(id, task, m.ContentType, fmt.Errorf("%w: raw %q payload", ErrUnknownMessage, m.ContentType))
		}
		return fail(id, task, m.ContentType, ErrContentDisallowed)
	}

	payload, err := decodeBody(m)
	if err != nil {
		return fail(id, task, m.ContentType, err)
	}

	r := &Request{
		ContentType:     m.ContentType,
		ContentEncoding: m.ContentEncoding,
		CorrelationID:   m.CorrelationID,
		ReplyTo:         m.ReplyTo,
		Priority:        m.Priority,
		Properties:      m.Properties,
		rawHeaders:      m.Headers,
	}
	if isV2 {
		err = r.fromV2(m.Headers, payload)
	} else {
		err = r.fromV1(m.Headers, payload)
	}
	if r.ID != "" {
		id = r.ID
	}
	if r.Task != "" {
		task = r.Task
	}
	if body, ok := payload.(map[string]any); ok && err != nil {
		// A protocol 1 body's fields are read in map order: an error may come before
		// the id was read. The error line must name the task all the same.
		if id == "" {
			id, _ = asString(body["id"])
		}
		if task == "" {
			task, _ = asString(body["task"])
		}
	}
	if err == nil {
		switch {
		case r.ID == "":
			err = fmt.Errorf("%w: missing task id", ErrInvalidTask)
		case r.Task == "":
			err = fmt.Errorf("%w: missing task name", ErrInvalidTask)
		}
	}
	if err != nil {
		return fail(id, task, m.ContentType, err)
	}
	return r, nil
}

// decodeBody decompresses the body as its compression header says and deserializes it
// by its content type (one Accept has already allowed).
func decodeBody(m Message) (any, error) {
	body := m.Body
	if c := m.Headers["compression"]; c != nil {
		method, ok := asString(c)
		if !ok {
			return nil, fmt.Errorf("%w: compression header is %T", ErrDecode, c)
		}
		var err error
		if body, err = decompress(body, method); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDecode, err)
		}
	}
	var payload any
	var err error
	switch m.ContentType {
	case ContentTypeJSON:
		payload, err = decodeJSON(body)
	case ContentTypeMsgpack:
		payload, err = decodeMsgpack(body)
	case ContentTypeYAML:
		payload, err = decodeYAML(body)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return payload, nil
}

// PeekHeaders returns the task id and name a protocol 2 message carries in its headers,
// without reading its body: for error lines about a message refused before decoding
// (an over-size body, say). Empty when the headers do not say.
func PeekHeaders(headers map[string]any) (id, task string) {
	id, _ = asString(headers["id"])
	task, _ = asString(headers["task"])
	return id, task
}

// fail builds Decode's error result. A plain function rather than a
// closure, so the captured variables don't escape to the heap on the
// success path.
func fail(id, task, contentType string, err error) (*Request, error) {
	return nil, &DecodeError{ID: id, Task: task, ContentType: contentType, Err: err}
}

// hybridKeys are the body fields hybrid_to_proto2 copies before the
// message headers are laid over them.
var hybridKeys = [...]string{
	"lang", "task", "id", "root_id", "parent_id", "group", "meth", "shadow",
	"eta", "expires", "retries", "timelimit", "argsrepr", "kwargsrepr", "origin",
}

func (r *Request) fromV2(headers map[string]any, payload any) error {
	r.Protocol = 2
	switch body := payload.(type) {
	case []any:
		if len(body) != 3 {
			return fmt.Errorf("%w: body has %d elements, want [args, kwargs, embed]", ErrInvalidTask, len(body))
		}
		if err := r.applyFields(headers, true, true); err != nil {
			return err
		}
		args, ok := body[0].([]any)
		if !ok {
			return fmt.Errorf("%w: args is %s, want a list", ErrInvalidTask, typeName(body[0]))
		}
		kwargs, ok := body[1].(map[string]any)
		if !ok {
			return fmt.Errorf("%w: kwargs is %s, want a map", ErrInvalidTask, typeName(body[1]))
		}
		r.Args, r.Kwargs = args, kwargs
		if body[2] == nil {
			return nil
		}
		embed, ok := body[2].(map[string]any)
		if !ok {
			return fmt.Errorf("%w: embed is %s, want a map", ErrInvalidTask, typeName(body[2]))
		}
		return r.applyEmbed(embed, true)
	case map[string]any:
		if _, ok := body["args"]; !ok {
			return fmt.Errorf("%w: protocol 2 body is a map without args", ErrUnknownMessage)
		}
		fields := make(map[string]any, len(hybridKeys)+len(headers))
		for _, k := range hybridKeys {
			if v, ok := body[k]; ok {
				fields[k] = v
			}
		}
		for k, v := range headers {
			fields[k] = v
		}
		utc, err := utcFlag(body)
		if err != nil {
			return err
		}
		if err := r.applyFields(fields, utc, true); err != nil {
			return err
		}
		if err := r.argsKwargsFromMap(body); err != nil {
			return err
		}
		return r.applyEmbed(body, false)
	}
	return fmt.Errorf("%w: protocol 2 body is %s", ErrUnknownMessage, typeName(payload))
}

func (r *Request) fromV1(headers map[string]any, payload any) error {
	body, ok := payload.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: no task header and body is %s", ErrUnknownMessage, typeName(payload))
	}
	if _, ok := body["task"]; !ok {
		return fmt.Errorf("%w: no task header and no task in body", ErrUnknownMessage)
	}
	r.Protocol = 1
	utc, err := utcFlag(body)
	if err != nil {
		return err
	}
	if err := r.applyFields(body, utc, false); err != nil {
		return err
	}
	if ts, ok := body["taskset"]; ok {
		// proto1_to_proto2: group = taskset.
		s, ok := asString(ts)
		if !ok {
			return fmt.Errorf("%w: taskset is %s, want a string", ErrInvalidTask, typeName(ts))
		}
		r.GroupID = s
	}
	if err := r.argsKwargsFromMap(body); err != nil {
		return err
	}
	if err := r.applyEmbed(body, false); err != nil {
		return err
	}
	if len(headers) > 0 {
		h, err := normalizeMap(headers, 0)
		if err != nil {
			return fmt.Errorf("%w: headers: %w", ErrInvalidTask, err)
		}
		r.Headers = h
	}
	// Protocol 1 has no reprs; Celery computes them with saferepr.
	r.ArgsRepr = pyRepr(r.Args, true)
	r.KwargsRepr = pyRepr(r.Kwargs, false)
	return nil
}

// utcFlag reads protocol 1's "utc" field: true unless it says otherwise.
func utcFlag(body map[string]any) (bool, error) {
	switch u := body["utc"].(type) {
	case nil:
		return true, nil
	case bool:
		return u, nil
	}
	return false, fmt.Errorf("%w: utc is %s, want a bool", ErrInvalidTask, typeName(body["utc"]))
}

// argsKwargsFromMap reads args and kwargs from a protocol 1 or hybrid body,
// with Celery's defaults () and {}.
func (r *Request) argsKwargsFromMap(body map[string]any) error {
	switch a := body["args"].(type) {
	case nil:
		if _, ok := body["args"]; ok {
			return fmt.Errorf("%w: args is null, want a list", ErrInvalidTask)
		}
		r.Args = []any{}
	case []any:
		r.Args = a
	default:
		return fmt.Errorf("%w: args is %s, want a list", ErrInvalidTask, typeName(a))
	}
	kw, present := body["kwargs"]
	if !present {
		r.Kwargs = map[string]any{}
		return nil
	}
	m, ok := kw.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: kwargs is %s, want a map", ErrInvalidTask, typeName(kw))
	}
	r.Kwargs = m
	return nil
}

// applyEmbed reads callbacks, errbacks, chord and (for protocol 2) chain.
func (r *Request) applyEmbed(embed map[string]any, withChain bool) error {
	var err error
	if r.Callbacks, err = signatureList(embed, "callbacks"); err != nil {
		return err
	}
	if r.Errbacks, err = signatureList(embed, "errbacks"); err != nil {
		return err
	}
	if withChain {
		if r.Chain, err = signatureList(embed, "chain"); err != nil {
			return err
		}
	}
	r.Chord = embed["chord"]
	return nil
}

func signatureList(m map[string]any, key string) ([]any, error) {
	switch v := m[key].(type) {
	case nil:
		return nil, nil
	case []any:
		return v, nil
	default:
		return nil, fmt.Errorf("%w: %s is %s, want a list", ErrInvalidTask, key, typeName(v))
	}
}

// applyFields interprets the protocol 2 header fields found in h (message
// headers, or a protocol 1 / hybrid body). With collect, keys it does not
// know go to r.Headers so a retry can carry them.
func (r *Request) applyFields(h map[string]any, utc bool, collect bool) error {
	naive := time.UTC
	if !utc {
		naive = time.Local
	}
	for k, v := range h {
		if dst := r.stringFieldOf(k); dst != nil {
			if err := stringField(dst, k, v); err != nil {
				return err
			}
			continue
		}
		var err error
		switch k {
		case "eta":
			r.ETA, err = timeField(k, v, naive)
		case "expires":
			r.Expires, err = timeField(k, v, naive)
		case "retries":
			err = intField(&r.Retries, k, v)
		case "group_index":
			if v != nil {
				i := 0
				err = intField(&i, k, v)
				r.GroupIndex = &i
			}
		case "timelimit":
			err = r.timeLimits(v)
		case "ignore_result":
			switch b := v.(type) {
			case nil:
			case bool:
				r.IgnoreResult = b
			default:
				err = fmt.Errorf("%w: ignore_result is %s, want a bool", ErrInvalidTask, typeName(v))
			}
		case "stamps":
			if v != nil {
				m, ok := asMap(v)
				if !ok {
					err = fmt.Errorf("%w: stamps is %s, want a map", ErrInvalidTask, typeName(v))
				}
				r.Stamps, err = normalizeMapErr(m, err)
			}
		case "stamped_headers":
			r.StampedHeaders, err = stringList(k, v)
		case "lang", "meth", "compression":
			// lang is always "py", meth is unused, compression was applied.
		default:
			if collect {
				err = r.collectHeader(k, v)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// stringFieldOf returns the Request field of a string header, or nil.
func (r *Request) stringFieldOf(k string) *string {
	switch k {
	case "task":
		return &r.Task
	case "id":
		return &r.ID
	case "shadow":
		return &r.Shadow
	case "root_id":
		return &r.RootID
	case "parent_id":
		return &r.ParentID
	case "group":
		return &r.GroupID
	case "origin":
		return &r.Origin
	case "argsrepr":
		return &r.ArgsRepr
	case "kwargsrepr":
		return &r.KwargsRepr
	}
	return nil
}

// intField reads an integer header; None leaves dst alone.
func intField(dst *int, k string, v any) error {
	if v == nil {
		return nil
	}
	n, ok := asInt(v)
	if !ok {
		return fmt.Errorf("%w: %s is %s, want an integer", ErrInvalidTask, k, typeName(v))
	}
	*dst = int(n)
	return nil
}

// collectHeader keeps a header the protocol does not define, for the task.
func (r *Request) collectHeader(k string, v any) error {
	n, err := normalize(v, 1)
	if err != nil {
		return fmt.Errorf("%w: header %s: %w", ErrInvalidTask, k, err)
	}
	if r.Headers == nil {
		r.Headers = make(map[string]any)
	}
	r.Headers[k] = n
	return nil
}

func normalizeMapErr(m map[string]any, err error) (map[string]any, error) {
	if err != nil {
		return nil, err
	}
	out, err := normalizeMap(m, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: stamps: %w", ErrInvalidTask, err)
	}
	return out, nil
}

func stringField(dst *string, key string, v any) error {
	s, ok := asString(v)
	if !ok {
		return fmt.Errorf("%w: %s is %s, want a string", ErrInvalidTask, key, typeName(v))
	}
	*dst = s
	return nil
}

func stringList(key string, v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is %s, want a list", ErrInvalidTask, key, typeName(v))
	}
	out := make([]string, len(a))
	for i, e := range a {
		s, ok := asString(e)
		if !ok || e == nil {
			return nil, fmt.Errorf("%w: %s contains %s, want strings", ErrInvalidTask, key, typeName(e))
		}
		out[i] = s
	}
	return out, nil
}

// timeField parses eta or expires. Like celery.utils.time.maybe_iso8601,
// None and "" mean none; numbers are refused (5.2.6 raises TypeError,
// which the worker turns into InvalidTaskError).
func timeField(key string, v any, naive *time.Location) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		// An AMQP timestamp header, or a YAML timestamp in a protocol 1 body.
		return x.UTC(), nil
	}
	s, ok := asString(v)
	if !ok {
		return time.Time{}, fmt.Errorf("%w: %s is %s, want an ISO-8601 string", ErrInvalidTask, key, typeName(v))
	}
	if s == "" {
		return time.Time{}, nil
	}
	t, err := parseISO(s, naive)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %w", ErrInvalidTask, key, err)
	}
	return t, nil
}

// timeLimits reads timelimit = [hard, soft] (the order the code uses; the
// protocol docs have it backwards).
func (r *Request) timeLimits(v any) error {
	if v == nil {
		return nil
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return fmt.Errorf("%w: timelimit is %s, want [hard, soft]", ErrInvalidTask, typeName(v))
	}
	hard, ok1 := asSeconds(a[0])
	soft, ok2 := asSeconds(a[1])
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: timelimit %v: want null or a non-negative number of seconds", ErrInvalidTask, a)
	}
	r.TimeLimit, r.SoftTimeLimit = hard, soft
	return nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", v)
}
