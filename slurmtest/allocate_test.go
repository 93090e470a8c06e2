package slurmtest

// Tests of `ccworker allocate` (issue #16) on the test cluster: the allocator runs as a
// process (JSON logs), submits the built-in array script, and the tests watch squeue, the
// queue and the result documents. Each test's jobs carry a job name of its own.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

// allocator is a running `ccworker allocate` with its JSON log lines.
type allocator struct {
	*testharness.Proc
	name string
}

// logLine is one JSON log line of the allocator.
type logLine struct {
	Level string `json:"level"`
	RawTS string `json:"ts"`
	TS    time.Time
	Msg   string `json:"msg"`
	Jobs  int    `json:"jobs"`
	URL   string `json:"url"`
}

func (a *allocator) lines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(a.Output()))
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg != "" {
			l.TS, _ = time.Parse("2006-01-02T15:04:05.000Z0700", l.RawTS) // zap's ISO8601
			out = append(out, l)
		}
	}
	return out
}

// count returns how many lines contain msg, and the jobs they submitted when msg is "submitted".
func (a *allocator) count(msg string) (lines, jobs int) {
	for _, l := range a.lines() {
		if strings.Contains(l.Msg, msg) {
			lines++
			jobs += l.Jobs
		}
	}
	return lines, jobs
}

