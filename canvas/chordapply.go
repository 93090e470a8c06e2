package canvas

import (
	"fmt"
	"maps"
	"slices"
)

// chordParts returns a chord signature's header tasks and its body. The header is a
// list of signatures, or a group (or chain) signature once Celery has frozen the chord
// (_maybe_group).
func (s *Signature) chordParts() ([]*Signature, *Signature, error) {
	var header []*Signature
	switch h := s.Kwargs["header"].(type) {
	case []any:
		for _, t := range h {
			ts, err := ParseSignature(t)
			if err != nil {
				return nil, nil, fmt.Errorf("chord header: %w", err)
			}
			header = append(header, ts)
		}
	case map[string]any:
		hs, err := ParseSignature(h)
		if err != nil {
			return nil, nil, fmt.Errorf("chord header: %w", err)
		}
		if header = []*Signature{hs}; hs.SubtaskType == "group" || hs.SubtaskType == "chain" {
			if header, err = hs.tasks(); err != nil {
				return nil, nil, err
			}
		}
	default:
		return nil, nil, fmt.Errorf("chord header is %T: %w", h, ErrUnsupported)
	}
	body, err := ParseSignature(s.Kwargs["body"])
	if err != nil {
		return nil, nil, fmt.Errorf("chord body: %w", err)
	}
	return header, body, nil
}

// headerGroup is the chord's header as the group Celery makes of it, keeping the
// options (task_id) a frozen header group already has.
func (s *Signature) headerGroup(header []*Signature) *Signature {
	vals := make([]any, len(header))
	for i, h := range header {
		vals[i] = h.Value()
	}
	g := groupOf(vals)
	if h, ok := s.Kwargs["header"].(map[string]any); ok {
		if o, ok := h["options"].(map[string]any); ok && h["subtask_type"] == "group" {
			g.Options = maps.Clone(o)
		}
	}
	return g
}

// freezeChord is _chord.freeze: the header group is frozen with the body as its chord
// callback, then the body with the ids given; the body's first result gets the header's
// group result as its parent.
func (a *applier) freezeChord(sig *Signature, id, groupID string, chord any, rootID, parentID string,
	groupIndex any) (*node, error) {
	header, body, err := sig.chordParts()
	if err != nil {
		return nil, err
	}
	hg := sig.headerGroup(header)
	headerRes, err := a.freeze(hg, "", "", nil, rootID, parentID, nil)
	if err != nil {
		return nil, err
	}
	bodyRes, err := a.freeze(body, id, groupID, chord, rootID, "", groupIndex)
	if err != nil {
		return nil, err
	}
	setChord(hg, body.Value())
	sig.Kwargs["header"], sig.Kwargs["body"] = hg.Value(), body.Value()
	n := bodyRes
	for n.parent != nil {
		n = n.parent
	}
	n.parent = headerRes
	return bodyRes, nil
}

// setChord sets the chord callback of every member of a frozen group (Celery shares
// one body object, frozen after the header).
func setChord(g *Signature, body map[string]any) {
	ts, err := g.tasks()
	if err != nil {
		return
	}
	vals := make([]any, len(ts))
	for i, t := range ts {
		if t.SubtaskType == "group" {
			setChord(t, body)
		} else {
			t.Options["chord"] = body
		}
		vals[i] = t.Value()
	}
	g.Options["chord"] = body
	g.Kwargs["tasks"] = vals
}

// applyChord is _chord.apply_async and run for a result backend without native chord
// support (MongoDB): the body is frozen, celery.chord_unlock is sent to poll the header,
// then the header group is applied with the body as its chord callback.
func (a *applier) applyChord(c *Signature, args []any, kwargs, opts map[string]any, addToParent bool) (*node, error) {
	if len(args) > 0 && !c.Immutable {
		args = append(slices.Clone(args), c.Args...)
	} else {
		args = c.Args
	}
	header, body, err := c.chordParts()
	if err != nil {
		return nil, err
	}
	opts = dropNil(opts)
	body = body.clone()
	maps.Copy(body.Options, opts) // body.clone(**options)
	options := maps.Clone(c.Options)
	maps.Copy(options, opts)
	taskID, _ := options["task_id"].(string)
	delete(options, "task_id")
	hg := c.headerGroup(header)
	groupID, _ := hg.Options["task_id"].(string)
	if groupID == "" {
		groupID = a.newID()
	}
	rootID, _ := body.Options["root_id"].(string)
	maps.Copy(body.Options, options)
	bodyRes, err := a.freeze(body, taskID, "", nil, rootID, "", nil)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"chain", "chord", "task_id"} {
		delete(options, k)
	}
	hg.Options["task_id"] = groupID
	headerRes, err := a.freeze(hg, "", groupID, body.Value(), rootID, "", nil)
	if err != nil {
		return nil, err
	}
	if len(header) == 0 {
		r, err := a.apply(body, []any{[]any{}}, nil, nil, addToParent)
		if err != nil {
			return nil, err
		}
		bodyRes = r
	} else {
		if err := a.chordUnlock(groupID, headerRes, body); err != nil {
			return nil, err
		}
		options["task_id"] = groupID
		if _, err := a.applyGroup(hg, args, kwargs, options, addToParent); err != nil {
			return nil, err
		}
	}
	n := bodyRes
	for n.parent != nil {
		n = n.parent
	}
	n.parent = headerRes
	return bodyRes, nil
}

// chordUnlock sends celery.chord_unlock(group_id, body, result=[tuples], interval=None,
// max_retries=None) a second from now, to the body's queue (fallback_chord_unlock).
func (a *applier) chordUnlock(groupID string, header *node, body *Signature) error {
	results := make([]any, len(header.group))
	for i, r := range header.group {
		results[i] = r.tuple()
	}
	queue, _ := body.Options["queue"].(string)
	if queue == "" {
		r, err := a.s.Router.Route(body.Task, map[string]any{})
		if err != nil {
			return fmt.Errorf("route %s: %w", body.Task, err)
		}
		queue = r.Queue
	}
	prio := body.Options["priority"]
	if prio == nil {
		prio = int64(0)
	}
	_, err := a.send(ChordUnlockName, []any{groupID, body.Value()},
		map[string]any{"interval": nil, "max_retries": nil, "result": results},
		map[string]any{"countdown": int64(1), "queue": queue, "priority": prio}, true, true)
	return err
}

// chordOf is chord(group, body=task, task_id=id, root_id=root), as prepare_steps builds
// it for a group followed by a task in a chain.
func chordOf(g, body *Signature, id, rootID string) *Signature {
	header := []any{}
	if ts, err := g.tasks(); err == nil {
		for _, t := range ts {
			header = append(header, t.Value())
		}
	}
	opts := map[string]any{"task_id": id}
	if rootID != "" {
		opts["root_id"] = rootID
	}
	return &Signature{Task: "celery.chord", SubtaskType: "chord", Args: []any{}, Options: opts,
		Kwargs: map[string]any{"kwargs": map[string]any{}, "header": header, "body": body.Value()}}
}
