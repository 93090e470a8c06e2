package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// CommandsKey is the setting that binds task names to programs.
const CommandsKey = "ccworker_commands"

// CommandSpec is one entry of ccworker_commands, a task run as a program (see package
// tasks/command for the semantics):
//
//	ccworker_commands = {
//	    'hpc.simulate': {
//	        'argv': ['/usr/bin/simulate', '--steps', '{steps}', '{0}'],  # required
//	        'shell': False,        # True: argv is one string run with /bin/sh -c
//	        'cwd': '/scratch',
//	        'env': {'OMP_NUM_THREADS': '4'},
//	        'env_allow': ['PATH', 'HOME', 'SLURM_*'],
//	        'input': 'argv',       # 'argv', 'stdin' or 'both'
//	        'max_output': 1048576, # bytes kept of stdout and of stderr
//	        'kill_after': 10,      # seconds from the soft limit's SIGTERM to SIGKILL
//	        'doc': 'Run the simulator.',
//	    },
//	}
//
// Unset fields are zero; the command package supplies the defaults.
type CommandSpec struct {
	Argv      []string // with Shell, one element: the script
	Shell     bool
	Cwd       string
	Env       map[string]string
	EnvAllow  []string // nil = not set
	Input     string   // "" = not set
	MaxOutput int
	KillAfter time.Duration
	Doc       string
	// Line is the line of the file that assigned ccworker_commands (0 if unknown), for
	// messages about the entry.
	Line int
}

// commandKeys are the keys a CommandSpec dict may hold.
var commandKeys = []string{"argv", "shell", "cwd", "env", "env_allow", "input", "max_output", "kill_after", "doc"}

// commands reads a ccworker_commands setting.
func (r *reader) commands(key string, dst *map[string]CommandSpec) {
	v, ok := r.get(key)
	if !ok {
		return
	}
	cmds, err := ParseCommands(v)
	if err != nil {
		r.fail(key, err)
		return
	}
	for name, c := range cmds {
		c.Line = r.line[key]
		cmds[name] = c
	}
	*dst = cmds
}

// ParseCommands converts a ccworker_commands value (a dict of task name -> dict, as
// pyliteral.Parse returns it) and checks its types and values; the argv templates are
// checked by the command package. None gives nil.
func ParseCommands(v any) (map[string]CommandSpec, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		out := make(map[string]CommandSpec, len(v))
		for _, name := range slices.Sorted(maps.Keys(v)) {
			if strings.TrimSpace(name) == "" {
				return nil, fmt.Errorf("%w: empty task name", ErrInvalidValue)
			}
			d, ok := v[name].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%q: %w", name, wrongType("a dict", v[name]))
			}
			c, err := parseCommand(d)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", name, err)
			}
			out[name] = c
		}
		return out, nil
	default:
		return nil, wrongType("a dict of task name -> dict", v)
	}
}

func parseCommand(d map[string]any) (CommandSpec, error) {
	var c CommandSpec
	for _, k := range slices.Sorted(maps.Keys(d)) {
		known := false
		for _, ck := range commandKeys {
			known = known || k == ck
		}
		if !known {
			return c, fmt.Errorf("%w: key %q is not supported (%s)", ErrInvalidValue, k, strings.Join(commandKeys, ", "))
		}
	}
	if b, ok := d["shell"]; ok {
		switch b := b.(type) {
		case bool:
			c.Shell = b
		case nil:
		default:
			return c, fmt.Errorf("shell: %w", wrongType("True or False", b))
		}
	}
	for _, step := range []func(map[string]any, *CommandSpec) error{commandArgv, commandStrings, commandEnv, commandLimits} {
		if err := step(d, &c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// commandArgv reads argv, a list of strings or, with shell, one script.
func commandArgv(d map[string]any, c *CommandSpec) error {
	argv, ok := d["argv"]
	if !ok {
		return fmt.Errorf("%w: no 'argv'", ErrInvalidValue)
	}
	switch a := argv.(type) {
	case string:
		if !c.Shell {
			return fmt.Errorf("argv: %w (or set 'shell': True to run the string with /bin/sh -c)", wrongType("a list of strings", a))
		}
		c.Argv = []string{a}
	case []any:
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("argv: %w", wrongType("a list of strings", e))
			}
			c.Argv = append(c.Argv, s)
		}
		if c.Shell && len(c.Argv) != 1 {
			return fmt.Errorf("%w: argv: with 'shell': True, give the script as one string", ErrInvalidValue)
		}
	default:
		return fmt.Errorf("argv: %w", wrongType("a list of strings", argv))
	}
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return fmt.Errorf("%w: argv: no program", ErrInvalidValue)
	}
	return nil
}

// commandStrings reads cwd, doc and input.
func commandStrings(d map[string]any, c *CommandSpec) error {
	if err := setStr(&c.Cwd, d["cwd"]); err != nil {
		return fmt.Errorf("cwd: %w", err)
	}
	if err := setStr(&c.Doc, d["doc"]); err != nil {
		return fmt.Errorf("doc: %w", err)
	}
	if err := setStr(&c.Input, d["input"]); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	switch c.Input {
	case "", "argv", "stdin", "both":
	default:
		return fmt.Errorf("%w: input %q: want 'argv', 'stdin' or 'both'", ErrInvalidValue, c.Input)
	}
	return nil
}

// commandEnv reads env and env_allow.
func commandEnv(d map[string]any, c *CommandSpec) error {
	switch e := d["env"].(type) {
	case nil:
	case map[string]any:
		c.Env = make(map[string]string, len(e))
		for k, v := range e {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("env: %q: %w", k, wrongType("a string", v))
			}
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(s, 0) {
				return fmt.Errorf("%w: env: %q is not a valid variable", ErrInvalidValue, k)
			}
			c.Env[k] = s
		}
	default:
		return fmt.Errorf("env: %w", wrongType("a dict of name -> string", e))
	}
	switch e := d["env_allow"].(type) {
	case nil:
	case []any:
		c.EnvAllow = make([]string, 0, len(e))
		for _, x := range e {
			s, ok := x.(string)
			if !ok {
				return fmt.Errorf("env_allow: %w", wrongType("a list of strings", x))
			}
			c.EnvAllow = append(c.EnvAllow, s)
		}
	default:
		return fmt.Errorf("env_allow: %w", wrongType("a list of strings", e))
	}
	return nil
}

// commandLimits reads max_output and kill_after.
func commandLimits(d map[string]any, c *CommandSpec) error {
	switch n := d["max_output"].(type) {
	case nil:
	case int64:
		if n < 1 || n > math.MaxInt32 {
			return fmt.Errorf("%w: max_output %d is out of range (1 .. 2**31-1 bytes)", ErrInvalidValue, n)
		}
		c.MaxOutput = int(n)
	default:
		return fmt.Errorf("max_output: %w", wrongType("an int (bytes)", n))
	}
	if v := d["kill_after"]; v != nil {
		var secs float64
		switch n := v.(type) {
		case int64:
			secs = float64(n)
		case float64:
			secs = n
		default:
			return fmt.Errorf("kill_after: %w", wrongType("a number of seconds", n))
		}
		if !(secs > 0) || secs > 365*24*3600 {
			return fmt.Errorf("%w: kill_after %v: want a positive number of seconds", ErrInvalidValue, secs)
		}
		c.KillAfter = time.Duration(secs * float64(time.Second))
	}
	return nil
}
