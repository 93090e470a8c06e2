// Package command runs external programs as tasks: a task name is bound to an argv
// template that the call's arguments fill in, and each call runs the program once, in a
// process group of its own, with the worker's time limits and revokes applied to the
// whole group.
//
// # Arguments
//
// Each argv element is a template with Python str.format braces: {0}, {1}, ... are the
// positional arguments, {name} the keyword argument name, {args_json} and {kwargs_json}
// the arguments as JSON; {{ and }} are literal braces. A placeholder is replaced inside
// its element (a value with spaces stays one argument); values are written as Python's
// str() writes them: strings as they are, 3, 2.5, 1e+16, True, None, ['a', 1]. A
// placeholder the call does not supply fails the task with TypeError. Arguments that no
// placeholder names are ignored.
//
// With Input "stdin" the argv is used literally (no placeholders) and the program
// reads {"args": [...], "kwargs": {...}, "id": "...", "task": "...", "retries": 0,
// "headers": {...}, "properties": {...}} as one line of JSON on its standard input:
// headers are every header of the message (custom ones such as cyberCommons'
// authenticated_user included), properties the AMQP properties as Celery's
// self.request.properties has them. "both" fills the template and writes the JSON.
// Otherwise standard input is /dev/null.
//
// With Shell the argv is a single template run as /bin/sh -c TEMPLATE, and each
// substituted value is quoted as Python's shlex.quote does (so do not put placeholders
// inside quotes). No shell is involved otherwise.
//
// # Environment
//
// The program sees only the worker's variables whose names match EnvAllow (shell
// patterns such as "SLURM_*"; nil means DefaultEnvAllow), then Env, then
// CCWORKER_TASK_ID and CCWORKER_TASK_NAME. A program name without a slash is looked
// up in that environment's PATH, as Python's subprocess does.
//
// # Results
//
// Exit status 0: the result is standard output parsed as JSON when it is one JSON
// value (surrounding white space ignored), else {"returncode": 0, "stdout": ...,
// "stderr": ...}. Standard output keeps its first MaxOutput bytes, standard error its
// last MaxOutput bytes; truncated output is never parsed as JSON.
//
// Another exit status fails the task with subprocess.CalledProcessError(returncode,
// argv, stdout, stderr), as subprocess.run(check=True, capture_output=True, text=True)
// would raise it (returncode is -N for a program killed by signal N); the result's
// traceback is the tail of standard error followed by the exception line. A program
// that cannot be started fails with FileNotFoundError, PermissionError or OSError.
//
// # Stopping
//
// The handler's context decides. Cancelled with cause pool.ErrSoftTimeLimitExceeded
// (the soft time limit), the group gets SIGTERM; a program that then exits 0 succeeds
// (like a Python task that catches SoftTimeLimitExceeded), otherwise the task fails with
// an error wrapping pool.ErrSoftTimeLimitExceeded. A group still running KillAfter after
// the SIGTERM gets SIGKILL: the context cannot tell the handler about a hard limit or a
// revoke that comes after the soft limit, so KillAfter bounds the clean-up instead (when
// the message carries both limits, hard - soft is used if shorter). Any other
// cancellation (the hard time limit, revoke(terminate=True), a cold shutdown) sends
// SIGKILL at once, and the handler returns an error wrapping the context's cause.
//
// When the group leader has exited, the rest of its process group is killed with
// SIGKILL, so no background process outlives its task. A process that leaves the group
// (setsid, setpgid) escapes this; its hold on the output pipes is dropped after a short
// wait.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/ccworker/ccworker/pool"
	"github.com/ccworker/ccworker/protocol"
	"github.com/ccworker/ccworker/tasks"
)

// Input says how the call's arguments reach the program.
type Input string

// The ways arguments reach the program.
const (
	InputArgv  Input = "argv"  // through the argv template only
	InputStdin Input = "stdin" // as JSON on standard input only; the argv is literal
	InputBoth  Input = "both"  // both
)

// Defaults of the Spec fields.
const (
	DefaultMaxOutput = 1 << 20
	DefaultKillAfter = 10 * time.Second
	// ShellPath runs Shell specs: ShellPath -c TEMPLATE.
	ShellPath = "/bin/sh"
)

// ioWait is how long the output pipes are read after the process group is gone: only a
// process that left the group can still hold them.
const ioWait = 2 * time.Second

// ErrSpec is wrapped by every error New returns for an unusable Spec.
var ErrSpec = errors.New("command: invalid spec")

// DefaultEnvAllow returns the variables a program inherits when Spec.EnvAllow is nil.
func DefaultEnvAllow() []string {
	return []string{"PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR", "USER", "LOGNAME"}
}

