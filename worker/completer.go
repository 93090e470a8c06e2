package worker

import "sync"

// completer owns the goroutine that ends finished tasks. The result writer reports a
// document durable (or lost) from its own loop; the report is handed over here, so the
// worker's bookkeeping and the AMQP acks run on a goroutine the worker owns, and the
// writer only writes.
type completer struct {
	in        chan completed
	done      chan struct{}
	startOnce sync.Once

	mu      sync.RWMutex // held for reading while sending; stop takes it to close in
	stopped bool
}

// completed is a task whose outcome has been classified, with the fate of its document.
type completed struct {
	t   *task
	c   completion
	err error // the document could not be stored
}

func newCompleter() *completer {
	return &completer{in: make(chan completed, 256), done: make(chan struct{})}
}

// start runs the completion goroutine until stop.
func (c *completer) start() {
	c.startOnce.Do(func() {
		go func() {
			defer close(c.done)
			for x := range c.in {
				x.t.written(x.c, x.err)
			}
		}()
	})
}

// send hands a completion to the goroutine. After stop (a task abandoned by a shutdown
// cut short that ends late) it is ended on the caller's goroutine instead.
func (c *completer) send(x completed) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.stopped {
		x.t.written(x.c, x.err)
		return
	}
	c.in <- x
}

// stop ends what was handed over and waits for the goroutine. It must come after the
// result writer has stopped, which answers every write it took. Safe to call twice.
func (c *completer) stop() {
	c.start() // never started: it still has to end what was handed over
	c.mu.Lock()
	if !c.stopped {
		c.stopped = true
		close(c.in)
	}
	c.mu.Unlock()
	<-c.done
}
