package allocate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Job is one of our Slurm jobs; an array element counts as one job.
type Job struct {
	ID        string // "123" or "123_4"
	State     string // squeue's %T: PENDING, RUNNING, COMPLETED, ...
	Submitted time.Time
}

// Slurm job states as the allocator counts them.
const (
	classPending = "pending"
	classRunning = "running"
	classEnded   = "ended"
)

// class sorts a Slurm state: a job whose workers may still come counts as pending, one
// whose workers have started as running, and one whose workers are gone as ended.
func class(state string) string {
	switch state {
	case "RUNNING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING", "COMPLETING":
		return classRunning // COMPLETING: the worker is gone but the node is not free yet
	case "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
		"BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED":
		return classEnded
	}
	// PENDING, SUSPENDED, REQUEUED, REQUEUE_HOLD, REQUEUE_FED, RESV_DEL_HOLD, STOPPED and
	// anything newer: it holds a place, so counting it keeps the allocator from
	// submitting more than its limits.
	return classPending
}

// Scheduler is the batch system the allocator submits to.
type Scheduler interface {
	// Jobs lists our jobs, ended ones the scheduler still remembers included.
	Jobs(ctx context.Context) ([]Job, error)
	// Submit submits n jobs and says what was accepted (also when it fails part way).
	Submit(ctx context.Context, n int) (Submitted, error)
	// Command is the command line Submit(n) runs, for --dry-run.
	Command(n int) []string
}

// Submitted is what one Submit call got accepted.
type Submitted struct {
	IDs  []string // job ids sbatch printed (one array id for n elements)
	Jobs int      // jobs (array elements count one each)
}

// Slurm submits the deploy/slurm scripts with sbatch and lists its jobs with squeue,
// finding them by job name and comment.
type Slurm struct {
	Name          string   // job name (--job-name) and, prefixed, the comment; both identify our jobs
	Nodes         bool     // the nodes script (-N WorkersPerJob per job) instead of the array script
	WorkersPerJob int      // nodes per job (Nodes only)
	Script        []byte   // the batch script
	ScriptName    string   // shown in logs: the script's path, or "built-in <name>"
	ScriptArgs    []string // after the script: its options, then "--" and ccworker flags
	Partition     string
	Account       string
	TimeLimit     string   // sbatch --time
	SbatchArgs    []string // more sbatch options
	User          string   // squeue -u (default: the current user)
	Env           []string // added to sbatch's environment (exported to the job)
	// Timeout bounds one sbatch or squeue call (default 2 min), so a hung slurmctld
	// cannot stall the allocator; a timed-out sbatch counts as a failure (if Slurm took
	// the job after all, the next squeue shows it, so it is still counted).
	Timeout time.Duration

	// run runs a command; tests replace it. nil = os/exec.
	run func(ctx context.Context, stdin []byte, env []string, name string, args ...string) ([]byte, error)
}

// Comment is the comment our jobs carry, so a job that happens to share the name is not
// counted as ours.
func (s *Slurm) Comment() string { return "ccworker-allocate:" + s.Name }

func (s *Slurm) exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.run != nil {
		return s.run(ctx, nil, s.Env, name, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.WaitDelay = 5 * time.Second // a child holding the pipes open must not outlive the timeout
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return nil, fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return out.Bytes(), nil
}

// Jobs runs squeue for our jobs (array elements one per line, every state squeue still
// knows).
func (s *Slurm) Jobs(ctx context.Context) ([]Job, error) {
	args := []string{"-h", "-r", "-t", "all", "--name", s.Name, "-o", "%i|%T|%V|%k"}
	if s.User != "" {
		args = append(args, "-u", s.User)
	} else {
		args = append(args, "--me")
	}
	out, err := s.exec(ctx, "squeue", args...)
	if err != nil {
		return nil, err
	}
	return parseSqueue(out, s.Comment()), nil
}

func parseSqueue(out []byte, comment string) []Job {
	var jobs []Job
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.SplitN(strings.TrimSpace(line), "|", 4)
		if len(f) != 4 || f[3] != comment {
			continue
		}
		j := Job{ID: f[0], State: f[1]}
		if t, err := time.ParseInLocation("2006-01-02T15:04:05", f[2], time.Local); err == nil {
			j.Submitted = t
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// Command is the sbatch command line of one submission of n jobs ("-" stands for the
// script, written to a temporary file).
func (s *Slurm) Command(n int) []string {
	args := []string{"sbatch", "--parsable", "--job-name=" + s.Name, "--comment=" + s.Comment()}
	if s.Partition != "" {
		args = append(args, "--partition="+s.Partition)
	}
	if s.Account != "" {
		args = append(args, "--account="+s.Account)
	}
	if s.TimeLimit != "" {
		args = append(args, "--time="+s.TimeLimit)
	}
	if s.Nodes {
		args = append(args, "--nodes="+strconv.Itoa(s.WorkersPerJob))
	} else {
		args = append(args, fmt.Sprintf("--array=0-%d", n-1))
	}
	args = append(args, s.SbatchArgs...)
	args = append(args, s.ScriptName)
	return append(args, s.ScriptArgs...)
}

// Submit submits n jobs: one array of n elements, or n jobs of the nodes script.
func (s *Slurm) Submit(ctx context.Context, n int) (Submitted, error) {
	var sub Submitted
	f, err := os.CreateTemp("", "ccworker-allocate-*.sbatch")
	if err != nil {
		return sub, fmt.Errorf("sbatch script: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.Write(s.Script); err != nil {
		_ = f.Close()
		return sub, fmt.Errorf("sbatch script: %w", err)
	}
	if err := f.Close(); err != nil {
		return sub, fmt.Errorf("sbatch script: %w", err)
	}
	calls, per := 1, n
	if s.Nodes {
		calls, per = n, 1
	}
	for range calls {
		args := s.Command(per)[1:]
		for i, a := range args {
			if a == s.ScriptName {
				args[i] = f.Name()
				break
			}
		}
		out, err := s.exec(ctx, "sbatch", args...)
		if err != nil {
			return sub, err
		}
		id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";") // "jobid;cluster"
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return sub, fmt.Errorf("sbatch --parsable printed %q, not a job id", strings.TrimSpace(string(out)))
		}
		sub.IDs = append(sub.IDs, id)
		sub.Jobs += per
	}
	return sub, nil
}
