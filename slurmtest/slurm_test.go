package slurmtest

// Run with the services and the test cluster up (make test-slurm does all of it):
//
//	bash scripts/services.sh start && bash scripts/slurm/start-slurm.sh
//	source scripts/slurm/env.sh     # SLURM_CONF
//	CCWORKER_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672// \
//	CCWORKER_TEST_MONGO_URL=mongodb://127.0.0.1:27017/ go test -v -count=1 ./slurmtest/
//
// The cluster's job state is not reset between tests: every test uses its own queue,
// database and job ids, and cancels its jobs when it ends.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

const (
	collection = "celery_taskmeta"
)

var (
	binary      string // ccworker built by TestMain ("" when nothing to test against)
	buildErr    error
	arrayScript string // deploy/slurm/ccworker-array.sbatch
	nodesScript string // deploy/slurm/ccworker-nodes.sbatch
	slurmErr    error  // why there is no usable Slurm cluster
	celeryErr   error  // why the Python Celery client cannot run
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	arrayScript, _ = filepath.Abs("../deploy/slurm/ccworker-array.sbatch")
	nodesScript, _ = filepath.Abs("../deploy/slurm/ccworker-nodes.sbatch")
	slurmErr = probeSlurm()
	if slurmErr == nil && os.Getenv(testenv.AMQPVar) != "" && os.Getenv(testenv.MongoVar) != "" {
		// Slurm jobs run the binary from the directory Build makes, which every fake node
		// (this host) can read.
		var remove func()
		binary, remove, buildErr = testharness.Build()
		defer remove()
		celeryErr = testharness.CheckCelery()
	}
	return m.Run()
}