// Spec describes a command task.
type Spec struct {
	// Name is the task name, used in messages and CCWORKER_TASK_NAME's default.
	Name string
	// Argv is the program and its arguments as templates; with Shell, it holds one
	// element, the script for /bin/sh -c.
	Argv  []string
	Shell bool
	// Dir is the working directory ("" = the worker's).
	Dir string
	// Env is added to the inherited variables (and wins over them).
	Env map[string]string
	// EnvAllow lists the names (or shell patterns) of the worker's variables the program
	// inherits; nil means DefaultEnvAllow(), an empty slice nothing.
	EnvAllow []string
	// Input is how the arguments arrive ("" = InputArgv).
	Input Input
	// MaxOutput caps what is kept of standard output and of standard error, in bytes
	// (0 = DefaultMaxOutput).
	MaxOutput int
	// KillAfter is how long a program may run after the SIGTERM of the soft time limit
	// before its group gets SIGKILL (0 = DefaultKillAfter).
	KillAfter time.Duration
}

// Options are the handler's surroundings.
type Options struct {
	// Environ is the worker's environment the allow-list picks from, as KEY=VALUE
	// strings; nil means os.Environ() when New is called.
	Environ []string
	// Log receives a line when a group is signalled; nil logs nothing.
	Log *zap.Logger
}

// runner is a compiled Spec.
type runner struct {
	name      string
	argv      []template // nil in InputStdin mode
	literal   []string   // the argv as configured
	shell     bool
	dir       string
	env       []string // inherited + Env, KEY=VALUE, sorted
	input     Input
	maxOutput int
	killAfter time.Duration
	log       *zap.Logger
}

// New checks spec and returns the handler that runs it.
func New(spec Spec, opts Options) (tasks.Handler, error) {
	if !supported {
		return nil, fmt.Errorf("%w: command tasks need a Unix system", ErrSpec)
	}
	r := &runner{name: spec.Name, literal: slices.Clone(spec.Argv), shell: spec.Shell, dir: spec.Dir,
		input: spec.Input, maxOutput: spec.MaxOutput, killAfter: spec.KillAfter, log: opts.Log}
	if r.name == "" {
		return nil, fmt.Errorf("%w: no task name", ErrSpec)
	}
	switch {
	case len(spec.Argv) == 0:
		return nil, fmt.Errorf("%w: empty argv", ErrSpec)
	case spec.Shell && len(spec.Argv) != 1:
		return nil, fmt.Errorf("%w: with shell, argv must be a single script, got %d elements", ErrSpec, len(spec.Argv))
	case spec.Argv[0] == "":
		return nil, fmt.Errorf("%w: empty program name", ErrSpec)
	}
	switch r.input {
	case "":
		r.input = InputArgv
	case InputArgv, InputStdin, InputBoth:
	default:
		return nil, fmt.Errorf("%w: input %q: want %q, %q or %q", ErrSpec, r.input, InputArgv, InputStdin, InputBoth)
	}
	if r.input != InputStdin {
		for i, a := range spec.Argv {
			t, err := parseTemplate(a)
			if err != nil {
				return nil, fmt.Errorf("argv[%d]: %w", i, err)
			}
			r.argv = append(r.argv, t)
		}
	}
	switch {
	case r.maxOutput == 0:
		r.maxOutput = DefaultMaxOutput
	case r.maxOutput < 0:
		return nil, fmt.Errorf("%w: max_output %d is negative", ErrSpec, r.maxOutput)
	}
	switch {
	case r.killAfter == 0:
		r.killAfter = DefaultKillAfter
	case r.killAfter < 0:
		return nil, fmt.Errorf("%w: kill_after %v is negative", ErrSpec, r.killAfter)
	}
	allow := spec.EnvAllow
	if allow == nil {
		allow = DefaultEnvAllow()
	}
	for _, p := range allow {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("%w: env_allow pattern %q: %w", ErrSpec, p, err)
		}
	}
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" && allowed(k, allow) {
			env[k] = v
		}
	}
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: env %q: not a valid variable", ErrSpec, k)
		}
		env[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		r.env = append(r.env, k+"="+env[k])
	}
	return r.handle, nil
}

