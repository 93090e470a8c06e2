package worker

// A task's own acks_late, track_started and reject_on_worker_lost (its decorator's, in
// tasks.Options) come before the worker-wide settings, as a Celery task attribute does.

// acksEarly says whether the message of task name is acked when the task starts.
func (w *Worker) acksEarly(name string) bool {
	if v := w.reg.Options(name).AcksLate; v != nil {
		return !*v
	}
	return w.cfg.EarlyAck
}

// tracksStarted says whether STARTED is stored before task name runs.
func (w *Worker) tracksStarted(name string) bool {
	if v := w.reg.Options(name).TrackStarted; v != nil {
		return *v
	}
	return w.cfg.TrackStarted
}

// rejectsOnWorkerLost says whether task name is requeued when its process dies under
// it. As in Celery, only a task acked late can be: an acked message is gone.
func (w *Worker) rejectsOnWorkerLost(name string) bool {
	v := w.cfg.RejectOnWorkerLost
	if own := w.reg.Options(name).RejectOnWorkerLost; own != nil {
		v = *own
	}
	return v && !w.acksEarly(name)
}
