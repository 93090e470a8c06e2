// Package tasks is the registry of what ccworker can run: task name → handler. It holds
// the handler API for people who build their own binary, the Python-visible exceptions a
// handler can raise, and the built-in tasks of the stock binary.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ccworker/ccworker/protocol"
)

// Call is one invocation of a task, as its handler sees it.
type Call struct {
	Args    []any
	Kwargs  map[string]any
	Request *protocol.Request // id, retries, eta, parent... of the message
	// Hostname is the worker's node name (Celery's self.request.hostname).
	Hostname string
	// Delivery is where the message came from (Celery's self.request.delivery_info).
	Delivery Delivery
	// Ready, when set, says whether the task may still start. A handler that had to wait
	// before the work begins (for a Python child) calls it then and returns its error:
	// a task revoked or expired meanwhile does not run, as under Celery's prefork pool.
	Ready func() error
}

// Delivery is how the broker delivered a task's message.
type Delivery struct {
	Exchange    string
	RoutingKey  string
	Redelivered bool
}

// Header returns the message header name as the client sent it: any header, the
// protocol's own (id, retries, ...) and the custom ones a client adds, for example
// send_task(..., headers={'authenticated_user': {...}}). Nested tables are
// map[string]any.
func (c *Call) Header(name string) (any, bool) {
	if c.Request == nil {
		return nil, false
	}
	return c.Request.Header(name)
}

// Properties returns the message's AMQP properties as Celery gives them to a task
// (self.request.properties): content_type, app_id, application_headers, ...
func (c *Call) Properties() map[string]any {
	if c.Request == nil {
		return map[string]any{}
	}
	return c.Request.PropertyMap()
}

// DeliveryInfo is Celery's self.request.delivery_info.
func (c *Call) DeliveryInfo() map[string]any {
	var prio any
	if c.Request != nil {
		prio = int64(c.Request.Priority)
	}
	return map[string]any{"exchange": c.Delivery.Exchange, "routing_key": c.Delivery.RoutingKey,
		"priority": prio, "redelivered": c.Delivery.Redelivered}
}

// Handler runs a task. Its context is cancelled at the soft time limit (the cause is
// then pool.ErrSoftTimeLimitExceeded) or when the worker is shutting down for good. The
// value it returns is stored as the task's result (JSON: nil, bool, numbers, strings,
// slices, maps); an error is stored as a FAILURE, as the Python exception an *Exception
// describes, or as builtins.Exception for any other error.
type Handler func(ctx context.Context, c *Call) (any, error)

// Exception is an error that reaches Python clients as a given exception class:
// AsyncResult.get() raises Module.Type(*Args).
type Exception struct {
	Module string // e.g. "builtins", "myapp.errors"
	Type   string // e.g. "ValueError"
	Args   []any
	// Traceback is stored in the result's traceback field; empty gets a short one
	// written by the worker.
	Traceback string
}

// NewException returns an *Exception of the given Python class.
func NewException(module, typ string, args ...any) *Exception {
	if args == nil {
		args = []any{}
	}
	return &Exception{Module: module, Type: typ, Args: args}
}

// Errorf returns a builtins.ValueError-style exception of class typ in builtins with
// the formatted message as its single argument.
func Errorf(typ, format string, a ...any) *Exception {
	return NewException("builtins", typ, fmt.Sprintf(format, a...))
}

func (e *Exception) Error() string {
	parts := make([]string, len(e.Args))
	for i, a := range e.Args {
		parts[i] = fmt.Sprint(a)
	}
	return fmt.Sprintf("%s(%s)", e.Type, strings.Join(parts, ", "))
}

// Info is the exception as the result backend encodes it.
func (e *Exception) Info() protocol.ExceptionInfo {
	return protocol.ExceptionInfo{Type: e.Type, Module: e.Module, Args: e.Args}
}

// ErrWorkerLost matches the error of a task whose process died under it (a Python child
// killed mid-task): FAILURE WorkerLostError, or a requeue with task_reject_on_worker_lost.
var ErrWorkerLost = errors.New("tasks: the process running the task died")

