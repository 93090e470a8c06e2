package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/tasks"
)

// The worker answers Celery's remote control through control.Mailbox.
var _ control.Worker = (*Worker)(nil)

// QueueBroker is the part of the consumer that add_consumer and cancel_consumer use.
type QueueBroker interface {
	Queues() []prefetch.Queue
	AddQueue(q prefetch.Queue) error
	CancelQueue(name string) error
}

func (t *task) info() control.TaskInfo {
	t.mu.Lock()
	started := t.started
	t.mu.Unlock()
	pid := 0
	if !started.IsZero() {
		pid = os.Getpid()
	}
	return control.TaskInfo{
		ID: t.req.ID, Name: t.req.Name(), Args: t.req.Args, Kwargs: t.req.Kwargs,
		ArgsRepr: t.req.ArgsRepr, KwargsRepr: t.req.KwargsRepr, Hostname: t.w.cfg.NodeName,
		TimeStart: started, Acknowledged: t.isAcked(), WorkerPID: pid,
		Delivery: control.DeliveryInfo{Exchange: t.d.Exchange, RoutingKey: t.d.RoutingKey,
			Priority: int(t.d.Priority), Redelivered: t.d.Redelivered},
	}
}

// snapshot returns the tasks in flight, oldest first.
func (w *Worker) snapshot() []*task {
	w.mu.Lock()
	out := make([]*task, 0, len(w.inflight))
	for t := range w.inflight {
		out = append(out, t)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b *task) int { return a.received.Compare(b.received) })
	return out
}

// ActiveTasks implements control.Worker: the tasks running now.
func (w *Worker) ActiveTasks() []control.TaskInfo {
	var out []control.TaskInfo
	for _, t := range w.snapshot() {
		if t.phase() == phaseActive {
			out = append(out, t.info())
		}
	}
	return out
}

// ReservedTasks implements control.Worker: received, not started, not waiting for an ETA.
func (w *Worker) ReservedTasks() []control.TaskInfo {
	var out []control.TaskInfo
	for _, t := range w.snapshot() {
		if t.phase() == phaseReserved {
			out = append(out, t.info())
		}
	}
	return out
}

// ScheduledTasks implements control.Worker: tasks held in memory until their ETA.
// (Tasks parked in broker-side delay queues are not in this worker any more.)
func (w *Worker) ScheduledTasks() []control.ScheduledTask {
	var out []control.ScheduledTask
	for _, t := range w.snapshot() {
		if t.phase() == phaseScheduled {
			t.mu.Lock()
			eta := t.eta
			t.mu.Unlock()
			out = append(out, control.ScheduledTask{ETA: eta, Priority: 6, Request: t.info()})
		}
	}
	return out
}

// Registered implements control.Worker.
func (w *Worker) Registered() []control.TaskMeta {
	names := w.reg.Names()
	out := make([]control.TaskMeta, 0, len(names))
	for _, n := range names {
		out = append(out, control.TaskMeta{Name: n, Attrs: w.taskAttrs(n)})
	}
	return out
}

// Queues implements control.Worker.
func (w *Worker) Queues() []control.QueueInfo {
	qb, ok := w.broker.(QueueBroker)
	if !ok {
		return nil
	}
	var out []control.QueueInfo
	for _, q := range qb.Queues() {
		out = append(out, control.QueueFromPrefetch(q))
	}
	return out
}

// Stats implements control.Worker.
func (w *Worker) Stats() control.Stats {
	w.mu.Lock()
	total := make(map[string]int64, len(w.totals))
	for k, v := range w.totals {
		total[k] = v
	}
	started := w.started
	w.mu.Unlock()
	return control.Stats{
		Total:  total,
		Uptime: time.Since(started),
		Pool: control.PoolStats{MaxConcurrency: w.cfg.Concurrency, Processes: []int{os.Getpid()},
			SoftTimeLimit: w.cfg.SoftTimeLimit.Seconds(), HardTimeLimit: w.cfg.TimeLimit.Seconds()},
		Broker:        w.cfg.BrokerStats,
		PrefetchCount: w.cfg.PrefetchCount,
	}
}