// probeSlurm checks that the Slurm client commands exist and a slurmctld answers.
func probeSlurm() error {
	for _, c := range []string{"sbatch", "squeue", "scontrol", "scancel"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found (apt-get install slurm-client; make test-slurm starts a test cluster)", c)
		}
	}
	if os.Getenv("SLURM_CONF") == "" {
		if _, err := os.Stat("/etc/slurm/slurm.conf"); err != nil {
			return errors.New("SLURM_CONF is not set and there is no /etc/slurm/slurm.conf " +
				"(run scripts/slurm/start-slurm.sh and source scripts/slurm/env.sh, or make test-slurm)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "scontrol", "ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is UP") {
		return fmt.Errorf("no slurmctld answers (scontrol ping: %v: %s); start one with scripts/slurm/start-slurm.sh",
			err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ---------------------------------------------------------------- per-test setup

type setup struct {
	amqpURL, mongoURL string
	queue             string
	db                *mongo.Database
	config            string // celeryconfig.py
	dir               string // job outputs (--output) and working directory
}

// newSetup skips unless Slurm, the services and the Python client are there, and returns a
// fresh queue, database and celeryconfig.py.
func newSetup(t *testing.T) *setup {
	t.Helper()
	if slurmErr != nil {
		t.Skipf("no Slurm cluster: %v", slurmErr)
	}
	amqpURL, mongoURL := testenv.AMQPURL(t), testenv.MongoURL(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if celeryErr != nil {
		t.Skipf("no Python Celery client: %v", celeryErr)
	}
	s := &setup{amqpURL: amqpURL, mongoURL: mongoURL, queue: testenv.Name(t, "q"), db: testenv.Database(t)}
	s.dir = t.TempDir()
	require.NoError(t, os.Chmod(s.dir, 0o755))
	s.config = filepath.Join(s.dir, "celeryconfig.py")
	require.NoError(t, os.WriteFile(s.config, []byte(fmt.Sprintf(`# written by ccworker's slurmtest
broker_url = '%s'
result_backend = '%s'
mongodb_backend_settings = {'database': '%s', 'taskmeta_collection': '%s'}
worker_send_task_events = False
`, amqpURL, mongoURL, s.db.Name(), collection)), 0o644))
	t.Cleanup(func() { testharness.DeleteQueue(t, amqpURL, s.queue) })
	return s
}

// client runs celery_client.py against the setup's queue and database.
func (s *setup) client(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := testharness.Client{Broker: s.amqpURL, Backend: s.mongoURL, Database: s.db.Name(), Collection: collection, Queue: s.queue}
	stdout, stderr, code, err := c.Run(ctx, args...)
	require.NoError(t, err, "celery_client.py %s: stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout, stderr)
	require.Zero(t, code, "celery_client.py %s: stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout, stderr)
	return strings.TrimSpace(stdout)
}

// publish sends n tasks and returns the ids file and the ids.
func (s *setup) publish(t *testing.T, task, args string, n int) (string, []string) {
	t.Helper()
	idsFile := filepath.Join(s.dir, "ids-"+strconv.Itoa(n)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	s.client(t, 60*time.Second, "load", "--task", task, "--args", args, "--n", strconv.Itoa(n),
		"--publish-only", "--ids-file", idsFile)
	b, err := os.ReadFile(idsFile)
	require.NoError(t, err)
	ids := strings.Fields(string(b))
	require.Len(t, ids, n)
	return idsFile, ids
}

// waitAll waits (celery_client.py wait) until every id has a final document, all SUCCESS.
func (s *setup) waitAll(t *testing.T, idsFile string, timeout time.Duration) {
	t.Helper()
	out := s.client(t, timeout+30*time.Second, "wait", "--ids-file", idsFile, "--timeout",
		strconv.Itoa(int(timeout.Seconds())))
	t.Logf("celery_client.py wait: %s", out)
}

func (s *setup) coll() *mongo.Collection { return s.db.Collection(collection) }

func (s *setup) count(t *testing.T, filter bson.D) int {
	t.Helper()
	return testharness.CountDocs(t, s.coll(), filter)
}

// doc is the part of a result document the tests look at.
type doc struct {
	ID       string    `bson:"_id"`
	Status   string    `bson:"status"`
	Worker   string    `bson:"worker"`
	DateDone time.Time `bson:"date_done"`
}

func (s *setup) docs(t *testing.T) []doc {
	t.Helper()
	var out []doc
	testharness.Docs(t, s.coll(), &out)
	return out
}

// ---------------------------------------------------------------- Slurm

// sbatch submits and returns the job id; the test's cleanup cancels the job if it still runs.
func (s *setup) sbatch(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"--parsable", "--chdir", s.dir}, args...)
	out, err := exec.Command("sbatch", args...).CombinedOutput()
	require.NoError(t, err, "sbatch %s: %s", strings.Join(args, " "), out)
	id := strings.TrimSpace(string(out))
	if i := strings.IndexByte(id, ';'); i >= 0 { // "jobid;cluster"
		id = id[:i]
	}
	require.Regexp(t, `^[0-9]+$`, id, "sbatch --parsable printed %q", out)
	t.Cleanup(func() {
		if !jobEnded(t, id) {
			_ = exec.Command("scancel", "--signal=KILL", id).Run()
		}
		if t.Failed() {
			t.Logf("job %s:\n%s", id, scontrol(t, id))
			outs, _ := filepath.Glob(filepath.Join(s.dir, "*.out"))
			for _, f := range outs {
				b, _ := os.ReadFile(f)
				t.Logf("---- %s:\n%s", filepath.Base(f), testharness.Tail(string(b), 60))
			}
		}
	})
	return id
}

// states maps each job (array element "ID_I", or "ID") to its state, finished jobs included
// (the test cluster keeps them for MinJobAge; no slurmdbd, so no sacct).
func states(t *testing.T, id string) map[string]string {
	t.Helper()
	out, err := exec.Command("squeue", "-h", "-t", "all", "-j", id, "-o", "%i %T").Output()
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

var finalStates = map[string]bool{"COMPLETED": true, "FAILED": true, "CANCELLED": true, "TIMEOUT": true,
	"NODE_FAIL": true, "OUT_OF_MEMORY": true, "PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true}

func jobEnded(t *testing.T, id string) bool {
	st := states(t, id)
	return len(st) == 0 || allFinal(st)
}

func allFinal(st map[string]string) bool {
	for _, s := range st {
		if !finalStates[s] {
			return false
		}
	}
	return true
}

// waitEnd waits until the job's n elements (n = 1 for a plain job) have all ended and returns
// their states and when the end was seen.
func waitEnd(t *testing.T, id string, n int, timeout time.Duration) (map[string]string, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// One squeue answer decides: all n elements listed, all in a final state (an
		// empty answer is a failed squeue call here, not an ended job).
		st := states(t, id)
		if len(st) == n && allFinal(st) {
			return st, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not ended within %v: %v", id, timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRunning waits until the job's n elements all run.
func waitRunning(t *testing.T, id string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := states(t, id)
		running := 0
		for _, s := range st {
			if s == "RUNNING" {
				running++
			}
		}
		if running == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %d of %d elements running after %v: %v", id, running, n, timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scontrol(t *testing.T, id string) string {
	out, _ := exec.Command("scontrol", "show", "job", "-o", id).CombinedOutput()
	return string(out)
}

// jobRecord is one line of `scontrol show job -o`.
type jobRecord map[string]string

func records(t *testing.T, id string) []jobRecord {
	t.Helper()
	var recs []jobRecord
	for _, line := range strings.Split(strings.TrimSpace(scontrol(t, id)), "\n") {
		r := jobRecord{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				r[k] = v
			}
		}
		if r["JobId"] != "" {
			recs = append(recs, r)
		}
	}
	return recs
}

// waitLogs waits until each of the job output files matching pattern contains substr.
func waitLogs(t *testing.T, pattern string, n int, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files, _ := filepath.Glob(pattern)
		ok := 0
		for _, f := range files {
			if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(substr)) {
				ok++
			}
		}
		if ok >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d job outputs %s contain %q after %v", ok, n, pattern, substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readLogs(t *testing.T, pattern string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(pattern)
	m := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		m[filepath.Base(f)] = string(b)
	}
	return m
}

// ---------------------------------------------------------------- a local (non-Slurm) worker

func (s *setup) localWorker(t *testing.T, args ...string) *testharness.Proc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", s.config, "-Q", s.queue, "-l", "INFO",
		"-n", "final@%h"}, args...)...)
	cmd.Dir = s.dir
	return testharness.Start(t, cmd)
}

// ---------------------------------------------------------------- the tests

var nodeRE = regexp.MustCompile(`ccworker-array: job \S+ \(slurm job \d+\) on (\S+),`)

// TestArrayDrainsQueue: 4 array elements, one worker each on its own node, empty the queue
// and leave by --max-idle; the array ends COMPLETED. Reports the latencies a user pays:
// sbatch -> first result, last result -> allocation released.
func TestArrayDrainsQueue(t *testing.T) {
	const n, elements = 200, 4
	s := newSetup(t)
	idsFile, ids := s.publish(t, "ccworker.sleep", "[0.05]", n)

	t0 := time.Now()
	job := s.sbatch(t, fmt.Sprintf("--array=0-%d", elements-1), "--time=5", "--output", filepath.Join(s.dir, "%A_%a.out"),
		arrayScript, "--bin", binary, "--config", s.config, "-Q", s.queue, "-c", "4", "--max-idle", "3s")
	var firstSeen time.Time
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s.count(t, bson.D{}) > 0 {
			firstSeen = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result 30 s after sbatch; job: %v", states(t, job))
		}
	}
	s.waitAll(t, idsFile, 60*time.Second)
	st, endSeen := waitEnd(t, job, elements, 30*time.Second)

	docs := s.docs(t)
	require.Len(t, docs, n)
	var first, last time.Time
	workers := map[string]int{}
	for _, d := range docs {
		assert.Equal(t, "SUCCESS", d.Status, "task %s", d.ID)
		if first.IsZero() || d.DateDone.Before(first) {
			first = d.DateDone
		}
		if d.DateDone.After(last) {
			last = d.DateDone
		}
		workers[d.Worker]++
	}
	assert.Equal(t, n, s.count(t, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "status", Value: "SUCCESS"}}))

	for el, state := range st {
		assert.Equal(t, "COMPLETED", state, "array element %s", el)
	}
	nodes := map[string]string{}
	var ends []time.Time
	for _, r := range records(t, job) {
		assert.Equal(t, "0:0", r["ExitCode"], "exit code of element %s", r["ArrayTaskId"])
		nodes[r["ArrayTaskId"]] = r["NodeList"]
		if e, err := time.ParseInLocation("2006-01-02T15:04:05", r["EndTime"], time.Local); err == nil {
			ends = append(ends, e)
		}
	}
	logs := readLogs(t, filepath.Join(s.dir, job+"_*.out"))
	require.Len(t, logs, elements, "one output file per array element (%%A_%%a)")
	logNodes := map[string]bool{}
	for name, l := range logs {
		m := nodeRE.FindStringSubmatch(l)
		if assert.NotNil(t, m, "%s has no start line", name) {
			logNodes[m[1]] = true
		}
		assert.Contains(t, l, "(--max-idle): stopping", "%s: the worker must leave by --max-idle", name)
		assert.Contains(t, l, "worker stopped", name)
	}
	distinct := map[string]bool{}
	for _, nl := range nodes {
		distinct[nl] = true
	}
	assert.Len(t, distinct, elements, "array elements must run on %d different nodes: %v", elements, nodes)
	assert.Len(t, logNodes, elements, "workers' SLURMD_NODENAME: %v", logNodes)

	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	lastToEnd := endSeen.Sub(last)
	t.Logf("TIMING array (%d elements, %d x sleep 0.05, -c 4, --max-idle 3s): sbatch -> first result stored %v "+
		"(first seen by polling %v); first -> last result %v; last result -> all elements ended (squeue) %v; "+
		"sbatch -> job end %v", elements, n, first.Sub(t0).Round(time.Millisecond), firstSeen.Sub(t0).Round(time.Millisecond),
		last.Sub(first).Round(time.Millisecond), lastToEnd.Round(time.Millisecond), endSeen.Sub(t0).Round(time.Millisecond))
	t.Logf("nodes per element: %v; results per worker: %v; scontrol EndTimes: %v", nodes, workers, ends)
	// --max-idle 3s: the allocation must be back a few seconds after the queue ran dry.
	assert.Less(t, lastToEnd, 3*time.Second+8*time.Second, "last result -> job end")
}

