// Package canvas implements the worker side of Celery's canvas (workflow)
// primitives as a Celery 5.2.6 worker runs them: routing of the messages a
// task sends (task_routes), the callbacks, chain steps and errbacks sent when
// a task ends (celery/app/trace.py, backends/base.py), the children list the
// result document records, and the built-in task celery.chord_unlock that
// the MongoDB result backend uses to complete chords (app/builtins.py).
//
// Signatures are handled as Celery serializes them with JSON: maps with the
// keys task, args, kwargs, options, subtask_type and immutable. Simple
// signatures, chains and groups are supported wherever Celery accepts a
// signature (link, link_error, chain step, chord callback); a chord used as a
// callback or chain step, and the celery.map/starmap/chunks types, are
// reported with ErrUnsupported.
package canvas
