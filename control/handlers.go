package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

func ok(v any) map[string]any  { return map[string]any{"ok": v} }
func nok(v any) map[string]any { return map[string]any{"error": v} }

// pyError is an exception raised by a handler: Node.dispatch replies {"error": repr(exc)}.
type pyError struct{ repr string }

func (e pyError) Error() string { return e.repr }

type handler func(m *Mailbox, a args) (any, error)

// handlers are celery/worker/control.py's Panel, aliases included.
var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		"ping":            func(*Mailbox, args) (any, error) { return ok("pong"), nil },
		"stats":           (*Mailbox).hStats,
		"active":          (*Mailbox).hActive,
		"reserved":        (*Mailbox).hReserved,
		"scheduled":       (*Mailbox).hScheduled,
		"revoked":         (*Mailbox).hRevoked,
		"registered":      (*Mailbox).hRegistered,
		"active_queues":   (*Mailbox).hActiveQueues,
		"query_task":      (*Mailbox).hQueryTask,
		"conf":            (*Mailbox).hConf,
		"clock":           func(m *Mailbox, _ args) (any, error) { return map[string]any{"clock": m.clock.Value()}, nil },
		"hello":           (*Mailbox).hHello,
		"report":          (*Mailbox).hReport,
		"revoke":          (*Mailbox).hRevoke,
		"terminate":       (*Mailbox).hTerminate,
		"rate_limit":      (*Mailbox).hRateLimit,
		"time_limit":      (*Mailbox).hTimeLimit,
		"enable_events":   (*Mailbox).hEnableEvents,
		"disable_events":  (*Mailbox).hDisableEvents,
		"heartbeat":       (*Mailbox).hHeartbeat,
		"shutdown":        (*Mailbox).hShutdown,
		"add_consumer":    (*Mailbox).hAddConsumer,
		"cancel_consumer": (*Mailbox).hCancelConsumer,
		"election":        func(*Mailbox, args) (any, error) { return nil, nil }, // no gossip: Celery returns None
		"memsample":       func(*Mailbox, args) (any, error) { return nil, nil }, // Celery without psutil: None
		"memdump": func(*Mailbox, args) (any, error) {
			return nil, pyError{pyExc("NotImplementedError", "memdump is not supported by ccworker")}
		},
		"objgraph": func(*Mailbox, args) (any, error) {
			return nil, pyError{pyExc("ImportError", "Requires the objgraph library")}
		},
		"pool_grow": func(*Mailbox, args) (any, error) {
			return nok("pool_grow is not supported by ccworker: the pool size is fixed by --concurrency"), nil
		},
		"pool_shrink": func(*Mailbox, args) (any, error) {
			return nok("pool_shrink is not supported by ccworker: the pool size is fixed by --concurrency"), nil
		},
		"pool_restart": func(*Mailbox, args) (any, error) {
			return nil, pyError{pyExc("ValueError", "Pool restarts not enabled")}
		},
		"autoscale": func(*Mailbox, args) (any, error) { return nil, pyError{pyExc("ValueError", "Autoscale not enabled")} },
	}
	for alias, name := range map[string]string{
		"dump_conf": "conf", "dump_tasks": "registered", "dump_active": "active",
		"dump_reserved": "reserved", "dump_schedule": "scheduled", "dump_revoked": "revoked",
	} {
		handlers[alias] = handlers[name]
	}
}

// dispatch runs one method; errors become Celery's {"error": repr(exc)}; an unknown method
// is KeyError('<method>'), as kombu's Node.dispatch replies.
// reply=false: send no reply even when asked (shutdown).
func (m *Mailbox) dispatch(method string, arguments map[string]any) (result any, reply bool) {
	h, found := handlers[method]
	if !found {
		m.log.Error("No such control command: " + method)
		return nok(pyExc("KeyError", method)), true
	}
	reply = true
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("pidbox command panicked", zap.String("method", method), zap.Any("panic", r))
			result = nok(pyExc("RuntimeError", fmt.Sprint(r)))
		}
	}()
	res, err := h(m, args(arguments))
	if errors.Is(err, errNoReply) {
		return nil, false
	}
	if err != nil {
		var pe pyError
		if !errors.As(err, &pe) {
			pe = pyError{pyExc("Exception", err.Error())}
		}
		m.log.Error("pidbox command error", zap.String("method", method), zap.String("error", pe.repr))
		return nok(pe.repr), true
	}
	return res, true
}