// TestArrayWarmShutdownOnTERM: SIGTERM to every element's batch shell (what --signal=B:TERM
// does before the walltime) while tasks run: every worker drains and exits 0, the job is
// COMPLETED, and no task is lost (documents + queued messages = N; a final worker finishes).
func TestArrayWarmShutdownOnTERM(t *testing.T) {
	const n, elements = 400, 4
	s := newSetup(t)
	idsFile, ids := s.publish(t, "ccworker.sleep", "[0.2]", n)

	job := s.sbatch(t, fmt.Sprintf("--array=0-%d", elements-1), "--time=5", "--output", filepath.Join(s.dir, "%A_%a.out"),
		arrayScript, "--bin", binary, "--config", s.config, "-Q", s.queue, "-c", "4", "--max-idle", "30s",
		"--drain-timeout", "20s")
	waitRunning(t, job, elements, 30*time.Second)
	waitLogs(t, filepath.Join(s.dir, job+"_*.out"), elements, "ready.", 30*time.Second)
	for deadline := time.Now().Add(30 * time.Second); s.count(t, bson.D{}) < 20; time.Sleep(20 * time.Millisecond) {
		require.False(t, time.Now().After(deadline), "tasks are not flowing")
	}
	before := s.count(t, bson.D{})
	tTerm := time.Now()
	out, err := exec.Command("scancel", "--signal=TERM", "--batch", job).CombinedOutput()
	require.NoError(t, err, "scancel --signal=TERM --batch %s: %s", job, out)
	st, endSeen := waitEnd(t, job, elements, 40*time.Second)
	t.Logf("TIMING TERM: %d results before the signal; SIGTERM -> all %d elements ended %v", before, elements,
		endSeen.Sub(tTerm).Round(time.Millisecond))
	for el, state := range st {
		assert.Equal(t, "COMPLETED", state, "array element %s after SIGTERM", el)
	}
	for _, r := range records(t, job) {
		assert.Equal(t, "0:0", r["ExitCode"], "exit code of element %s after SIGTERM", r["ArrayTaskId"])
	}
	assert.Less(t, endSeen.Sub(tTerm), 15*time.Second, "a warm shutdown with 0.2 s tasks must be quick")
	for name, l := range readLogs(t, filepath.Join(s.dir, job+"_*.out")) {
		assert.Contains(t, l, "warm shutdown", "%s: SIGTERM must reach ccworker", name)
		assert.Contains(t, l, "worker stopped", name)
		assert.NotContains(t, l, "(--max-idle)", "%s: stopped by idleness, not by the signal", name)
	}

	idFilter := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	stored := s.count(t, idFilter)
	succeeded := s.count(t, append(idFilter, bson.E{Key: "status", Value: "SUCCESS"}))
	assert.Equal(t, stored, succeeded, "every stored document must be SUCCESS")
	ready := -1
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ready = testharness.ReadyCount(t, s.amqpURL, s.queue)
		if stored+ready >= n || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after SIGTERM: %d SUCCESS documents + %d messages ready = %d (published %d)", succeeded, ready, stored+ready, n)
	require.GreaterOrEqual(t, stored+ready, n, "tasks lost: documents %d + messages ready %d < %d", stored, ready, n)
	if ready == 0 {
		t.Log("note: every task finished before the signal; the drain was not exercised")
	}

	w := s.localWorker(t, "-c", "16", "--max-idle", "3s")
	s.waitAll(t, idsFile, 60*time.Second)
	assert.Equal(t, n, s.count(t, append(idFilter, bson.E{Key: "status", Value: "SUCCESS"})), "SUCCESS documents after the final worker")
	if code, ok := w.Wait(20 * time.Second); !ok {
		t.Error("final worker did not leave by --max-idle 3s")
	} else {
		assert.Zero(t, code, "final worker exit")
	}
	assert.Equal(t, 0, testharness.ReadyCount(t, s.amqpURL, s.queue), "messages left in the queue")
}