func allowed(name string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// handle is the tasks.Handler.
func (r *runner) handle(ctx context.Context, c *tasks.Call) (any, error) {
	argv, err := r.command(c)
	if err != nil {
		return nil, err
	}
	var stdin []byte
	if r.input != InputArgv {
		if stdin, err = r.stdinJSON(c); err != nil {
			return nil, err
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("command %s not started: %w", r.name, context.Cause(ctx))
	}
	env := r.taskEnv(c)
	prog, err := lookPath(argv[0], env)
	if err != nil {
		return nil, err
	}
	if r.dir != "" {
		// Python names the directory when chdir fails; Go's error names the program.
		if fi, err := os.Stat(r.dir); err != nil {
			return nil, startError(err, r.dir)
		} else if !fi.IsDir() {
			return nil, osError(syscall.ENOTDIR, r.dir)
		}
	}
	p, err := start(prog, argv, r.dir, env, stdin, r.maxOutput)
	if err != nil {
		return nil, startError(err, argv[0])
	}
	st := p.wait(ctx, r.graceFor(c), r.logger(c, p.cmd.Process.Pid))
	return r.outcome(ctx, argv, p, st)
}

// command fills the argv templates.
func (r *runner) command(c *tasks.Call) ([]string, error) {
	if r.argv == nil {
		if r.shell {
			return []string{ShellPath, "-c", r.literal[0]}, nil
		}
		return slices.Clone(r.literal), nil
	}
	quote := identity
	if r.shell {
		quote = shellQuote
	}
	out := make([]string, 0, len(r.argv)+2)
	for _, t := range r.argv {
		s, err := t.render(r.name, c, quote)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if r.shell {
		return []string{ShellPath, "-c", out[0]}, nil
	}
	if out[0] == "" {
		return nil, tasks.Errorf("ValueError", "%s(): the program name is empty", r.name)
	}
	return out, nil
}

func (r *runner) stdinJSON(c *tasks.Call) ([]byte, error) {
	m := map[string]any{"args": argsOf(c), "kwargs": kwargsOf(c), "id": "", "task": r.name, "retries": int64(0)}
	if req := c.Request; req != nil {
		m["id"], m["retries"] = req.ID, int64(req.Retries)
		if req.Task != "" {
			m["task"] = req.Task
		}
		// Every header and property, as a Celery task sees them in self.request.
		m["headers"], m["properties"] = req.MessageHeaders(), req.PropertyMap()
	}
	b, err := protocol.AppendJSON(nil, m)
	if err != nil {
		return nil, tasks.Errorf("TypeError", "arguments are not JSON serializable: %v", err)
	}
	return append(b, '\n'), nil
}

func (r *runner) taskEnv(c *tasks.Call) []string {
	id, name := "", r.name
	if req := c.Request; req != nil {
		id = req.ID
		if req.Task != "" {
			name = req.Task
		}
	}
	env := make([]string, 0, len(r.env)+2)
	for _, kv := range r.env {
		if !strings.HasPrefix(kv, "CCWORKER_TASK_ID=") && !strings.HasPrefix(kv, "CCWORKER_TASK_NAME=") {
			env = append(env, kv)
		}
	}
	return append(env, "CCWORKER_TASK_ID="+id, "CCWORKER_TASK_NAME="+name)
}

// graceFor is how long the program may run after the soft limit's SIGTERM.
func (r *runner) graceFor(c *tasks.Call) time.Duration {
	g := r.killAfter
	if req := c.Request; req != nil && req.TimeLimit > req.SoftTimeLimit && req.SoftTimeLimit > 0 {
		g = min(g, req.TimeLimit-req.SoftTimeLimit)
	}
	return g
}

func (r *runner) logger(c *tasks.Call, pid int) *zap.Logger {
	if r.log == nil {
		return nil
	}
	l := r.log.With(zap.String("task", r.name), zap.Int("pgid", pid))
	if c.Request != nil {
		l = l.With(zap.String("task_id", c.Request.ID))
	}
	return l
}

// outcome turns how the process ended into the task's result or error.
func (r *runner) outcome(ctx context.Context, argv []string, p *process, st status) (any, error) {
	rc := st.returncode
	switch {
	case st.killed:
		return nil, fmt.Errorf("command %s killed (%s): %w", r.name, describe(rc), context.Cause(ctx))
	case st.soft && rc != 0:
		how := "stopped by SIGTERM"
		if st.escalated {
			how = fmt.Sprintf("still running %v after SIGTERM; killed", st.grace)
		}
		msg := fmt.Sprintf("command %s %s (%s)", r.name, how, describe(rc))
		if tail := lastLine(p.stderr.text()); tail != "" {
			msg += "; stderr: " + tail
		}
		return nil, fmt.Errorf("%s: %w", msg, pool.ErrSoftTimeLimitExceeded)
	case rc != 0:
		return nil, calledProcessError(rc, argv, p.stdout.text(), p.stderr.text())
	}
	if !p.stdout.truncated() {
		if v, ok := parseJSON(p.stdout.bytes()); ok {
			return v, nil
		}
	}
	return map[string]any{"returncode": int64(0), "stdout": p.stdout.text(), "stderr": p.stderr.text()}, nil
}

// calledProcessError is subprocess.CalledProcessError(returncode, cmd, output, stderr).
func calledProcessError(rc int, argv []string, stdout, stderr string) *tasks.Exception {
	cmd := make([]any, len(argv))
	for i, a := range argv {
		cmd[i] = a
	}
	msg := fmt.Sprintf("Command '%s' returned non-zero exit status %d.", protocol.Repr(cmd), rc)
	if rc < 0 {
		msg = fmt.Sprintf("Command '%s' died with %s.", protocol.Repr(cmd), signalRepr(-rc))
	}
	tb := stderr
	if tb != "" && !strings.HasSuffix(tb, "\n") {
		tb += "\n"
	}
	return &tasks.Exception{Module: "subprocess", Type: "CalledProcessError",
		Args:      []any{int64(rc), cmd, stdout, stderr},
		Traceback: tb + "subprocess.CalledProcessError: " + msg + "\n"}
}

// describe says how a process ended, for messages.
func describe(rc int) string {
	if rc < 0 {
		return "killed by " + signalName(-rc)
	}
	return "exit status " + strconv.Itoa(rc)
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = "..." + s[len(s)-200:]
	}
	return s
}

// parseJSON decodes b when it is exactly one JSON value, into ccworker's value model
// (int64, *big.Int, float64 ...).
func parseJSON(b []byte) (any, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || !json.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return fromJSON(v), true
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n
			}
			if n, ok := new(big.Int).SetString(s, 10); ok {
				return n
			}
		}
		f, _ := strconv.ParseFloat(s, 64) // out of range gives ±Inf, as Python's json does
		return f
	case []any:
		for i, e := range x {
			x[i] = fromJSON(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = fromJSON(e)
		}
	}
	return v
}