// args reads Python keyword arguments decoded from JSON.
type args map[string]any

func (a args) str(k string) string {
	switch v := a[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (a args) boolean(k string) bool {
	switch v := a[k].(type) {
	case bool:
		return v
	case string: // strtobool, for the CLI's string arguments
		switch strings.ToLower(v) {
		case "1", "true", "yes", "y", "on":
			return true
		}
	case json.Number:
		f, _ := v.Float64()
		return f != 0
	}
	return false
}

// float returns the number at k (or a numeric string); ok=false for null/absent.
func (a args) float(k string) (float64, bool, error) {
	v, present := a[k]
	if !present || v == nil {
		return 0, false, nil
	}
	if f, ok := numArg(v); ok {
		return f, true, nil
	}
	if s, isStr := v.(string); isStr {
		return 0, false, pyError{pyExc("ValueError", "could not convert string to float: "+pyStr(s))}
	}
	return 0, false, nil
}

// list is maybe_list: a string becomes a one-element list.
func (a args) list(k string) []string {
	switch v := a[k].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			} else if e != nil {
				out = append(out, fmt.Sprint(e))
			}
		}
		return out
	}
	return nil
}

func (m *Mailbox) hStats(args) (any, error) {
	s := m.cfg.Worker.Stats()
	up := s.Uptime
	if up == 0 {
		up = time.Since(m.started)
	}
	return s.dict(pid, m.clock.Value(), up.Seconds()), nil
}

func (m *Mailbox) hActive(a args) (any, error) {
	safe := a.boolean("safe")
	out := []any{}
	for _, t := range m.cfg.Worker.ActiveTasks() {
		out = append(out, t.dict(safe))
	}
	return out, nil
}

func (m *Mailbox) hReserved(args) (any, error) {
	out := []any{}
	for _, t := range m.cfg.Worker.ReservedTasks() {
		out = append(out, t.dict(false))
	}
	return out, nil
}

func (m *Mailbox) hScheduled(args) (any, error) {
	out := []any{}
	for _, s := range m.cfg.Worker.ScheduledTasks() {
		out = append(out, s.dict())
	}
	return out, nil
}

func (m *Mailbox) hRevoked(args) (any, error) { return m.revoked.List(), nil }

var defaultTaskInfoItems = []string{"exchange", "routing_key", "rate_limit"}

// hRegistered: sorted names without celery.* (unless builtins), each followed by
// " [attr=value ...]" for the requested attributes that are set (not None), as Celery
// writes them: a task without a docstring asked for __doc__ is its bare name.
func (m *Mailbox) hRegistered(a args) (any, error) {
	items := a.list("taskinfoitems")
	if len(items) == 0 {
		items = defaultTaskInfoItems
	}
	builtins := a.boolean("builtins")
	tasks := m.cfg.Worker.Registered()
	slices.SortFunc(tasks, func(x, y TaskMeta) int { return strings.Compare(x.Name, y.Name) })
	out := []any{}
	for _, t := range tasks {
		if !builtins && strings.HasPrefix(t.Name, "celery.") {
			continue
		}
		var fields []string
		seen := map[string]bool{}
		for _, it := range items {
			if seen[it] {
				continue
			}
			seen[it] = true
			v, set := t.Attrs[it]
			if it == "name" {
				v, set = t.Name, true
			}
			if set {
				fields = append(fields, it+"="+v)
			}
		}
		if len(fields) == 0 {
			out = append(out, t.Name)
		} else {
			out = append(out, t.Name+" ["+strings.Join(fields, " ")+"]")
		}
	}
	return out, nil
}

func (m *Mailbox) hActiveQueues(args) (any, error) {
	qs := m.cfg.Worker.Queues()
	m.mu.Lock()
	if len(qs) > 0 {
		m.lastQueues = slices.Clone(qs)
	} else {
		qs = m.lastQueues // never answer an empty list (cyberCommons indexes reply[0])
	}
	m.mu.Unlock()
	out := []any{}
	for _, q := range qs {
		out = append(out, q.dict())
	}
	return out, nil
}

