package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/results"
)

// A task's life is one small state machine, and every outcome goes through it:
//
//	received ──▶ done ──▶ stored ──▶ forgotten
//	   (running, held,  (documents   (durable, or   (the message settled or left
//	    waiting)         written)     none)          for redelivery; out of the
//	                                                 in-flight table)
//
// The message is settled at most once: early (early ack, ack guard) while the task is
// on its way, or at the end with the task's verdict. Ending a task always forgets it,
// whether or not the message was settled early, so nothing stays in flight.
type stage uint8

const (
	stageReceived  stage = iota // in the in-flight table: waiting, held, or running
	stageDone                   // the outcome is classified; its documents are being written
	stageStored                 // the documents are durable (or there were none to write)
	stageForgotten              // the end: out of the in-flight table
)

// verdict is what becomes of the message when its task ends.
type verdict uint8

const (
	verdictAck     verdict = iota
	verdictReject          // without requeue (dead-lettered or dropped)
	verdictRequeue         // back to its queue at once
	verdictLeave           // unsettled: back to the queue when the channel closes
)

func (v verdict) String() string {
	return [...]string{"ack", "reject", "requeue", "leave"}[v]
}

// life is a task's state; its mutex is only held for transitions, never for I/O.
type life struct {
	mu    sync.Mutex
	stage stage
	acked bool // the message is settled (acked or rejected), perhaps early
}

// isAcked reports whether the message has been acked or rejected.
func (t *task) isAcked() bool {
	t.life.mu.Lock()
	defer t.life.mu.Unlock()
	return t.life.acked
}

// ackEarly acks the message while the task goes on (early ack, ack guard). It reports
// whether it did: a message is acked once, and not at all after its task has ended.
func (t *task) ackEarly() bool {
	t.life.mu.Lock()
	if t.life.acked || t.life.stage == stageForgotten {
		t.life.mu.Unlock()
		return false
	}
	t.life.acked = true
	t.life.mu.Unlock()
	t.d.Ack()
	return true
}

// advance moves the task forward to s; a task never goes back.
func (t *task) advance(s stage) {
	t.life.mu.Lock()
	if s > t.life.stage {
		t.life.stage = s
	}
	t.life.mu.Unlock()
}

// end is the last step of every task: the message gets its verdict (unless it was
// settled early) and the task leaves the in-flight table. Later calls do nothing.
func (t *task) end(v verdict) {
	t.life.mu.Lock()
	if t.life.stage == stageForgotten {
		t.life.mu.Unlock()
		return
	}
	t.life.stage = stageForgotten
	settle := !t.life.acked && v != verdictLeave
	if settle {
		t.life.acked = true
	}
	t.life.mu.Unlock()
	if settle {
		switch v {
		case verdictAck:
			t.d.Ack()
		case verdictReject:
			t.d.Reject(false)
		case verdictRequeue:
			t.d.Reject(true)
		}
		t.w.stats.AckLatency.Observe(time.Since(t.received))
	}
	t.w.mu.Lock()
	delete(t.w.inflight, t)
	if len(t.w.inflight) == 0 && t.w.emptied != nil {
		close(t.w.emptied) // a Stop waits for the last task to end
		t.w.emptied = nil
	}
	t.w.mu.Unlock()
}

// completion is a task's classified outcome: the documents to store, then what becomes
// of the message once they are durable.
type completion struct {
	// extra are stored beside the task's own document (the chain steps that will never
	// run); their fate does not hold back the message.
	extra []*results.Record
	// rec is the task's own document; nil stores nothing.
	rec     *results.Record
	verdict verdict
	// republish, when set, is published (and confirmed) once rec is durable; then the
	// message is acked, or requeued if the publish failed (a retry).
	republish *republish
}

// republish is a message that replaces the task's own (a retry).
type republish struct {
	exchange, key string
	msg           amqp.Publishing
	when          time.Time // its ETA: a later one may go through native delayed delivery
}

// complete carries a classified outcome to the end of the task's life: store, then
// settle on the worker's completion goroutine (completer.go). If the document never
// becomes durable the message is left unsettled, so the broker gives it to a worker
// again when this connection closes.
func (t *task) complete(c completion) {
	t.advance(stageDone)
	if c.rec == nil {
		t.w.completer.send(completed{t: t, c: c})
		return
	}
	for _, rec := range c.extra {
		err := t.w.results.Write(context.Background(), rec, func(err error) {
			if err != nil {
				t.w.log.Error("result not stored", zap.String("task_id", rec.TaskID), zap.Error(err))
			}
		})
		if err != nil {
			t.w.log.Error("result not stored", zap.String("task_id", rec.TaskID), zap.Error(err))
		}
	}
	err := t.w.results.Write(context.Background(), c.rec, func(err error) {
		t.w.completer.send(completed{t: t, c: c, err: err})
	})
	if err != nil {
		t.w.completer.send(completed{t: t, c: c, err: err})
	}
}

// written is told, on the completion goroutine, whether the task's own document is
// durable.
func (t *task) written(c completion, err error) {
	if errors.Is(err, results.ErrUnstorable) {
		// No form of it will ever be stored: redelivering it would only stop the next
		// worker too (the writer has logged why). Settled as if stored.
		err = nil
	}
	if err != nil {
		t.w.log.Error("result not stored; message left for redelivery",
			zap.String("task_id", c.rec.TaskID), zap.Error(err))
		t.end(verdictLeave)
		return
	}
	t.stored(c)
}

// stored ends the task once its documents are durable: a retry is published first.
func (t *task) stored(c completion) {
	t.advance(stageStored)
	if c.republish == nil {
		t.end(c.verdict)
		return
	}
	r := c.republish
	t.w.bg.Add(1)
	go func() {
		defer t.w.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := t.publishRetry(ctx, r.exchange, r.key, r.msg, r.when); err != nil {
			// The retry is not queued: run the task again from the original. A broker
			// fault fails every retry in flight: one line per fault.
			fields := []zap.Field{zap.String("task_id", t.req.ID), zap.Error(err)}
			if ok, held := t.w.retryPublishLog.allow(time.Now()); ok {
				t.w.log.Error("cannot publish the retry; the task goes back to its queue",
					append(fields, zap.Int("more_since_last_line", held))...)
			} else {
				t.w.log.Debug("cannot publish the retry; the task goes back to its queue", fields...)
			}
			t.settleLater(verdictRequeue)
			return
		}
		t.settleLater(verdictAck)
	}()
}

// settleLater ends the task with v on the completion goroutine, like every other end
// that settles a message after the task's work (a retry published, a task parked).
func (t *task) settleLater(v verdict) {
	t.w.completer.send(completed{t: t, c: completion{verdict: v}})
}