// lookPath finds a program name without a slash in env's PATH (Python's os.defpath
// when unset), as subprocess does with an env argument.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	dirs := "/bin:/usr/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			dirs = v
		}
	}
	denied := false
	for _, dir := range filepath.SplitList(dirs) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode()&0o111 == 0 {
			denied = true
			continue
		}
		return p, nil
	}
	if denied {
		return "", osError(syscall.EACCES, name)
	}
	return "", osError(syscall.ENOENT, name)
}

// startError is the Python exception for a program that could not be started.
func startError(err error, name string) error {
	filename := name
	var pe *fs.PathError
	if errors.As(err, &pe) {
		filename = pe.Path
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return osError(errno, filename)
	}
	return fmt.Errorf("command %s: %w", name, err)
}

// osError is OSError(errno, strerror, filename) with Python's subclass for errno.
func osError(errno syscall.Errno, filename string) *tasks.Exception {
	typ := "OSError"
	switch errno {
	case syscall.ENOENT:
		typ = "FileNotFoundError"
	case syscall.EACCES, syscall.EPERM:
		typ = "PermissionError"
	case syscall.ENOTDIR:
		typ = "NotADirectoryError"
	case syscall.EISDIR:
		typ = "IsADirectoryError"
	}
	msg := errno.Error()
	if msg != "" {
		r, n := utf8.DecodeRuneInString(msg)
		msg = strings.ToUpper(string(r)) + msg[n:]
	}
	return tasks.NewException("builtins", typ, int64(errno), msg, filename)
}

// ---------------------------------------------------------------- the process

// process is a started program with its output being collected.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *capture
	outR, errR     *os.File
	inW            *os.File // nil without stdin data
	readers        sync.WaitGroup
	writer         sync.WaitGroup
}

// status is how a process ended.
type status struct {
	returncode int  // Python's: -N for a signal
	soft       bool // the soft limit's SIGTERM was sent
	escalated  bool // ... and SIGKILL followed after grace
	grace      time.Duration
	killed     bool // SIGKILL for a hard cancellation
}

