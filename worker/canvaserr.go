package worker

import (
	"errors"
	"fmt"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/tasks"
)

// undeliverable is the exception stored when the callbacks or the next chain step of
// task id cannot be sent: NotImplementedError naming what ccworker does not support
// (Celery would have sent it), else ChordError as Celery raises for a canvas it
// cannot apply.
func undeliverable(id string, err error) *tasks.Exception {
	msg := fmt.Sprintf("cannot send the callbacks of %s: %v", id, err)
	if errors.Is(err, canvas.ErrUnsupported) {
		return tasks.NewException("builtins", "NotImplementedError", "ccworker "+msg)
	}
	return tasks.NewException("celery.exceptions", "ChordError", msg)
}
