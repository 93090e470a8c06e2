package allocate

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Settings are the options of `ccworker allocate`: ccworker_allocate_* in
// celeryconfig.py, with the command-line flags over them.
type Settings struct {
	Name          string        // job name and tag; "" = ccworker-alloc-<queues>
	Mode          string        // "array" (one worker per array element) or "nodes" (WorkersPerJob nodes per job)
	Script        string        // batch script path; "" = the built-in one of Mode
	ScriptArgs    []string      // more script options (after the allocator's own --bin, --config, -Q, --max-idle)
	Bin           string        // ccworker binary the jobs run; "" = this executable
	WorkerMaxIdle time.Duration // the workers' --max-idle: they leave, and free the node, after this without a task
	Partition     string
	Account       string
	TimeLimit     string // sbatch --time (minutes, or [D-]HH:MM:SS)
	SbatchArgs    []string
	Poll          time.Duration
	Limits        Limits
}

// DefaultSettings are the defaults the documentation lists.
func DefaultSettings() Settings {
	return Settings{
		Mode: "array", WorkerMaxIdle: 60 * time.Second, Poll: 10 * time.Second,
		Limits: Limits{MaxJobs: 4, WorkersPerJob: 1, BacklogPerWorker: 100, MinInterval: 30 * time.Second,
			FailLimit: 3, ProbeInterval: 2 * time.Minute},
	}
}

// KeyPrefix starts every celeryconfig.py setting of the allocator.
const KeyPrefix = "ccworker_allocate_"

// FlagName is the command-line flag of a ccworker_allocate_* key.
func FlagName(key string) string {
	name := strings.ReplaceAll(strings.TrimPrefix(key, KeyPrefix), "_", "-")
	if name == "sbatch-args" {
		return "sbatch-arg"
	}
	return name
}

// Keys lists the settings Apply reads, sorted.
func Keys() []string {
	var ks []string
	for k := range (&Settings{}).setters() {
		ks = append(ks, KeyPrefix+k)
	}
	slices.Sort(ks)
	return ks
}

type setter func(v any) error

func (s *Settings) setters() map[string]setter {
	return map[string]setter{
		"name":               str(&s.Name),
		"mode":               str(&s.Mode),
		"script":             str(&s.Script),
		"script_args":        strs(&s.ScriptArgs),
		"bin":                str(&s.Bin),
		"worker_max_idle":    seconds(&s.WorkerMaxIdle),
		"partition":          str(&s.Partition),
		"account":            str(&s.Account),
		"time_limit":         timeLimit(&s.TimeLimit),
		"sbatch_args":        strs(&s.SbatchArgs),
		"poll_interval":      seconds(&s.Poll),
		"max_jobs":           integer(&s.Limits.MaxJobs),
		"max_workers":        integer(&s.Limits.MaxWorkers),
		"workers_per_job":    integer(&s.Limits.WorkersPerJob),
		"backlog_per_worker": integer(&s.Limits.BacklogPerWorker),
		"max_pending":        integer(&s.Limits.MaxPending),
		"pending_reserve":    integer(&s.Limits.PendingReserve),
		"min_interval":       seconds(&s.Limits.MinInterval),
		"fail_limit":         integer(&s.Limits.FailLimit),
		"probe_interval":     seconds(&s.Limits.ProbeInterval),
	}
}

// Apply sets what values (celeryconfig.py's ccworker_allocate_* names as config.Config.Allocate holds them)
// say, except the keys skip names (their flags were given). An unknown
// ccworker_allocate_* key is an error: a typo must not go unnoticed.
func (s *Settings) Apply(values map[string]any, skip func(key string) bool) error {
	set := s.setters()
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range values {
			if !yield(k) {
				return
			}
		}
	}) {
		name, ok := strings.CutPrefix(key, KeyPrefix)
		if !ok || (skip != nil && skip(key)) {
			continue
		}
		f, known := set[name]
		if !known {
			return fmt.Errorf("%s: not a setting (known: %s)", key, strings.Join(Keys(), ", "))
		}
		if err := f(values[key]); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// Check validates the settings.
func (s *Settings) Check() error {
	switch s.Mode {
	case "array":
		if s.Limits.WorkersPerJob != 1 {
			return fmt.Errorf("workers per job %d: an array element runs one worker (use --mode nodes for more)", s.Limits.WorkersPerJob)
		}
	case "nodes":
	default:
		return fmt.Errorf("mode %q: array or nodes", s.Mode)
	}
	if strings.ContainsAny(s.Name, ", \t\n") {
		return fmt.Errorf("name %q: no commas or spaces (squeue --name takes a list)", s.Name)
	}
	if s.Poll <= 0 {
		return fmt.Errorf("poll interval %v: must be positive", s.Poll)
	}
	if s.WorkerMaxIdle <= 0 {
		return fmt.Errorf("worker max idle %v: must be positive, or the workers never give their nodes back", s.WorkerMaxIdle)
	}
	return s.Limits.Validate()
}

func str(dst *string) setter {
	return func(v any) error {
		switch x := v.(type) {
		case nil:
			*dst = ""
		case string:
			*dst = x
		default:
			return fmt.Errorf("want a string, got %T", v)
		}
		return nil
	}
}

func strs(dst *[]string) setter {
	return func(v any) error {
		switch x := v.(type) {
		case nil:
			*dst = nil
		case string:
			*dst = strings.Fields(x)
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("want a list of strings, got an element of type %T", e)
				}
				out = append(out, s)
			}
			*dst = out
		default:
			return fmt.Errorf("want a list of strings, got %T", v)
		}
		return nil
	}
}

func integer(dst *int) setter {
	return func(v any) error {
		x, ok := v.(int64)
		if !ok || x < 0 || x > math.MaxInt32 {
			return fmt.Errorf("want a non-negative int, got %v", v)
		}
		*dst = int(x)
		return nil
	}
}

func seconds(dst *time.Duration) setter {
	return func(v any) error {
		var f float64
		switch x := v.(type) {
		case int64:
			f = float64(x)
		case float64:
			f = x
		default:
			return fmt.Errorf("want a number of seconds, got %v", v)
		}
		if f < 0 || f > 365*24*3600 || math.IsNaN(f) {
			return fmt.Errorf("%v seconds: out of range", f)
		}
		*dst = time.Duration(f * float64(time.Second))
		return nil
	}
}

// timeLimit takes sbatch's --time: a string as sbatch spells it, or a number of minutes.
func timeLimit(dst *string) setter {
	return func(v any) error {
		if x, ok := v.(int64); ok && x > 0 {
			*dst = fmt.Sprint(x)
			return nil
		}
		return str(dst)(v)
	}
}
