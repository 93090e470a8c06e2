package canvas

import (
	"crypto/rand"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/ccworker/ccworker/protocol"
)

// Outgoing is one task message to publish.
type Outgoing struct {
	TaskID string
	Route  // queue, exchange, routing key and priority
	// Expiration is the AMQP expiration property (milliseconds as a string),
	// set when the signature has a numeric expires option; "" = none.
	Expiration string
	// Message is the protocol 2 JSON message, headers as protocol.EncodeV2
	// makes them (nested maps must be turned into amqp.Table by the caller).
	Message protocol.Message
}

// Dispatch is what a finished task sends.
type Dispatch struct {
	// Messages to publish, in Celery's order.
	Messages []Outgoing
	// Children is the task's "children" field for its result document
	// (result tuples of what it sent, see ResultTuple and GroupTuple); it is
	// an empty, non-nil list when nothing was sent.
	Children []any
}

// Failure is what a failed task causes besides its own FAILURE document.
type Failure struct {
	// ChainIDs are the task ids of the remaining chain steps: Celery's
	// mark_as_failure stores the same FAILURE (exception and traceback) for
	// each of them, when the failed task stores errors.
	ChainIDs []string
	// Errbacks are the link_error messages, sent as one group with the failed
	// task's id prepended to their args.
	Errbacks []Outgoing
}

// ResultTuple is the serialized AsyncResult of a task that has no parent:
// [[id, null], null].
func ResultTuple(id string) []any { return []any{[]any{id, nil}, nil} }

// GroupTuple is the serialized GroupResult: [[group_id, null], [members...]].
func GroupTuple(groupID string, members ...[]any) []any {
	m := make([]any, len(members))
	for i, x := range members {
		m[i] = x
	}
	return []any{[]any{groupID, nil}, m}
}

// node is a result as Celery tracks it: an AsyncResult with an optional
// parent, or a GroupResult when group is non-nil.
type node struct {
	id     string
	parent *node
	group  []*node
}

func (n *node) tuple() []any {
	if n.group != nil {
		m := make([]any, len(n.group))
		for i, g := range n.group {
			m[i] = g.tuple()
		}
		return []any{[]any{n.id, nil}, m}
	}
	var parent any
	if n.parent != nil {
		parent = n.parent.tuple()
	}
	return []any{[]any{n.id, parent}, nil}
}

// Sender builds the messages a finished task sends. The zero value is not
// usable: Router is required.
type Sender struct {
	Router *Router
	// Origin is written to the origin header (the worker's node name).
	Origin string
	// NewID returns a fresh task or group id; nil means a random UUID4.
	NewID func() string
	// Now is the clock for countdown and numeric expires; nil means time.Now.
	Now func() time.Time
}

// OnSuccess returns the messages Celery's trace_task sends after req returned
// retval, before storing SUCCESS: the link callbacks with retval prepended
// to their args (several become one group; group callbacks are applied
// separately), then the next chain step (the last element of req.Chain)
// with the rest of the chain embedded. parent_id is req.ID and root_id is
// req.RootID (req.ID when empty).
func (s *Sender) OnSuccess(req *protocol.Request, retval any) (*Dispatch, error) {
	a := s.applier(req.ID, req.RootID)
	root := req.RootID
	if root == "" {
		root = req.ID
	}
	call := func() map[string]any { return map[string]any{"parent_id": req.ID, "root_id": root} }
	partial := []any{retval}
	switch len(req.Callbacks) {
	case 0:
	case 1:
		sig, err := ParseSignature(req.Callbacks[0])
		if err != nil {
			return nil, fmt.Errorf("canvas: task %s: callback: %w", req.ID, err)
		}
		if _, err := a.apply(sig, partial, nil, call(), true); err != nil {
			return nil, fmt.Errorf("canvas: task %s: callback %s: %w", req.ID, sig.Task, err)
		}
	default:
		var sigs []any
		for _, cb := range req.Callbacks {
			sig, err := ParseSignature(cb)
			if err != nil {
				return nil, fmt.Errorf("canvas: task %s: callback: %w", req.ID, err)
			}
			if sig.SubtaskType != "group" {
				sigs = append(sigs, cb)
				continue
			}
			if _, err := a.applyGroup(sig, partial, nil, call(), true); err != nil {
				return nil, fmt.Errorf("canvas: task %s: callback group: %w", req.ID, err)
			}
		}
		if len(sigs) > 0 {
			if _, err := a.applyGroup(groupOf(sigs), partial, nil, call(), true); err != nil {
				return nil, fmt.Errorf("canvas: task %s: callbacks: %w", req.ID, err)
			}
		}
	}
	if n := len(req.Chain); n > 0 {
		sig, err := ParseSignature(req.Chain[n-1])
		if err != nil {
			return nil, fmt.Errorf("canvas: task %s: chain: %w", req.ID, err)
		}
		opts := call()
		opts["chain"] = slices.Clone(req.Chain[:n-1])
		if _, err := a.apply(sig, partial, nil, opts, true); err != nil {
			return nil, fmt.Errorf("canvas: task %s: chain step %s: %w", req.ID, sig.Task, err)
		}
	}
	children := make([]any, len(a.trail))
	for i, t := range a.trail {
		children[i] = t.tuple()
	}
	return &Dispatch{Messages: a.out, Children: children}, nil
}