// start runs the program in a new process group with pipes for its output (and input).
func start(prog string, argv []string, dir string, env []string, stdin []byte, limit int) (*process, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return nil, err
	}
	var inR, inW *os.File
	if stdin != nil {
		if inR, inW, err = os.Pipe(); err != nil {
			closeAll(outR, outW, errR, errW)
			return nil, err
		}
	}
	p := &process{
		cmd: &exec.Cmd{Path: prog, Args: argv, Dir: dir, Env: env, Stdout: outW, Stderr: errW,
			SysProcAttr: sysProcAttr()},
		stdout: &capture{limit: limit}, stderr: &capture{limit: limit, tail: true},
		outR: outR, errR: errR, inW: inW,
	}
	if inR != nil {
		p.cmd.Stdin = inR // an *os.File is handed to the child as is: no copying goroutine
	}
	err = p.cmd.Start()
	closeAll(outW, errW, inR) // the child has its copies
	if err != nil {
		closeAll(outR, errR, inW)
		return nil, err
	}
	p.readers.Add(2)
	go p.read(outR, p.stdout)
	go p.read(errR, p.stderr)
	if inW != nil {
		p.writer.Add(1)
		go func() {
			defer p.writer.Done()
			_, _ = inW.Write(stdin) // EPIPE if the program does not read it all: fine
			_ = inW.Close()
		}()
	}
	return p, nil
}

func (p *process) read(f *os.File, c *capture) {
	defer p.readers.Done()
	_, _ = io.Copy(c, f)
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
}

// wait waits for the group leader while applying ctx, kills what is left of its group,
// reaps it and collects the output.
func (p *process) wait(ctx context.Context, grace time.Duration, log *zap.Logger) status {
	pid := p.cmd.Process.Pid
	st := status{grace: grace}
	done := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		if errors.Is(context.Cause(ctx), pool.ErrSoftTimeLimitExceeded) {
			st.soft = true
			logSignal(log, "soft time limit: SIGTERM to the process group", signalGroup(pid, syscall.SIGTERM))
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-done:
				return
			case <-t.C:
			}
			st.escalated = true
			logSignal(log, "still running after SIGTERM: SIGKILL to the process group", signalGroup(pid, syscall.SIGKILL))
			return
		}
		st.killed = true
		logSignal(log, "task cancelled: SIGKILL to the process group", signalGroup(pid, syscall.SIGKILL))
	}()

	// Wait for the leader without reaping it, so that its pid (the group's id) cannot be
	// reused while the group is signalled; where that is not possible, reap first.
	var werr error
	reaped := false
	if waitExited(pid) != nil {
		werr, reaped = p.cmd.Wait(), true
	}
	close(done)
	watcher.Wait()
	_ = signalGroup(pid, syscall.SIGKILL) // whatever the leader left behind
	if !reaped {
		werr = p.cmd.Wait()
	}
	st.returncode = returnCode(p.cmd.ProcessState, werr)

	// The group is gone, so the pipes close unless a process that left the group
	// holds them: do not wait for that one.
	read := make(chan struct{})
	go func() { p.readers.Wait(); close(read) }()
	t := time.NewTimer(ioWait)
	select {
	case <-read:
	case <-t.C:
		closeAll(p.outR, p.errR) // unblocks the readers
		<-read
	}
	t.Stop()
	closeAll(p.outR, p.errR, p.inW) // closing inW unblocks a writer the program never read
	p.writer.Wait()
	return st
}

func logSignal(log *zap.Logger, msg string, err error) {
	if log == nil {
		return
	}
	if err != nil {
		log.Info(msg, zap.Error(err))
		return
	}
	log.Info(msg)
}

// ---------------------------------------------------------------- capped output

// capture keeps the first (or, with tail, the last) limit bytes written to it.
type capture struct {
	limit int
	tail  bool
	buf   []byte
	total int64
}

func (c *capture) Write(b []byte) (int, error) {
	c.total += int64(len(b))
	if !c.tail {
		if room := c.limit - len(c.buf); room > 0 {
			c.buf = append(c.buf, b[:min(room, len(b))]...)
		}
		return len(b), nil
	}
	c.buf = append(c.buf, b...)
	if len(c.buf) > 2*c.limit {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-c.limit:]...)
	}
	return len(b), nil
}

func (c *capture) bytes() []byte {
	if len(c.buf) > c.limit {
		return c.buf[len(c.buf)-c.limit:]
	}
	return c.buf
}

func (c *capture) truncated() bool { return c.total > int64(len(c.bytes())) }

// text is the kept bytes as valid UTF-8: a character cut by the cap is dropped, invalid
// bytes become U+FFFD (Python's errors='replace').
func (c *capture) text() string {
	b := c.bytes()
	if c.truncated() {
		if c.tail {
			for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
				b = b[1:]
			}
		} else if r, _ := utf8.DecodeLastRune(b); r == utf8.RuneError {
			for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
				last := len(b) - 1
				start := b[last]
				b = b[:last]
				if utf8.RuneStart(start) {
					break
				}
			}
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