// TestNodesScript: one allocation of 2 nodes, srun starts a worker on each; both work and
// leave by --max-idle, the job ends COMPLETED.
func TestNodesScript(t *testing.T) {
	const n, nodes = 100, 2
	s := newSetup(t)
	idsFile, _ := s.publish(t, "ccworker.sleep", "[0.05]", n)
	t0 := time.Now()
	job := s.sbatch(t, "-N", strconv.Itoa(nodes), "--time=5", "--output", filepath.Join(s.dir, "%j.out"),
		nodesScript, "--bin", binary, "--config", s.config, "-Q", s.queue, "-c", "2", "--max-idle", "3s")
	s.waitAll(t, idsFile, 60*time.Second)
	st, endSeen := waitEnd(t, job, 1, 30*time.Second)
	assert.Equal(t, "COMPLETED", st[job], "state")
	recs := records(t, job)
	require.Len(t, recs, 1)
	assert.Equal(t, "0:0", recs[0]["ExitCode"])

	workers := map[string]int{}
	for _, d := range s.docs(t) {
		workers[d.Worker]++
	}
	hosts := map[string]bool{}
	for w := range workers {
		_, host, _ := strings.Cut(w, "@")
		hosts[host] = true
	}
	t.Logf("TIMING nodes script: sbatch -> job end %v; results per worker %v; NodeList %s",
		endSeen.Sub(t0).Round(time.Millisecond), workers, recs[0]["NodeList"])
	assert.Len(t, workers, nodes, "one worker per node must have run tasks: %v", workers)
	assert.Len(t, hosts, nodes, "the workers' Slurm nodes: %v", hosts)
	l := readLogs(t, filepath.Join(s.dir, job+".out"))[job+".out"]
	assert.Equal(t, nodes, strings.Count(l, "(--max-idle): stopping"), "both workers leave by --max-idle:\n%s", testharness.Tail(l, 30))
	assert.Contains(t, l, "srun exited 0")
}