// OnFailure returns what Celery's Backend.mark_as_failure does besides
// storing the task's FAILURE: the ids of the remaining chain steps, which
// get the same FAILURE, and the errbacks. Celery runs an errback in-process
// only when it is a Python task registered in the worker that takes more
// than one argument; any other errback (every one, for ccworker) is sent as
// a task, all of them in one group, with args (req.ID,) + errback args.
func (s *Sender) OnFailure(req *protocol.Request) (*Failure, error) {
	f := &Failure{}
	for _, c := range req.Chain {
		sig, err := ParseSignature(c)
		if err != nil {
			return nil, fmt.Errorf("canvas: task %s: chain: %w", req.ID, err)
		}
		if id := sig.ID(); id != "" {
			f.ChainIDs = append(f.ChainIDs, id)
		}
	}
	out, err := s.Errbacks(req.ID, req.RootID, req.Errbacks)
	if err != nil {
		return nil, err
	}
	f.Errbacks = out
	return f, nil
}

// Errbacks returns the messages of old-style errbacks (link_error) of the
// failed task taskID: a group of them applied with args (taskID,),
// parent_id taskID and root_id rootID (taskID when empty).
func (s *Sender) Errbacks(taskID, rootID string, errbacks []any) ([]Outgoing, error) {
	if len(errbacks) == 0 {
		return nil, nil
	}
	if rootID == "" {
		rootID = taskID
	}
	a := s.applier(taskID, rootID)
	opts := map[string]any{"parent_id": taskID, "root_id": rootID}
	if _, err := a.applyGroup(groupOf(errbacks), []any{taskID}, nil, opts, true); err != nil {
		return nil, fmt.Errorf("canvas: task %s: errbacks: %w", taskID, err)
	}
	return a.out, nil
}

func groupOf(sigs []any) *Signature {
	return &Signature{Task: "celery.group", SubtaskType: "group",
		Kwargs: map[string]any{"tasks": sigs}, Options: map[string]any{}}
}

func (s *Sender) applier(parentID, rootID string) *applier {
	if rootID == "" {
		rootID = parentID
	}
	return &applier{s: s, parentID: parentID, rootID: rootID}
}

// applier mirrors apply_async of Celery's canvas classes, collecting the
// messages and the results added to the current task's trail.
type applier struct {
	s *Sender
	// parentID and rootID identify the task running (Celery's
	// current_worker_task): send_task defaults parent_id and root_id to them.
	parentID, rootID string
	out              []Outgoing
	trail            []*node
}

func (a *applier) newID() string {
	if a.s.NewID != nil {
		return a.s.NewID()
	}
	return uuid4()
}

func (a *applier) now() time.Time {
	if a.s.Now != nil {
		return a.s.Now()
	}
	return time.Now()
}

// apply is Signature.apply_async for any supported signature type.
func (a *applier) apply(sig *Signature, args []any, kwargs, opts map[string]any, addToParent bool) (*node, error) {
	switch sig.SubtaskType {
	case "":
		a2, kw, o, tuple := sig.merge(args, kwargs, dropNil(opts))
		return a.send(sig.Task, a2, kw, o, tuple, addToParent)
	case "chain":
		return a.applyChain(sig, args, kwargs, opts, addToParent)
	case "group":
		return a.applyGroup(sig, args, kwargs, opts, addToParent)
	case "chord":
		return a.applyChord(sig, args, kwargs, opts, addToParent)
	default:
		return nil, fmt.Errorf("%s signature %s: %w", sig.SubtaskType, sig.Task, ErrUnsupported)
	}
}

