package canvas

import (
	"context"

	"github.com/ccworker/ccworker/tasks"
)

// AccumulateName is Celery's built-in celery.accumulate: the chord body Task.replace adds
// when a task is replaced by a group.
const AccumulateName = "celery.accumulate"

// Accumulate is celery.accumulate(*args, index=None): args[index], or all the args.
func Accumulate(_ context.Context, c *tasks.Call) (any, error) {
	args := c.Args
	if args == nil {
		args = []any{}
	}
	idx, ok := c.Kwargs["index"]
	if !ok || idx == nil {
		return args, nil
	}
	i, ok := toInt(idx)
	if !ok {
		return nil, tasks.Errorf("TypeError", "tuple indices must be integers or slices, not %T", idx)
	}
	if i < 0 {
		i += int64(len(args))
	}
	if i < 0 || i >= int64(len(args)) {
		return nil, tasks.Errorf("IndexError", "tuple index out of range")
	}
	return args[i], nil
}
