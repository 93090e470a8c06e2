package testharness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Logged is a long-running process under load (a ccworker in the fault tests): its
// stdout and stderr go to a log file, and every stderr line also to the test's callback
// and to Output. It dies with the test binary (Pdeathsig); the test's own watchdog, if
// any, finds it by its pid file.
type Logged struct {
	Cmd     *exec.Cmd
	LogPath string
	out     Buffer
	done    chan struct{} // closed when the process has exited and its output is read
	err     error         // cmd.Wait's error, valid after done
}

// LogOptions says where a Logged process writes.
type LogOptions struct {
	LogPath string // stdout and stderr, created (truncated)
	// PidDir, if set, holds a file named for the pid, with PidNote in it, while the
	// process runs (a cleanup script kills what a killed test left there).
	PidDir, PidNote string
	OnLine          func(line []byte) // each stderr line, on the reading goroutine
}

// StartLogged starts cmd; the caller stops it (Signal, Kill) and waits (Wait, Done).
func StartLogged(cmd *exec.Cmd, o LogOptions) (*Logged, error) {
	p := &Logged{Cmd: cmd, LogPath: o.LogPath, done: make(chan struct{})}
	f, err := os.Create(o.LogPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	var pidFile string
	if o.PidDir != "" {
		pidFile = filepath.Join(o.PidDir, strconv.Itoa(cmd.Process.Pid))
		_ = os.WriteFile(pidFile, []byte(o.PidNote+"\n"), 0o644)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = f.Write(append(line, '\n'))
			_, _ = p.out.Write(append(line, '\n'))
			if o.OnLine != nil {
				o.OnLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-read
		p.err = cmd.Wait()
		if pidFile != "" {
			_ = os.Remove(pidFile)
		}
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// Output is all the process wrote to stderr so far.
func (p *Logged) Output() string { return p.out.String() }

// Done is closed once the process has exited and its output is read.
func (p *Logged) Done() <-chan struct{} { return p.done }

// Err is cmd.Wait's error once Done is closed.
func (p *Logged) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited says whether the process has exited.
func (p *Logged) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait returns the exit code once the process has exited (128 + the signal when one
// ended it, as a shell says), or -1 and false if it is still running at timeout.
func (p *Logged) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return -1, false
	}
	if p.err == nil {
		return 0, true
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), true
		}
		return ee.ExitCode(), true
	}
	return -1, true
}

// Kill kills the process if it still runs and waits until it is gone.
func (p *Logged) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// WaitProgress polls done every interval until it holds, and gives up only when progress
// (a count that grows while work gets done) has not grown for stall: a loaded machine is
// slower but still progresses, a stuck worker does not.
func WaitProgress(stall, interval time.Duration, progress func() int, done func() bool) bool {
	last, lastAt := progress(), time.Now()
	for {
		if done() {
			return true
		}
		if n := progress(); n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > stall {
			return false
		}
		time.Sleep(interval)
	}
}

// LogDir makes a fresh world-readable directory (a private RabbitMQ node may read files
// in it) for the logs of a test binary's run. done(code) removes it unless the run failed
// (code != 0) or keep is set; then it says, with what in front, where the logs are.
func LogDir(what string, keep bool) (dir string, done func(code int), err error) {
	if dir, err = os.MkdirTemp("", "ccworker-"+what+"-"); err != nil {
		return "", nil, err
	}
	_ = os.Chmod(dir, 0o755)
	return dir, func(code int) {
		if code != 0 || keep {
			fmt.Printf("%s: logs kept in %s\n", what, dir)
			return
		}
		_ = os.RemoveAll(dir)
	}, nil
}
