package canvas

import (
	"context"
	"fmt"

	"github.com/ccworker/ccworker/tasks"
)

// MapName and StarmapName are Celery's built-in celery.map and celery.starmap, the tasks
// that task.map(it) and task.starmap(it) (xmap, xstarmap) signatures send.
const (
	MapName     = "celery.map"
	StarmapName = "celery.starmap"
)

// Lookup finds the handler of a task name (tasks.Registry.Lookup).
type Lookup func(name string) (tasks.Handler, bool)

// Map returns celery.map (star false) or celery.starmap (star true): it runs the task of
// its task signature on every item of it, in this worker and in order, as Celery's
// built-ins call the task directly, and returns the list of results. The first error
// fails the whole task.
func Map(lookup Lookup, star bool) tasks.Handler {
	return func(ctx context.Context, c *tasks.Call) (any, error) {
		sigV, it := c.Kwargs["task"], c.Kwargs["it"]
		if len(c.Args) == 2 && sigV == nil && it == nil {
			sigV, it = c.Args[0], c.Args[1]
		}
		sig, err := ParseSignature(sigV)
		if err != nil {
			return nil, tasks.Errorf("TypeError", "celery.map: task: %v", err)
		}
		items, ok := it.([]any)
		if !ok {
			return nil, tasks.Errorf("TypeError", "'%T' object is not iterable", it)
		}
		h, ok := lookup(sig.Task)
		if !ok {
			return nil, tasks.NewException("celery.exceptions", "NotRegistered", sig.Task)
		}
		out := make([]any, 0, len(items))
		for _, item := range items {
			args := []any{item}
			if star {
				if args, ok = item.([]any); !ok {
					return nil, tasks.Errorf("TypeError", "%s() argument after * must be an iterable, not %T", sig.Task, item)
				}
			}
			call := *c
			call.Args, call.Kwargs = args, map[string]any{}
			v, err := h(ctx, &call)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sig.Task, err)
			}
			out = append(out, v)
		}
		return out, nil
	}
}