func dropNil(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

// applyGroup is group.apply_async: one group id (the group's task_id option
// or a new one), every member frozen with it and applied with the partial
// args; nested groups are unrolled.
func (a *applier) applyGroup(g *Signature, args []any, kwargs, opts map[string]any, addToParent bool) (*node, error) {
	if _, ok := opts["link"]; ok {
		return nil, fmt.Errorf("cannot add link to group: %w", ErrUnsupported)
	}
	options := maps.Clone(g.Options)
	if options == nil {
		options = map[string]any{}
	}
	maps.Copy(options, dropNil(opts))
	gid, _ := options["task_id"].(string)
	delete(options, "task_id")
	if gid == "" {
		gid = a.newID()
	}
	options["group_id"] = gid
	root, _ := options["root_id"].(string)
	members, err := a.unroll(g)
	if err != nil {
		return nil, err
	}
	res := &node{id: gid, group: []*node{}}
	for _, m := range members {
		r, err := a.freeze(m, "", gid, nil, root, "", nil)
		if err != nil {
			return nil, err
		}
		o := maps.Clone(options)
		if ch, ok := m.Options["chord"]; ok && ch != nil {
			o["chord"] = ch
		}
		if _, err := a.apply(m, args, kwargs, o, false); err != nil {
			return nil, err
		}
		res.group = append(res.group, r)
	}
	if addToParent {
		a.trail = append(a.trail, res)
	}
	return res, nil
}

// unroll returns the members of a group with nested groups flattened.
func (a *applier) unroll(g *Signature) ([]*Signature, error) {
	tasks, err := g.tasks()
	if err != nil {
		return nil, err
	}
	var out []*Signature
	for _, t := range tasks {
		if t.SubtaskType == "group" {
			sub, err := a.unroll(t)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, t.clone())
	}
	return out, nil
}

// freeze fixes the ids of sig in place and returns its result node.
func (a *applier) freeze(sig *Signature, id, groupID string, chord any, rootID, parentID string, groupIndex any) (*node, error) {
	switch sig.SubtaskType {
	case "":
		if id == "" && sig.ID() == "" {
			id = a.newID()
		}
		return &node{id: sig.freeze(id, groupID, chord, rootID, parentID, groupIndex)}, nil
	case "chain":
		steps, err := a.prepareSteps(sig, nil, nil, rootID, parentID, nil, id, groupID, chord, groupIndex)
		if err != nil {
			return nil, err
		}
		// Write the frozen steps back so the later apply keeps their ids.
		vals := make([]any, len(steps.tasks))
		for i, t := range steps.tasks {
			vals[len(vals)-1-i] = t.Value()
		}
		sig.Kwargs["tasks"] = vals
		return steps.results[0], nil
	case "group":
		// group._freeze_group_tasks: the group's id is its task_id option,
		// else the enclosing group id, else a new one.
		gid, _ := sig.Options["task_id"].(string)
		if gid == "" {
			gid = groupID
			if gid == "" {
				gid = a.newID()
			}
			sig.Options["task_id"] = gid
		}
		if groupID != "" {
			sig.Options["group_id"] = groupID
		}
		if chord != nil {
			sig.Options["chord"] = chord
		}
		if groupIndex != nil {
			sig.Options["group_index"] = groupIndex
		}
		if _, ok := sig.Options["root_id"]; !ok {
			sig.Options["root_id"] = strOrNil(rootID)
		}
		if _, ok := sig.Options["parent_id"]; !ok {
			sig.Options["parent_id"] = strOrNil(parentID)
		}
		root, _ := sig.Options["root_id"].(string)
		parent, _ := sig.Options["parent_id"].(string)
		members, err := a.unroll(sig)
		if err != nil {
			return nil, err
		}
		res := &node{id: gid, group: []*node{}}
		vals := make([]any, len(members))
		for i, m := range members {
			r, err := a.freeze(m, "", groupID, chord, root, parent, int64(i))
			if err != nil {
				return nil, err
			}
			res.group = append(res.group, r)
			vals[i] = m.Value()
		}
		sig.Kwargs["tasks"] = vals
		return res, nil
	case "chord":
		return a.freezeChord(sig, id, groupID, chord, rootID, parentID, groupIndex)
	default:
		return nil, fmt.Errorf("%s signature %s: %w", sig.SubtaskType, sig.Task, ErrUnsupported)
	}
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// steps is the outcome of chain.prepare_steps: the frozen tasks and their
// results, both in reverse order (the first task to run is last).
type steps struct {
	tasks   []*Signature
	results []*node
}

// prepareSteps is _chain.prepare_steps (protocol 2: no links between steps).
func (a *applier) prepareSteps(c *Signature, args []any, kwargs map[string]any, rootID, parentID string,
	linkError []any, lastID, groupID string, chord, groupIndex any) (*steps, error) {
	pending, err := c.tasks()
	if err != nil {
		return nil, err
	}
	out := &steps{}
	var prev *node
	for len(pending) > 0 {
		t := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		isFirst, isLast := len(pending) == 0, len(out.tasks) == 0
		if t.SubtaskType == "group" {
			if ts, err := t.tasks(); err == nil && len(ts) == 1 {
				t = ts[0] // maybe_unroll_group
			}
		}
		if isFirst {
			a2, kw, o, tuple := t.merge(args, kwargs, nil)
			t = t.clone()
			t.Args, t.Kwargs, t.Options, t.tupleArgs = slices.Clone(a2), maps.Clone(kw), o, tuple
		} else {
			t = t.clone()
		}
		if t.SubtaskType == "chain" {
			sub, err := t.tasks()
			if err != nil {
				return nil, err
			}
			pending = append(pending, sub...)
			continue
		}
		if t.SubtaskType == "group" && len(out.tasks) > 0 {
			// A group followed by a task is a chord whose body is that task.
			last := len(out.tasks) - 1
			t = chordOf(t, out.tasks[last], out.results[last].id, rootID)
			out.tasks, out.results = out.tasks[:last], out.results[:last]
		}
		var res *node
		if isLast {
			res, err = a.freeze(t, lastID, groupID, chord, rootID, "", groupIndex)
		} else {
			res, err = a.freeze(t, "", "", nil, rootID, "", nil)
		}
		if err != nil {
			return nil, err
		}
		if prev != nil && prev.parent == nil {
			prev.parent = res
		}
		for _, eb := range linkError {
			appendListOption(t, "link_error", eb)
		}
		out.tasks = append(out.tasks, t)
		out.results = append(out.results, res)
		prev = res
		if t.SubtaskType == "chord" {
			for prev.parent != nil { // the next step's result is the header's parent
				prev = prev.parent
			}
		}
	}
	if len(out.tasks) == 0 {
		return nil, fmt.Errorf("empty chain: %w", ErrUnsupported)
	}
	return out, nil
}

func appendListOption(s *Signature, key string, v any) {
	items := maybeList(s.Options[key])
	if s.SubtaskType == "group" {
		// group.link_error: every member gets the errback.
		if ts, err := s.tasks(); err == nil {
			vals := make([]any, len(ts))
			for i, t := range ts {
				appendListOption(t, key, v)
				vals[i] = t.Value()
			}
			s.Kwargs["tasks"] = vals
			return
		}
	}
	s.Options[key] = append(slices.Clone(items), v)
}

// applyChain is _chain.apply_async / run.
func (a *applier) applyChain(c *Signature, args []any, kwargs, opts map[string]any, addToParent bool) (*node, error) {
	options := maps.Clone(c.Options)
	if options == nil {
		options = map[string]any{}
	}
	maps.Copy(options, dropNil(opts))
	pop := func(k string) any { v := options[k]; delete(options, k); return v }
	groupID, _ := pop("group_id").(string)
	chord := pop("chord")
	taskID, _ := pop("task_id").(string)
	link := pop("link")
	linkError := maybeList(pop("link_error"))
	rootID, _ := pop("root_id").(string)
	parentID, _ := pop("parent_id").(string)
	groupIndex := pop("group_index")
	if len(args) > 0 && !c.Immutable {
		args = append(slices.Clone(args), c.Args...)
	} else {
		args = c.Args
	}
	st, err := a.prepareSteps(c, args, kwargs, rootID, parentID, linkError, taskID, groupID, chord, groupIndex)
	if err != nil {
		return nil, err
	}
	if link != nil {
		for _, l := range maybeList(link) {
			st.tasks[0].Options["link"] = append(slices.Clone(maybeList(st.tasks[0].Options["link"])), l)
		}
	}
	first := st.tasks[len(st.tasks)-1]
	rest := make([]any, len(st.tasks)-1)
	for i, t := range st.tasks[:len(st.tasks)-1] {
		rest[i] = t.Value()
	}
	if prior, ok := options["chain"].([]any); ok {
		options["chain"] = append(slices.Clone(prior), rest...)
	} else {
		options["chain"] = rest
	}
	r, err := a.apply(first, nil, nil, options, addToParent)
	if err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		return r, nil
	}
	return st.results[0], nil
}

// send is Celery.send_task: route, build and record one message.
// tupleArgs tells whether args is a Python tuple (partial args were
// prepended) or the signature's own list, for the argsrepr header.
func (a *applier) send(name string, args []any, kwargs, options map[string]any, tupleArgs, addToParent bool) (*node, error) {
	options = maps.Clone(options)
	ignore, _ := options["ignore_result"].(bool)
	delete(options, "ignore_result")
	route, err := a.s.Router.Route(name, options)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", name, err)
	}
	id, _ := options["task_id"].(string)
	if id == "" {
		id = a.newID()
	}
	req := &protocol.Request{
		Protocol:     2,
		ID:           id,
		Task:         name,
		Args:         args,
		Kwargs:       kwargs,
		Callbacks:    maybeList(options["link"]),
		Errbacks:     maybeList(options["link_error"]),
		Chord:        options["chord"],
		Origin:       a.s.Origin,
		IgnoreResult: ignore,
		Priority:     route.Priority,
		ContentType:  protocol.ContentTypeJSON,
	}
	req.ArgsRepr, _ = options["argsrepr"].(string)
	req.KwargsRepr, _ = options["kwargsrepr"].(string)
	if req.ArgsRepr == "" && !tupleArgs {
		if r := pyRepr(listOrEmpty(args), false); len(r) <= maxRepr {
			req.ArgsRepr = r
		}
	}
	if ch, ok := options["chain"].([]any); ok {
		req.Chain = ch
	}
	req.Shadow, _ = options["shadow"].(string)
	req.RootID, _ = options["root_id"].(string)
	req.ParentID, _ = options["parent_id"].(string)
	if req.RootID == "" || req.ParentID == "" {
		if req.RootID == "" {
			req.RootID = a.rootID
		}
		if req.ParentID == "" {
			req.ParentID = a.parentID
		}
	}
	req.GroupID, _ = options["group_id"].(string)
	if gi, ok := toInt(options["group_index"]); ok {
		n := int(gi)
		req.GroupIndex = &n
	}
	if n, ok := toInt(options["retries"]); ok {
		req.Retries = int(n)
	}
	if h, ok := options["headers"].(map[string]any); ok {
		req.Headers = h
	}
	if req.TimeLimit, err = optSeconds(options, "time_limit"); err != nil {
		return nil, err
	}
	if req.SoftTimeLimit, err = optSeconds(options, "soft_time_limit"); err != nil {
		return nil, err
	}
	expiration, err := a.schedule(req, options)
	if err != nil {
		return nil, err
	}
	msg, err := protocol.EncodeV2(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", name, err)
	}
	a.out = append(a.out, Outgoing{TaskID: id, Route: route, Expiration: expiration, Message: msg})
	n := &node{id: id}
	if addToParent {
		a.trail = append(a.trail, n)
	}
	return n, nil
}

