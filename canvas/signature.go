package canvas

import (
	"fmt"
	"maps"
	"slices"
)

// Signature is a Celery signature (celery.canvas.Signature) as it travels in
// JSON: {"task", "args", "kwargs", "options", "subtask_type", "immutable"}.
// Chains and groups keep their members in Kwargs["tasks"].
type Signature struct {
	Task        string
	Args        []any
	Kwargs      map[string]any
	Options     map[string]any
	SubtaskType string // "" for a simple task, else "chain", "group", "chord", ...
	Immutable   bool

	// tupleArgs: Args was built by prepending partial args (a Python tuple,
	// not the list JSON gives), which changes the argsrepr header.
	tupleArgs bool
}

// ParseSignature reads a decoded signature map (an element of
// Request.Callbacks, Errbacks or Chain, or a chord callback).
func ParseSignature(v any) (*Signature, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("canvas: signature is %T, not a map", v)
	}
	s := &Signature{Kwargs: map[string]any{}, Options: map[string]any{}}
	if s.Task, ok = m["task"].(string); !ok {
		return nil, fmt.Errorf("canvas: signature task is %T, not a string", m["task"])
	}
	switch a := m["args"].(type) {
	case nil:
	case []any:
		s.Args = slices.Clone(a)
	default:
		return nil, fmt.Errorf("canvas: signature %s: args is %T, not a list", s.Task, a)
	}
	switch k := m["kwargs"].(type) {
	case nil:
	case map[string]any:
		s.Kwargs = maps.Clone(k)
	default:
		return nil, fmt.Errorf("canvas: signature %s: kwargs is %T, not a map", s.Task, k)
	}
	switch o := m["options"].(type) {
	case nil:
	case map[string]any:
		s.Options = maps.Clone(o)
	default:
		return nil, fmt.Errorf("canvas: signature %s: options is %T, not a map", s.Task, o)
	}
	switch t := m["subtask_type"].(type) {
	case nil:
	case string:
		s.SubtaskType = t
	default:
		return nil, fmt.Errorf("canvas: signature %s: subtask_type is %T", s.Task, t)
	}
	s.Immutable, _ = m["immutable"].(bool)
	return s, nil
}

// Value returns the signature as the JSON map Celery sends.
func (s *Signature) Value() map[string]any {
	args := s.Args
	if args == nil {
		args = []any{}
	}
	var st any
	if s.SubtaskType != "" {
		st = s.SubtaskType
	}
	kw, opts := s.Kwargs, s.Options
	if kw == nil {
		kw = map[string]any{}
	}
	if opts == nil {
		opts = map[string]any{}
	}
	return map[string]any{
		"task": s.Task, "args": args, "kwargs": kw, "options": opts,
		"subtask_type": st, "immutable": s.Immutable,
	}
}

// ID is the task id frozen in the options ("" when none).
func (s *Signature) ID() string {
	id, _ := s.Options["task_id"].(string)
	return id
}

// clone copies the signature so that its options can be changed. Like
// Signature.clone, it turns the args into a tuple.
func (s *Signature) clone() *Signature {
	c := *s
	c.tupleArgs = true
	c.Args = slices.Clone(s.Args)
	c.Kwargs = maps.Clone(s.Kwargs)
	c.Options = maps.Clone(s.Options)
	if c.Kwargs == nil {
		c.Kwargs = map[string]any{}
	}
	if c.Options == nil {
		c.Options = map[string]any{}
	}
	return &c
}

// tasks returns the members of a chain or group signature.
func (s *Signature) tasks() ([]*Signature, error) {
	raw, ok := s.Kwargs["tasks"].([]any)
	if !ok && s.Kwargs["tasks"] != nil {
		return nil, fmt.Errorf("canvas: %s signature: tasks is %T, not a list", s.SubtaskType, s.Kwargs["tasks"])
	}
	out := make([]*Signature, 0, len(raw))
	for _, t := range raw {
		ts, err := ParseSignature(t)
		if err != nil {
			return nil, err
		}
		out = append(out, ts)
	}
	return out, nil
}

// merge is Signature._merge: call options override the signature's, except
// a group_id the signature already has; partial args are prepended and
// partial kwargs merged unless the signature is immutable.
func (s *Signature) merge(args []any, kwargs, options map[string]any) ([]any, map[string]any, map[string]any, bool) {
	opts := maps.Clone(s.Options)
	if opts == nil {
		opts = map[string]any{}
	}
	for k, v := range options {
		if k == "group_id" {
			if _, ok := s.Options[k]; ok {
				continue
			}
		}
		opts[k] = v
	}
	if s.Immutable {
		return s.Args, s.Kwargs, opts, s.tupleArgs
	}
	a, tuple := s.Args, s.tupleArgs
	if len(args) > 0 {
		a, tuple = append(slices.Clone(args), s.Args...), true
	}
	kw := s.Kwargs
	if len(kwargs) > 0 {
		kw = maps.Clone(s.Kwargs)
		if kw == nil {
			kw = map[string]any{}
		}
		maps.Copy(kw, kwargs)
	}
	return a, kw, opts, tuple
}

// freeze is Signature.freeze for a simple signature: it fixes the task id
// and records the workflow ids in the options.
func (s *Signature) freeze(id, groupID string, chord any, rootID, parentID string, groupIndex any) string {
	tid := s.ID()
	if tid == "" {
		tid = id
		s.Options["task_id"] = tid
	}
	if rootID != "" {
		s.Options["root_id"] = rootID
	}
	if parentID != "" {
		s.Options["parent_id"] = parentID
	}
	if _, ok := s.Options["group_id"]; groupID != "" && !ok {
		s.Options["group_id"] = groupID
	}
	if chord != nil {
		s.Options["chord"] = chord
	}
	if groupIndex != nil {
		s.Options["group_index"] = groupIndex
	}
	return tid
}

// maybeList is Celery's maybe_list: nil stays nil, a list is kept, anything
// else becomes a one-element list.
func maybeList(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	default:
		return []any{v}
	}
}