// ErrIgnore is returned by a handler whose task must leave no trace, as Celery's
// celery.exceptions.Ignore: no result is stored, no callback or chain step is sent, and
// the message is acked. Task.replace raises it once the replacement is sent: the
// replacement stores the result under the same task id.
var ErrIgnore = errors.New("tasks: ignored (the task was replaced)")

// ErrDuplicate is returned when a name is registered twice.
var ErrDuplicate = errors.New("tasks: name already registered")

// ErrUnknown is returned when an alias points at a name that is not registered.
var ErrUnknown = errors.New("tasks: no such task")

// Options are a task's attributes, as a Celery @task decorator sets them.
type Options struct {
	// IgnoreResult stores no result for this task (errors neither), like
	// @task(ignore_result=True).
	IgnoreResult bool
	// Doc is the task's docstring: `inspect registered` with taskinfoitems=['__doc__']
	// shows it (cyberCommons lists it on its run pages).
	Doc string
	// TimeLimit and SoftTimeLimit are the task's own limits, as @task(time_limit=...)
	// sets them; zero = the worker's (task_annotations, task_time_limit).
	TimeLimit, SoftTimeLimit time.Duration
	// RateLimit is the task's own rate limit in tasks per second; zero = the worker's.
	RateLimit float64
	// AcksLate, TrackStarted and RejectOnWorkerLost are the task's own acks_late,
	// track_started and reject_on_worker_lost (@task(acks_late=False)); nil = the
	// worker's setting, as a Celery task attribute left unset takes the app's.
	AcksLate, TrackStarted, RejectOnWorkerLost *bool
	// Attrs are other attributes of the task as Python's str() writes them (a Python
	// task's max_retries, serializer, ...), for `inspect registered`.
	Attrs map[string]string
}

// Registry maps task names to handlers. Register everything before the worker starts;
// lookups are then safe from many goroutines.
type Registry struct {
	handlers map[string]Handler
	options  map[string]Options
	aliases  map[string]string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[string]Handler{}, options: map[string]Options{}, aliases: map[string]string{}}
}

// Register adds a handler under name.
func (r *Registry) Register(name string, h Handler) error {
	return r.RegisterWith(name, h, Options{})
}

// RegisterWith adds a handler under name with its options.
func (r *Registry) RegisterWith(name string, h Handler, opts Options) error {
	if name == "" || h == nil {
		return errors.New("tasks: Register needs a name and a handler")
	}
	if _, ok := r.Lookup(name); ok {
		return fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	r.handlers[name] = h
	r.options[name] = opts
	return nil
}

// Options returns the options of name (an alias has its target's).
func (r *Registry) Options(name string) Options {
	if t, ok := r.aliases[name]; ok {
		name = t
	}
	return r.options[name]
}

// Annotate changes the options of the task registered under name (not an alias), as
// Celery's task_annotations change a task's attributes; it reports whether there is
// such a task. Call it before the worker starts.
func (r *Registry) Annotate(name string, f func(*Options)) bool {
	o, ok := r.options[name]
	if !ok {
		return false
	}
	f(&o)
	r.options[name] = o
	return true
}

// Alias makes name run target's handler (for example a Celery task name such as
// cybercomq.tasks.tasks.add served by ccworker.add).
func (r *Registry) Alias(name, target string) error {
	if _, ok := r.handlers[target]; !ok {
		return fmt.Errorf("%w: %q (alias %q)", ErrUnknown, target, name)
	}
	if _, ok := r.Lookup(name); ok {
		return fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	r.aliases[name] = target
	return nil
}

// Lookup returns the handler for name.
func (r *Registry) Lookup(name string) (Handler, bool) {
	if h, ok := r.handlers[name]; ok {
		return h, true
	}
	if t, ok := r.aliases[name]; ok {
		return r.handlers[t], true
	}
	return nil, false
}

// Names returns every registered name and alias, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.handlers)+len(r.aliases))
	for n := range r.handlers {
		names = append(names, n)
	}
	for n := range r.aliases {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Repr is the exception as Python's repr() writes it, e.g. ValueError('boom'): the form
// Celery's task events carry.
func (e *Exception) Repr() string { return protocol.ExceptionRepr(e.Type, e.Args) }
