// Package control is ccworker's side of Celery's monitoring protocol: the pidbox remote
// control mailbox (celery inspect / celery control / app.control.*), the revoked-task set,
// and the event dispatcher (celeryev: worker-online/heartbeat/offline and task-* events that
// Flower and `celery events` read).
//
// The three parts share one Lamport Clock. Mailbox and Events each own a dedicated AMQP
// connection obtained from a Dialer and heal themselves: when the connection or channel
// dies they log the loss once, redial with exponential backoff, log the recovery once, and
// carry on. Their goroutines are started by Start and fully stopped by Stop.
//
// The worker is reached only through the small, data-oriented Worker interface defined
// here; every Worker method is called from the mailbox goroutine and must return quickly
// (a snapshot under a mutex, never waiting for task work), so that replies go out within
// milliseconds even when the pool is saturated.
//
// Wire formats follow Celery 5.2 / kombu 5.2 (celery/worker/control.py, kombu/pidbox.py,
// celery/events/dispatcher.py); see /work/shared/celery-protocol.md §3.11–3.15.
package control
