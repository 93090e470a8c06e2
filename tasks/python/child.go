package python

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/pool"
)

// child is one bridge process. It is used by one handler at a time (whoever took it from
// the pool's idle channel); its goroutines belong to the pool's WaitGroup.
type child struct {
	cmd         *exec.Cmd
	pid         int
	reqW        *os.File      // requests, the child's fd 3
	replies     chan []byte   // reply lines, the child's fd 4; closed at EOF
	discard     chan struct{} // closed when the pool is done with the child: the reader stops
	exited      chan struct{} // closed once cmd.Wait has returned
	discardOnce sync.Once
	closeOnce   sync.Once
	streams     [2]*os.File // stdout and stderr read ends, closed by Close if a grandchild holds them

	busy  atomic.Bool // running a task (for tests and diagnostics)
	tasks int         // tasks run, for MaxTasksPerChild (only its current user touches it)
	rss   int64       // ru_maxrss in KiB after the last task

	mu   sync.Mutex
	tail []string // the last lines of stderr, for start-up errors
}

const tailLines = 30

// startChild starts a bridge process and waits for its ready line.
func (p *Pool) startChild(ctx context.Context) (*child, []TaskInfo, error) {
	ps, err := newPipes()
	if err != nil {
		return nil, nil, err
	}
	reqR, reqW, repR, repW, outR, outW, errR, errW := ps[0], ps[1], ps[2], ps[3], ps[4], ps[5], ps[6], ps[7]
	closeAll := func() {
		for _, f := range ps {
			_ = f.Close()
		}
	}

	args := append([]string{"-u", "-c", bridgeSource}, p.cfg.Imports...)
	cmd := exec.Command(p.cfg.Interpreter, args...)
	cmd.Dir = p.cfg.Dir
	cmd.Env = append(append(os.Environ(), p.cfg.Env...), "CCWORKER_PYTHON_LOGLEVEL="+p.cfg.LogLevel)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{reqR, repW} // fd 3 and fd 4
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("python: starting %s: %w", p.cfg.Interpreter, err)
	}
	// The child holds its own copies now.
	for _, f := range []*os.File{reqR, repW, outW, errW} {
		_ = f.Close()
	}
	c := &child{
		cmd: cmd, pid: cmd.Process.Pid, reqW: reqW,
		replies: make(chan []byte), discard: make(chan struct{}), exited: make(chan struct{}),
		streams: [2]*os.File{outR, errR},
	}
	log := p.log.With(zap.Int("pid", c.pid))
	p.wg.Add(4)
	go func() {
		defer p.wg.Done()
		c.forward(outR, log, "stdout")
	}()
	go func() {
		defer p.wg.Done()
		c.forward(errR, log, "stderr")
	}()
	go func() {
		defer p.wg.Done()
		c.readReplies(repR)
	}()
	go func() {
		defer p.wg.Done()
		_ = cmd.Wait()
		close(c.exited)
	}()

	tasks, err := c.ready(ctx, p.cfg.StartTimeout)
	if err != nil {
		c.kill()
		c.close()
		c.discardReplies()
		return nil, nil, err
	}
	log.Debug("python child ready", zap.Int("tasks", len(tasks)))
	return c, tasks, nil
}

// newPipes returns four pipes, read end then write end: requests (the child's fd 3),
// replies (fd 4), stdout and stderr.
func newPipes() ([8]*os.File, error) {
	var files [8]*os.File
	for i := 0; i < len(files); i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range files[:i] {
				_ = f.Close()
			}
			return files, fmt.Errorf("python: %w", err)
		}
		files[i], files[i+1] = r, w
	}
	return files, nil
}

