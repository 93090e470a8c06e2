package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// lifecycle is the worker's Start/Stop state.
type lifecycle struct {
	startOnce, stopOnce sync.Once
	stopErr             error
	started             bool          // Start ran (under Worker.mu)
	stopping            chan struct{} // closed when Stop begins: the watchers end
	ended               chan struct{} // closed when Stop returns: the ack guard ends
	asked               chan struct{} // closed when the worker asks to stop (Done)
	askOnce             sync.Once
	watchers            sync.WaitGroup
}

func newLifecycle() lifecycle {
	return lifecycle{stopping: make(chan struct{}), ended: make(chan struct{}), asked: make(chan struct{})}
}

// askToStop tells the owner the worker wants to stop (--max-idle, --max-tasks, a remote
// shutdown): Done is closed.
func (l *lifecycle) askToStop() { l.askOnce.Do(func() { close(l.asked) }) }

// Start starts the worker's own goroutines: the completer, and the ack guard and idle
// watcher when configured. Deliveries go to Handle; the broker's owner starts it.
// ctx only bounds starting, which does not wait for anything.
func (w *Worker) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.life.startOnce.Do(func() {
		w.mu.Lock()
		w.started, w.life.started = time.Now(), true
		w.mu.Unlock()
		w.lastSeen.Store(time.Now().UnixNano())
		w.completer.start()
		if w.cfg.AckGuard > 0 {
			w.life.watchers.Add(1)
			go func() {
				defer w.life.watchers.Done()
				w.guardAcks(w.life.ended)
			}()
		}
		if w.cfg.MaxIdle > 0 {
			w.life.watchers.Add(1)
			go func() {
				defer w.life.watchers.Done()
				w.watchIdle(w.life.stopping)
			}()
		}
	})
	return nil
}

// Done is closed when the worker asks to stop by itself: --max-idle, --max-tasks, or a
// remote shutdown command. Its owner then calls Stop.
func (w *Worker) Done() <-chan struct{} { return w.life.asked }

// Stop is the warm shutdown: it stops consuming, lets running tasks finish (at most
// DrainTimeout, or until ctx ends: a cold shutdown), and waits until every task taken
// has ended: stored and acked, or left for redelivery. The result writer and the
// broker must still run: their owner stops them after. A second call returns at once;
// Stop before Start is fine.
func (w *Worker) Stop(ctx context.Context) error {
	w.life.stopOnce.Do(func() { w.life.stopErr = w.stop(ctx) })
	return w.life.stopErr
}

func (w *Worker) stop(ctx context.Context) error {
	close(w.life.stopping)
	defer w.life.watchers.Wait()
	defer close(w.life.ended)
	w.mu.Lock()
	started := w.life.started
	w.mu.Unlock()
	if started {
		w.log.Info("warm shutdown: no new tasks; waiting for running ones", zap.Duration("timeout", w.cfg.DrainTimeout))
	}
	w.broker.StopConsuming()
	w.etaWait.Wait()
	drain, cancel := context.WithTimeout(ctx, w.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	if err := w.pool.Stop(drain); err != nil {
		errs = append(errs, fmt.Errorf("running tasks did not finish: %w", err))
	} else if err := w.waitSettled(drain); err != nil {
		errs = append(errs, fmt.Errorf("results not flushed: %w", err))
	}
	w.completer.stop()
	w.bg.Wait() // retries and parked tasks publish before the connection goes
	return errors.Join(errs...)
}

// waitSettled waits until no task is in flight: their documents durable and their
// messages settled, or left for redelivery.
func (w *Worker) waitSettled(ctx context.Context) error {
	w.mu.Lock()
	if len(w.inflight) == 0 {
		w.mu.Unlock()
		return nil
	}
	emptied := make(chan struct{})
	w.emptied = emptied
	w.mu.Unlock()
	select {
	case <-emptied:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run starts the worker, waits until ctx is done or the worker asks to stop (Done), and
// stops it; kill cuts the drain short. Run is for a worker whose broker and result
// writer are run by the caller (tests, simple embeddings); node.Node runs everything.
func (w *Worker) Run(ctx, kill context.Context) error {
	if err := w.Start(ctx); err != nil {
		return nil // told to stop before starting: nothing was taken
	}
	select {
	case <-ctx.Done():
	case <-w.Done():
	}
	return w.Stop(kill)
}