func (a *allocator) waitLog(t *testing.T, msg string, n int, timeout time.Duration) logLine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var seen []logLine
		for _, l := range a.lines() {
			if strings.Contains(l.Msg, msg) {
				seen = append(seen, l)
			}
		}
		if len(seen) >= n {
			return seen[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("allocator: %d of %d %q lines after %v:\n%s", len(seen), n, msg, timeout, testharness.Tail(a.Output(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends sig and returns the exit code; the test fails if the allocator has not
// ended 30 s later.
func (a *allocator) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if !a.Exited() {
		_ = a.Cmd.Process.Signal(sig)
	}
	code, ok := a.Wait(30 * time.Second)
	if !ok {
		_ = a.Cmd.Process.Kill()
		t.Errorf("allocator did not stop on %v", sig)
	}
	return code
}

// startAllocator starts `ccworker allocate` for the setup's queue; jobs named name, at
// most maxJobs, quick polls so the tests run quickly.
func (s *setup) startAllocator(t *testing.T, name string, maxJobs int, extra ...string) *allocator {
	t.Helper()
	args := append([]string{"allocate", "--config", s.config, "-Q", s.queue, "--name", name, "--log-format", "json",
		"-l", "DEBUG", "--max-jobs", strconv.Itoa(maxJobs), "--poll-interval", "500ms", "--min-interval", "2s",
		"--worker-max-idle", "3s", "--sbatch-arg=--time=5", "--sbatch-arg=--output=" + filepath.Join(s.dir, "%x-%A_%a.out")},
		extra...)
	if !containsDash(extra) {
		args = append(args, "--", "-c", "2")
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = s.dir
	// Killed with the test binary (a timeout, a kill), so it cannot go on submitting jobs
	// for a queue nobody cleans up; its jobs end by --max-idle or --time=5 anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return &allocator{Proc: testharness.Start(t, cmd), name: name}
}

func containsDash(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return true
		}
	}
	return false
}

// jobWatch polls squeue for the jobs named name and remembers every element seen, the
// most active at once and when the first ran.
type jobWatch struct {
	mu         sync.Mutex
	seen       map[string]string // element -> last state
	maxActive  int
	firstRun   time.Time
	lastActive time.Time
	stop       chan struct{}
	done       chan struct{}
}

func watchJobs(t *testing.T, name string) *jobWatch {
	w := &jobWatch{seen: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			out, err := exec.Command("squeue", "-h", "-r", "-t", "all", "--name", name, "-o", "%i %T").Output()
			if err == nil {
				active := 0
				now := time.Now()
				w.mu.Lock()
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					f := strings.Fields(line)
					if len(f) != 2 {
						continue
					}
					w.seen[f[0]] = f[1]
					if !finalStates[f[1]] {
						active++
					}
					if f[1] == "RUNNING" && w.firstRun.IsZero() {
						w.firstRun = now
					}
				}
				w.maxActive = max(w.maxActive, active)
				if active > 0 {
					w.lastActive = now
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		w.close()
		// Whatever the test left behind ends now (hard: the queue is deleted anyway).
		_ = exec.Command("scancel", "--signal=KILL", "--name", name).Run()
	})
	return w
}

func (w *jobWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *jobWatch) snapshot() (elements, maxActive, active int, firstRun, lastActive time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, st := range w.seen {
		if !finalStates[st] {
			active++
		}
	}
	return len(w.seen), w.maxActive, active, w.firstRun, w.lastActive
}

// waitNoJobs waits until none of the watched jobs is active.
func (w *jobWatch) waitNoJobs(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		time.Sleep(300 * time.Millisecond) // one more squeue round after the last change
		if _, _, active, _, last := w.snapshot(); active == 0 {
			return last
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("jobs still active after %v: %v", timeout, w.seen)
		}
	}
}

func (s *setup) succeeded(t *testing.T) int {
	return s.count(t, bson.D{{Key: "status", Value: "SUCCESS"}})
}

// TestAllocateFollowsTheQueue: 2,000 tasks make the allocator submit jobs up to its limit
// (4) and no more; the queue drains, every allocation is released and nothing more is
// submitted while idle; then a burst gets a new job within poll + min interval, and is
// released again.
func TestAllocateFollowsTheQueue(t *testing.T) {
	const n, maxJobs = 2000, 4
	s := newSetup(t)
	name := testenv.Name(t, "alloc")
	jobs := watchJobs(t, name)
	idsFile, _ := s.publish(t, "ccworker.sleep", "[0.01]", n)

	// --dry-run and status: what it would do, nothing submitted
	for _, sub := range [][]string{{"--dry-run"}, {"status"}} {
		args := append([]string{"allocate"}, sub...)
		args = append(args, "--config", s.config, "-Q", s.queue, "--name", name, "--max-jobs", strconv.Itoa(maxJobs))
		out, err := exec.Command(binary, args...).CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		t.Logf("ccworker %s:\n%s", strings.Join(args, " "), out)
		assert.Contains(t, string(out), fmt.Sprintf("%d ready, 0 consumers", n))
		assert.Contains(t, string(out), "jobs: 0 pending, 0 running")
		assert.Contains(t, string(out), "submit 4 job(s)")
		if sub[0] == "--dry-run" {
			assert.Regexp(t, `would run: sbatch --parsable --job-name=`+name+` .*--array=0-3 `, string(out))
		}
	}
	time.Sleep(time.Second)
	elements, _, _, _, _ := jobs.snapshot()
	require.Zero(t, elements, "--dry-run and status submit nothing")

	t0 := time.Now()
	a := s.startAllocator(t, name, maxJobs, "--metrics-addr", "127.0.0.1:0", "--", "-c", "2")
	a.waitLog(t, "backlog seen", 1, 30*time.Second)
	s.waitAll(t, idsFile, 4*time.Minute)
	a.waitLog(t, "all allocations released", 1, 2*time.Minute)
	lastEnd := jobs.waitNoJobs(t, time.Minute)
	_, lastDone := s.lastDone(t)

	// idle: nothing is submitted while the queue stays empty
	time.Sleep(5 * time.Second)
	subLines, submitted := a.count("submitted")
	elements, maxActive, _, firstRun, _ := jobs.snapshot()
	assert.Equal(t, maxJobs, submitted, "jobs submitted for the backlog")
	assert.Equal(t, maxJobs, elements, "jobs squeue saw")
	assert.LessOrEqual(t, maxActive, maxJobs, "never more than max jobs at once")
	assert.Equal(t, n, s.succeeded(t))
	t.Logf("TIMING allocate backlog %d x sleep 0.01 (max jobs %d, -c 2, worker max idle 3s, poll 0.5s): "+
		"allocator start -> first job running %v (allocator: backlog seen -> first job running %s); "+
		"last result -> last job ended %v (allocator: queue dry -> all released %s); submissions %d sbatch call(s), %d jobs",
		n, maxJobs, firstRun.Sub(t0).Round(time.Millisecond), lastLatency(a, "first job running "),
		lastEnd.Sub(lastDone).Round(time.Millisecond), lastLatency(a, "all allocations released "), subLines, submitted)

	// burst after the idle period
	const burst = 50
	tBurst := time.Now()
	burstIDs, _ := s.publish(t, "ccworker.sleep", "[0.01]", burst)
	sub := a.waitLog(t, "submitted", subLines+1, 30*time.Second)
	delay := sub.TS.Sub(tBurst)
	s.waitAll(t, burstIDs, 2*time.Minute)
	a.waitLog(t, "all allocations released", 2, 2*time.Minute)
	jobs.waitNoJobs(t, time.Minute)
	time.Sleep(3 * time.Second)
	_, submitted2 := a.count("submitted")
	t.Logf("TIMING allocate burst of %d after idle: published -> submitted %v (configured: poll 0.5s, min interval 2s); "+
		"backlog seen -> first job running %s; queue dry -> all released %s; jobs submitted for the burst %d",
		burst, delay.Round(time.Millisecond), lastLatency(a, "first job running "), lastLatency(a, "all allocations released "),
		submitted2-submitted)
	assert.Equal(t, 1, submitted2-submitted, "one job for %d tasks (backlog per worker 100)", burst)
	// poll + min interval, plus the publish and the squeue/sbatch calls on a slow machine
	assert.Less(t, delay, 2500*time.Millisecond+15*time.Second, "burst -> submission")
	assert.Equal(t, n+burst, s.succeeded(t))
	metrics := a.waitLog(t, "serving metrics", 1, time.Second)
	resp, err := http.Get(metrics.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Contains(t, string(body), fmt.Sprintf("ccworker_allocate_submitted_jobs_total %d", submitted2))
	assert.Contains(t, string(body), "ccworker_allocate_sbatch_failures_total 0")
	assert.Contains(t, string(body), `ccworker_allocate_queue_ready{queue="`+s.queue+`"} 0`)
	assert.Equal(t, 0, a.stop(t, syscall.SIGTERM), "allocator exit code on SIGTERM")
}

// lastLatency is the duration in the allocator's last line starting with prefix.
func lastLatency(a *allocator, prefix string) string {
	v := "?"
	for _, l := range a.lines() {
		if strings.HasPrefix(l.Msg, prefix) {
			v = strings.Fields(strings.TrimPrefix(l.Msg, prefix))[0]
		}
	}
	return v
}

// lastDone is the newest date_done of the results.
func (s *setup) lastDone(t *testing.T) (int, time.Time) {
	var last time.Time
	docs := s.docs(t)
	for _, d := range docs {
		if d.DateDone.After(last) {
			last = d.DateDone
		}
	}
	return len(docs), last
}

// TestAllocateRestartSubmitsNoDuplicates: an allocator killed (SIGKILL) after submitting
// and started again reads its jobs back from squeue and submits nothing more while they
// cover the backlog.
func TestAllocateRestartSubmitsNoDuplicates(t *testing.T) {
	const n = 250 // want 3 workers at 100 per worker; max jobs 4 leaves room for a 4th
	s := newSetup(t)
	name := testenv.Name(t, "alloc")
	jobs := watchJobs(t, name)
	idsFile, _ := s.publish(t, "ccworker.sleep", "[0.1]", n)

	a := s.startAllocator(t, name, 4, "--", "-c", "1")
	a.waitLog(t, "submitted", 1, 30*time.Second)
	a.stop(t, syscall.SIGKILL)
	_, first := a.count("submitted")

	b := s.startAllocator(t, name, 4, "--", "-c", "1")
	b.waitLog(t, "allocation status", 1, 30*time.Second)
	time.Sleep(6 * time.Second) // 12 polls, 3 min intervals
	lines, again := b.count("submitted")
	elements, maxActive, _, _, _ := jobs.snapshot()
	t.Logf("restart: first allocator submitted %d jobs; restarted one %d in %d call(s); squeue saw %d elements (max %d active)",
		first, again, lines, elements, maxActive)
	assert.Equal(t, 3, first)
	assert.Equal(t, 0, again, "the restarted allocator must count the jobs already there")
	s.waitAll(t, idsFile, 3*time.Minute)
	b.waitLog(t, "all allocations released", 1, 2*time.Minute)
	_, again = b.count("submitted")
	elements, maxActive, _, _, _ = jobs.snapshot()
	assert.LessOrEqual(t, maxActive, 4)
	t.Logf("restart: after the drain the restarted allocator had submitted %d more; %d elements in all", again, elements)
	assert.Equal(t, first+again, elements, "every element squeue saw was submitted by one of the two allocators")
	assert.Equal(t, n, s.succeeded(t))
}

// TestAllocatePausesOnSbatchFailures: sbatch fails (a partition that does not exist): after
// --fail-limit failures one line says submissions pause; probes go on at --probe-interval;
// once the partition exists, one line says they resume and the tasks run.
func TestAllocatePausesOnSbatchFailures(t *testing.T) {
	const n = 20
	s := newSetup(t)
	name := testenv.Name(t, "alloc")
	watchJobs(t, name)
	part := "p" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	t.Cleanup(func() { _ = exec.Command("scontrol", "delete", "PartitionName="+part).Run() })
	idsFile, _ := s.publish(t, "ccworker.sleep", "[0.01]", n)

	a := s.startAllocator(t, name, 2, "--partition", part, "--fail-limit", "3", "--min-interval", "1s",
		"--probe-interval", "3s")
	a.waitLog(t, "pausing submissions", 1, time.Minute)
	time.Sleep(7 * time.Second) // two probes or more, quietly
	failed, _ := a.count("sbatch failed")
	paused, _ := a.count("pausing submissions")
	assert.Equal(t, 2, failed, "warnings before the pause")
	assert.Equal(t, 1, paused, "one line for the pause")

	tFix := time.Now() // a probe may land while scontrol still runs
	out, err := exec.Command("scontrol", "create", "PartitionName="+part, "Nodes=ALL", "State=UP", "MaxTime=INFINITE").CombinedOutput()
	require.NoError(t, err, "scontrol create partition: %s", out)
	t.Logf("scontrol create took %v", time.Since(tFix).Round(time.Millisecond))
	resumed := a.waitLog(t, "resuming submissions", 1, 30*time.Second)
	s.waitAll(t, idsFile, 2*time.Minute)
	a.waitLog(t, "all allocations released", 1, 2*time.Minute)
	resumedLines, _ := a.count("resuming submissions")
	paused, _ = a.count("pausing submissions")
	lines, jobsN := a.count("submitted")
	t.Logf("TIMING sbatch failures: partition created -> resumed %v (probe interval 3s); lines: %d pausing, %d resuming; "+
		"submitted %d job(s) in %d call(s)", resumed.TS.Sub(tFix).Round(time.Millisecond), paused, resumedLines, jobsN, lines)
	assert.Equal(t, 1, paused)
	assert.Equal(t, 1, resumedLines, "one line for the resume")
	assert.Equal(t, 1, jobsN, "the probe job covers %d tasks", n)
	assert.Equal(t, n, s.succeeded(t))
	assert.Contains(t, strings.ToLower(a.Output()), "invalid partition", "the pause line carries sbatch's error")
}

// TestAllocateJobCancelledMidWork: a job killed while its worker runs tasks loses nothing:
// the unacked tasks go back to the queue, the allocator replaces the job, every task ends
// SUCCESS.
func TestAllocateJobCancelledMidWork(t *testing.T) {
	const n = 300
	s := newSetup(t)
	name := testenv.Name(t, "alloc")
	jobs := watchJobs(t, name)
	idsFile, ids := s.publish(t, "ccworker.sleep", "[0.1]", n)

	a := s.startAllocator(t, name, 2, "--backlog-per-worker", "50")
	deadline := time.Now().Add(time.Minute)
	for s.succeeded(t) < 20 {
		require.False(t, time.Now().After(deadline), "tasks are not flowing")
		time.Sleep(100 * time.Millisecond)
	}
	var victim string
	jobs.mu.Lock()
	for id, st := range jobs.seen {
		if st == "RUNNING" {
			victim = id
			break
		}
	}
	jobs.mu.Unlock()
	require.NotEmpty(t, victim, "a running job")
	before := s.succeeded(t)
	out, err := exec.Command("scancel", "--signal=KILL", victim).CombinedOutput()
	require.NoError(t, err, "scancel %s: %s", victim, out)
	t.Logf("killed job %s with %d of %d results stored", victim, before, n)

	s.waitAll(t, idsFile, 3*time.Minute)
	a.waitLog(t, "all allocations released", 1, 2*time.Minute)
	_, submitted := a.count("submitted")
	elements, maxActive, _, _, _ := jobs.snapshot()
	t.Logf("cancel mid-work: %d jobs submitted (%d elements seen, max %d active)", submitted, elements, maxActive)
	assert.LessOrEqual(t, maxActive, 2)
	assert.GreaterOrEqual(t, submitted, 3, "the killed job is replaced while tasks remain")
	idFilter := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "status", Value: "SUCCESS"}}
	assert.Equal(t, n, s.count(t, idFilter), "every task SUCCESS")
	assert.Equal(t, 0, testharness.ReadyCount(t, s.amqpURL, s.queue))
}

// TestAllocateNodesMode: --mode nodes submits the nodes script, one job of
// --workers-per-job nodes for each step of the backlog; both workers of the job work.
func TestAllocateNodesMode(t *testing.T) {
	const n = 150 // want 2 workers at 100 per worker: one job of 2 nodes
	s := newSetup(t)
	name := testenv.Name(t, "alloc")
	jobs := watchJobs(t, name)
	idsFile, _ := s.publish(t, "ccworker.sleep", "[0.02]", n)

	a := s.startAllocator(t, name, 2, "--mode", "nodes", "--workers-per-job", "2",
		"--sbatch-arg=--output="+filepath.Join(s.dir, "%x-%j.out"))
	s.waitAll(t, idsFile, 2*time.Minute)
	a.waitLog(t, "all allocations released", 1, 2*time.Minute)
	jobs.waitNoJobs(t, time.Minute)
	lines, submitted := a.count("submitted")
	elements, maxActive, _, _, _ := jobs.snapshot()
	workers := map[string]int{}
	for _, d := range s.docs(t) {
		workers[d.Worker]++
	}
	t.Logf("nodes mode: %d job(s) in %d call(s); squeue saw %d (max %d active); results per worker %v",
		submitted, lines, elements, maxActive, workers)
	assert.Equal(t, 1, submitted)
	assert.Equal(t, 1, elements)
	assert.Len(t, workers, 2, "the job's two workers ran tasks")
	assert.Equal(t, n, s.succeeded(t))
	logs := readLogs(t, filepath.Join(s.dir, name+"-*.out"))
	require.Len(t, logs, 1)
	for _, l := range logs {
		assert.Contains(t, l, "(2 node(s))")
		assert.Equal(t, 2, strings.Count(l, "(--max-idle): stopping"), "both workers leave by --max-idle")
	}
}