// Revoke implements control.Worker: ids join the revoked set; with terminate, those
// running now have their context cancelled and end REVOKED('terminated'). Go cannot
// signal a goroutine, so every signal means the same.
func (w *Worker) Revoke(ids []string, terminate bool, _ string) (terminated []string) {
	w.cfg.Revoked.Add(ids...)
	w.mu.Lock()
	for _, id := range ids {
		if t, ok := w.running[id]; ok && terminate {
			t.terminate()
			terminated = append(terminated, id)
		}
	}
	held := w.heldNotRunning(ids)
	w.mu.Unlock()
	w.storeRevokedAtReceipt(held)
	return terminated
}

// heldNotRunning returns the received tasks among ids that have not started. Call with
// w.mu held.
func (w *Worker) heldNotRunning(ids []string) []*task {
	var held []*task
	for t := range w.inflight {
		if _, running := w.running[t.req.ID]; !running && slices.Contains(ids, t.req.ID) {
			held = append(held, t)
		}
	}
	return held
}

// storeRevokedAtReceipt stores REVOKED for held tasks as soon as the revoke arrives, as
// Celery 5.6.2+ does, instead of only when the task comes due (an ETA task may wait
// hours). The message is settled later, when the task is discarded; that stores the
// same state again. The mailbox must not wait: a full results queue skips this.
func (w *Worker) storeRevokedAtReceipt(held []*task) {
	for _, t := range held {
		if w.results == nil || !t.storesErrors() {
			continue
		}
		exc := &tasks.Exception{Module: "celery.exceptions", Type: "TaskRevokedError", Args: []any{"revoked"}}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := w.results.Write(ctx, t.exceptionRecord(results.StatusRevoked, exc, ""), func(error) {})
		cancel()
		if err != nil {
			w.log.Debug("REVOKED not stored at receipt; it will be when the task comes due",
				zap.String("task_id", t.req.ID), zap.Error(err))
		}
	}
}

// AddConsumer implements control.Worker.
func (w *Worker) AddConsumer(a control.AddConsumer) error {
	qb, ok := w.broker.(QueueBroker)
	if !ok {
		return errors.New("this broker cannot add queues")
	}
	q := prefetch.Queue{Name: a.Queue, Exchange: a.Exchange, ExchangeType: a.ExchangeType,
		RoutingKey: a.RoutingKey, Durable: true}
	if q.Exchange == "" {
		q.Exchange = a.Queue
	}
	if q.RoutingKey == "" {
		q.RoutingKey = a.Queue
	}
	return qb.AddQueue(q)
}

// CancelConsumer implements control.Worker.
func (w *Worker) CancelConsumer(queue string) error {
	qb, ok := w.broker.(QueueBroker)
	if !ok {
		return errors.New("this broker cannot cancel queues")
	}
	return qb.CancelQueue(queue)
}

// SetTimeLimit implements control.Worker (seconds; 0 = none).
func (w *Worker) SetTimeLimit(task string, soft, hard float64) error {
	if _, ok := w.reg.Lookup(task); !ok {
		return fmt.Errorf("%w: %s", control.ErrUnknownTask, task)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limits[task] = Limits{Hard: seconds(hard), Soft: seconds(soft)}
	return nil
}

// SetRateLimit implements control.Worker ("" = none, "10/s", "5/m", ...).
func (w *Worker) SetRateLimit(task, rate string) error {
	if _, ok := w.reg.Lookup(task); !ok {
		return fmt.Errorf("%w: %s", control.ErrUnknownTask, task)
	}
	r, err := config.ParseRate(rate)
	if err != nil {
		return err
	}
	w.rates.set(task, r)
	return nil
}

// Shutdown implements control.Worker: a warm shutdown, as SIGTERM does.
func (w *Worker) Shutdown(reason string) {
	w.log.Warn("remote shutdown: " + reason)
	w.life.askToStop()
}

// Conf implements control.Worker.
func (w *Worker) Conf() map[string]any {
	if w.cfg.Conf == nil {
		return map[string]any{}
	}
	return w.cfg.Conf
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