func (m *Mailbox) hQueryTask(a args) (any, error) {
	ids := a.list("ids")
	out := map[string]any{}
	if len(ids) == 0 {
		return out, nil
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, t := range m.cfg.Worker.ActiveTasks() {
		if want[t.ID] {
			out[t.ID] = []any{"active", t.dict(false)}
		}
	}
	add := func(t TaskInfo) {
		if _, done := out[t.ID]; want[t.ID] && !done {
			out[t.ID] = []any{"reserved", t.dict(false)}
		}
	}
	for _, t := range m.cfg.Worker.ReservedTasks() {
		add(t)
	}
	for _, s := range m.cfg.Worker.ScheduledTasks() {
		add(s.Request)
	}
	return out, nil
}

// hConf: the worker's settings (the config file's, as Celery's changes) and, with
// with_defaults, every other setting at Celery's default, so a client finds any key.
func (m *Mailbox) hConf(a args) (any, error) {
	conf := m.cfg.Worker.Conf()
	if a.boolean("with_defaults") {
		all := celeryDefaults()
		maps.Copy(all, conf)
		conf = all
	}
	return sanitizeConf(conf), nil
}

// hHello answers a peer's mingle: merge its revoked ids, reply ours with the clock.
func (m *Mailbox) hHello(a args) (any, error) {
	from := a.str("from_node")
	if from == m.cfg.NodeName {
		return nil, nil
	}
	m.log.Info("sync with " + from)
	if rev, ok := a["revoked"].(map[string]any); ok {
		mono, now := monotonicNow(), time.Now()
		for id, v := range rev {
			if l, ok := v.([]any); ok && len(l) > 0 {
				v = l[0]
			}
			ts, ok := numArg(v)
			if !ok {
				continue
			}
			age := time.Duration((mono - ts) * float64(time.Second))
			m.revoked.addAt(id, now.Add(-max(age, 0)))
		}
	}
	m.revoked.Purge()
	mono, now := monotonicNow(), time.Now()
	rev := map[string]any{}
	for id, at := range m.revoked.snapshot() {
		rev[id] = []any{mono - now.Sub(at).Seconds(), id}
	}
	return map[string]any{"revoked": rev, "clock": m.clock.Forward()}, nil
}

func (m *Mailbox) hReport(args) (any, error) {
	v := m.cfg.Version
	if v == "" {
		v = "unknown"
	}
	return ok(fmt.Sprintf("software -> ccworker:%s (Go worker speaking the Celery 5 protocol) %s\n"+
		"platform -> system:%s arch:%s\nnode -> %s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, m.cfg.NodeName)), nil
}

// signalNames maps what celery.platforms.signals.signum accepts to a canonical name.
var signalNames = map[string]string{
	"HUP": "SIGHUP", "INT": "SIGINT", "QUIT": "SIGQUIT", "KILL": "SIGKILL", "TERM": "SIGTERM",
	"USR1": "SIGUSR1", "USR2": "SIGUSR2", "ABRT": "SIGABRT", "ALRM": "SIGALRM",
	"1": "SIGHUP", "2": "SIGINT", "3": "SIGQUIT", "9": "SIGKILL", "15": "SIGTERM",
	"10": "SIGUSR1", "12": "SIGUSR2", "6": "SIGABRT", "14": "SIGALRM",
}

func normalizeSignal(s string) (string, error) {
	if s == "" {
		return "SIGTERM", nil
	}
	u := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := signalNames[u]; ok {
		return n, nil
	}
	return "", pyError{pyExc("TypeError", "signal name "+s+" is not supported")}
}

func (m *Mailbox) hRevoke(a args) (any, error) {
	return m.revoke(a.list("task_id"), a.boolean("terminate"), a.str("signal"))
}

func (m *Mailbox) hTerminate(a args) (any, error) {
	return m.revoke(a.list("task_id"), true, a.str("signal"))
}

// revoke is celery.worker.control.revoke: the ids go into the revoked set; with terminate the
// running ones are stopped. Ids keep their order, duplicates removed (Celery joins a set).
func (m *Mailbox) revoke(ids []string, terminate bool, signal string) (any, error) {
	seen := map[string]bool{}
	uniq := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	sig := "SIGTERM"
	if terminate {
		var err error
		if sig, err = normalizeSignal(signal); err != nil {
			return nil, err
		}
	}
	m.revoked.Add(uniq...)
	terminated := m.cfg.Worker.Revoke(uniq, terminate, sig)
	if terminate {
		if len(terminated) == 0 {
			return ok("terminate: tasks unknown"), nil
		}
		return ok("terminate: " + strings.Join(terminated, ", ")), nil
	}
	idstr := strings.Join(uniq, ", ")
	m.log.Info("Tasks flagged as revoked: " + idstr)
	return ok("tasks " + idstr + " flagged as revoked"), nil
}

var rateRE = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([smh]))?\s*$`)

// validRate is celery.utils.time.rate's parsing: "", N, N/s, N/m, N/h.
func validRate(r string) error {
	if r == "" || rateRE.MatchString(r) {
		return nil
	}
	num, _, _ := strings.Cut(r, "/")
	if _, err := strconv.ParseFloat(strings.TrimSpace(num), 64); err != nil {
		return fmt.Errorf("ValueError(%s)", pyStr("could not convert string to float: "+pyStr(num)))
	}
	return fmt.Errorf("KeyError(%s)", pyStr(r[strings.Index(r, "/")+1:]))
}

func (m *Mailbox) hRateLimit(a args) (any, error) {
	task := a.str("task_name")
	r := a.str("rate_limit")
	if r == "0" {
		r = ""
	}
	if err := validRate(r); err != nil {
		return nok("Invalid rate limit string: " + err.Error()), nil
	}
	if err := m.cfg.Worker.SetRateLimit(task, r); err != nil {
		if errors.Is(err, ErrUnknownTask) {
			return nok("unknown task"), nil
		}
		return nil, err
	}
	if r == "" {
		return ok("rate limit disabled successfully"), nil
	}
	return ok("new rate limit set successfully"), nil
}

func (m *Mailbox) hTimeLimit(a args) (any, error) {
	soft, _, err := a.float("soft")
	if err != nil {
		return nil, err
	}
	hard, _, err := a.float("hard")
	if err != nil {
		return nil, err
	}
	if err := m.cfg.Worker.SetTimeLimit(a.str("task_name"), soft, hard); err != nil {
		if errors.Is(err, ErrUnknownTask) {
			return nok("unknown task"), nil
		}
		return nil, err
	}
	return ok("time limits set successfully"), nil
}

func (m *Mailbox) hEnableEvents(args) (any, error) {
	if m.cfg.Events != nil && m.cfg.Events.EnableTaskEvents() {
		m.log.Info("Events of group {task} enabled by remote.")
		return ok("task events enabled"), nil
	}
	return ok("task events already enabled"), nil
}

func (m *Mailbox) hDisableEvents(args) (any, error) {
	if m.cfg.Events != nil && m.cfg.Events.DisableTaskEvents() {
		m.log.Info("Events of group {task} disabled by remote.")
		return ok("task events disabled"), nil
	}
	return ok("task events already disabled"), nil
}

func (m *Mailbox) hHeartbeat(args) (any, error) {
	if m.cfg.Events != nil {
		m.cfg.Events.SendHeartbeat()
	}
	return nil, nil
}

// errNoReply marks a handler after which Celery sends no reply (WorkerShutdown is a
// SystemExit, which Node.dispatch re-raises before replying).
var errNoReply = errors.New("no reply")

func (m *Mailbox) hShutdown(a args) (any, error) {
	msg := a.str("msg")
	if msg == "" {
		msg = "Got shutdown from remote"
	}
	m.log.Warn(msg)
	m.cfg.Worker.Shutdown(msg)
	return nil, errNoReply
}

func (m *Mailbox) hAddConsumer(a args) (any, error) {
	q := a.str("queue")
	opts := map[string]any{}
	for k, v := range a {
		switch k {
		case "queue", "exchange", "exchange_type", "routing_key":
		default:
			opts[k] = v
		}
	}
	err := m.cfg.Worker.AddConsumer(AddConsumer{
		Queue: q, Exchange: a.str("exchange"), ExchangeType: a.str("exchange_type"),
		RoutingKey: a.str("routing_key"), Options: opts,
	})
	if err != nil {
		return nil, err
	}
	return ok("add consumer " + q), nil
}

func (m *Mailbox) hCancelConsumer(a args) (any, error) {
	q := a.str("queue")
	if err := m.cfg.Worker.CancelConsumer(q); err != nil {
		return nil, err
	}
	return ok("no longer consuming from " + q), nil
}