// ready waits for the bridge's first line.
func (c *child) ready(ctx context.Context, timeout time.Duration) ([]TaskInfo, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok := <-c.replies:
		if !ok {
			<-c.exited
			return nil, fmt.Errorf("python: child %d exited (%s) before it was ready: %s",
				c.pid, c.cmd.ProcessState, c.stderrTail())
		}
		var r struct {
			Ready bool       `json:"ready"`
			Error string     `json:"error"`
			Tasks []TaskInfo `json:"tasks"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("python: child %d: bad ready line %q: %w", c.pid, line, err)
		}
		if !r.Ready {
			return nil, fmt.Errorf("python: child %d cannot import the task modules:\n%s", c.pid, strings.TrimSpace(r.Error))
		}
		return r.Tasks, nil
	case <-timer.C:
		return nil, fmt.Errorf("python: child %d not ready within %v: %s", c.pid, timeout, c.stderrTail())
	case <-ctx.Done():
		return nil, fmt.Errorf("python: child %d not ready: %w", c.pid, context.Cause(ctx))
	}
}

// forward copies the child's stdout or stderr to the log, a line at a time. Like Celery's
// redirected stdouts, prints are logged at WARNING; lines the bridge's logging wrote keep
// their level.
func (c *child) forward(r *os.File, log *zap.Logger, stream string) {
	defer func() { _ = r.Close() }()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := stripColor(sc.Text())
		if stream == "stderr" {
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > tailLines {
				c.tail = c.tail[1:]
			}
			c.mu.Unlock()
		}
		switch {
		case strings.Contains(line, ": ERROR/") || strings.Contains(line, ": CRITICAL/"):
			log.Error(line, zap.String("stream", stream))
		case strings.Contains(line, ": INFO/"):
			log.Info(line, zap.String("stream", stream))
		case strings.Contains(line, ": DEBUG/"):
			log.Debug(line, zap.String("stream", stream))
		default:
			log.Warn(line, zap.String("stream", stream))
		}
	}
}

// ansiSGR matches terminal escape sequences (CSI ... final byte), which a task's own
// coloured output (a library's logging, a print) would otherwise carry into log files.
var ansiSGR = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]`)

// stripColor removes terminal escape sequences from a line of a child's output.
func stripColor(line string) string {
	if !strings.Contains(line, "\x1b[") {
		return line
	}
	return ansiSGR.ReplaceAllString(line, "")
}

func (c *child) stderrTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tail) == 0 {
		return "no output"
	}
	return strings.Join(c.tail, "\n")
}

// readReplies passes the reply lines on until EOF or until the pool discards the child.
func (c *child) readReplies(r *os.File) {
	defer close(c.replies)
	defer func() { _ = r.Close() }()
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && err == nil {
			select {
			case c.replies <- line:
			case <-c.discard:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// send writes one request line.
func (c *child) send(line []byte) error {
	_, err := c.reqW.Write(line)
	return err
}

// outcome of one request on a child.
type outcome struct {
	line   []byte // the reply; nil when the child was lost or killed
	lost   bool   // the child died by itself
	err    error  // why there is no reply (interrupted, lost)
	usable bool   // the child can take another task
}

// call sends one request and waits for its reply. At the soft time limit (ctx cancelled
// with pool.ErrSoftTimeLimitExceeded) the child gets SIGUSR1 and the wait goes on, until
// the hard limit when one is known; any other cancellation kills the child.
func (c *child) call(ctx context.Context, line []byte, started time.Time, hard time.Duration) outcome {
	if err := c.send(line); err != nil {
		// The child is gone (EPIPE): find out how.
		return c.lostOutcome()
	}
	done := ctx.Done()
	var hardC <-chan time.Time
	for {
		select {
		case reply, ok := <-c.replies:
			if !ok {
				return c.lostOutcome()
			}
			return outcome{line: reply, usable: true}
		case <-done:
			cause := context.Cause(ctx)
			if errors.Is(cause, pool.ErrSoftTimeLimitExceeded) {
				_ = c.cmd.Process.Signal(syscall.SIGUSR1)
				done = nil
				if hard > 0 {
					t := time.NewTimer(time.Until(started.Add(hard)))
					defer t.Stop()
					hardC = t.C
				}
				continue
			}
			c.kill()
			return outcome{err: fmt.Errorf("python: task interrupted, child %d killed: %w", c.pid, cause)}
		case <-hardC:
			c.kill()
			return outcome{err: fmt.Errorf("python: child %d killed: %w", c.pid, &pool.TimeLimitError{Limit: hard})}
		}
	}
}

// lostOutcome waits (briefly) for a child that closed its reply pipe or stopped reading
// requests and describes how it ended.
func (c *child) lostOutcome() outcome {
	select {
	case <-c.exited:
	case <-time.After(2 * time.Second):
		c.kill() // alive but deaf: it cannot be trusted with another task
	}
	return outcome{lost: true, err: errors.New(humanStatus(c.cmd.ProcessState))}
}

// kill SIGKILLs the child and waits for it to be reaped.
func (c *child) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// stop asks the child to exit (EOF on its requests) and kills it after grace.
func (c *child) stop(grace time.Duration) {
	c.close()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.exited:
	case <-timer.C:
		c.kill()
	}
}

// close closes the requests pipe: the bridge sees EOF and exits after its current task.
func (c *child) close() {
	c.closeOnce.Do(func() { _ = c.reqW.Close() })
}

// discardReplies stops the reply reader even if nobody takes its last line.
func (c *child) discardReplies() {
	c.discardOnce.Do(func() { close(c.discard) })
}

// humanStatus is billiard's human_status: "signal 9 (SIGKILL)" or "exitcode 1".
func humanStatus(ps *os.ProcessState) string {
	if ps == nil {
		return "exitcode None"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		if name, ok := signalNames[sig]; ok {
			return fmt.Sprintf("signal %d (%s)", int(sig), name)
		}
		return fmt.Sprintf("signal %d", int(sig))
	}
	return fmt.Sprintf("exitcode %d", ps.ExitCode())
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2", syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
}
