package worker_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/canvas"
	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
	"github.com/ccworker/ccworker/worker"
)

func withCanvas(t *testing.T) option {
	r, err := canvas.NewRouter(config.Default(), nil)
	require.NoError(t, err)
	return withConfig(func(c *worker.Config) { c.Canvas = &canvas.Sender{Router: r} })
}

func sigOf(task, id, subtaskType string, kwargs map[string]any) map[string]any {
	var st any
	if subtaskType != "" {
		st = subtaskType
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	return map[string]any{"task": task, "args": []any{}, "kwargs": kwargs,
		"options": map[string]any{"task_id": id}, "subtask_type": st, "immutable": false}
}

// When the next chain step cannot be sent (an xmap, which ccworker does not apply), every
// task that would have run gets FAILURE, so a client's AsyncResult.get() raises instead
// of waiting forever on a PENDING step.
func TestUnsentCanvasFailsEveryTaskThatWouldHaveRun(t *testing.T) {
	h := start(t, withCanvas(t))
	group := sigOf("celery.group", "G", "group", map[string]any{"tasks": []any{
		sigOf(tasks.NoopName, "M1", "", nil), sigOf(tasks.NoopName, "M2", "", nil)}})
	r := req(tasks.AddName, int64(1), int64(2))
	r.Chain = []any{group, sigOf(tasks.NoopName, "S3", "", nil), sigOf("celery.map", "X", "xmap", nil)}
	tag := h.send(r)
	byID := map[string]*results.Record{}
	for range 6 { // with the group id, a chain step of its own (as Celery's mark_as_failure)
		rec := h.record()
		byID[rec.TaskID] = rec
	}
	acked(t, h.settlement(), tag)
	for _, id := range []string{r.ID, "X", "S3", "M1", "M2"} {
		require.Contains(t, byID, id)
		assert.Equal(t, results.StatusFailure, byID[id].Status, id)
		e := exc(t, byID[id])
		assert.Equal(t, "NotImplementedError", e.Type, id)
		assert.Contains(t, e.Message[0], "xmap signature celery.map", id)
	}
	assert.Empty(t, h.broker.sent(), "nothing of the canvas was sent")
}