// schedule sets the ETA (countdown or eta) and expiry of req from the options and returns
// the AMQP expiration (milliseconds) Celery gives a message that expires.
func (a *applier) schedule(req *protocol.Request, options map[string]any) (string, error) {
	var err error
	now := a.now()
	if cd, ok := toFloat(options["countdown"]); ok && cd != 0 {
		req.ETA = now.Add(floatSeconds(cd)).UTC()
	} else if req.ETA, err = optTime(options, "eta"); err != nil {
		return "", err
	}
	expiration := ""
	if ex, ok := toFloat(options["expires"]); ok {
		req.Expires = now.Add(floatSeconds(ex)).UTC()
		expiration = strconv.FormatInt(int64(math.Max(ex, 0)*1000), 10)
	} else if req.Expires, err = optTime(options, "expires"); err != nil {
		return "", err
	} else if !req.Expires.IsZero() {
		ms := req.Expires.Sub(now).Milliseconds()
		expiration = strconv.FormatInt(max(ms, 0), 10)
	}
	return expiration, nil
}

// maxRepr is Celery's argsrepr_maxsize; longer lists are left to
// protocol.EncodeV2, which truncates like saferepr (as a tuple).
const maxRepr = 1024

func listOrEmpty(a []any) []any {
	if a == nil {
		return []any{}
	}
	return a
}

func floatSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func optSeconds(m map[string]any, k string) (time.Duration, error) {
	v := m[k]
	if v == nil {
		return 0, nil
	}
	f, ok := toFloat(v)
	if !ok {
		return 0, fmt.Errorf("canvas: option %s is %T, not a number", k, v)
	}
	return floatSeconds(f), nil
}

func optTime(m map[string]any, k string) (time.Time, error) {
	switch v := m[k].(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return v.UTC(), nil
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("canvas: option %s %q is not an ISO-8601 time", k, v)
	default:
		return time.Time{}, fmt.Errorf("canvas: option %s is %T, not a time", k, v)
	}
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		if n == math.Trunc(n) {
			return int64(n), true
		}
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	}
	return 0, false
}

// uuid4 returns a random RFC 4122 version 4 UUID, as kombu's uuid().
func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
