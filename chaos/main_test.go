// Package chaos holds ccworker's fault and TLS tests (issue #7). They run the real binary
// against a private RabbitMQ node (chaos@localhost, AMQP 5680, TLS 5681) and private FerretDB
// processes (27030 PostgreSQL backend, 27031 TLS on SQLite), started and stopped by
// scripts/chaos/*.sh, never the shared services on 5672 / 27017.
//
// They are skipped unless CCWORKER_CHAOS=1 (`make chaos` sets it), so `make test` (./...)
// does not run them.
package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/taskload"
	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/prefetch"
)

const (
	amqpPort      = 5680
	amqpTLSPort   = 5681
	mongoPort     = 27030 // FerretDB, PostgreSQL backend (the outage scenario kills it)
	mongoTLSPort  = 27031 // FerretDB, SQLite backend, TLS with client certificates
	mongoTLSPlain = 27032 // the TLS FerretDB's plain listener (unused by ccworker)
	pgDatabase    = "ccworker_chaos"
)

var (
	repoRoot string
	binary   string
	tlsDir   string
	workDir  string

	summaryMu sync.Mutex
	summary   []summaryRow
)

// ccworkerBrokerURL is kombu's spelling of vhost "/" (what ccworker reads); amqpGoURL is
// amqp091's.
var (
	ccworkerBrokerURL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d//", amqpPort)
	amqpGoURL         = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%%2F", amqpPort)
	mongoURL          = fmt.Sprintf("mongodb://127.0.0.1:%d/", mongoPort)
)

func TestMain(m *testing.M) {
	if os.Getenv("CCWORKER_CHAOS") != "1" {
		fmt.Println("chaos: skipped (CCWORKER_CHAOS=1 runs them; `make chaos` sets it)")
		os.Exit(0)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	var err error
	if repoRoot, err = testharness.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Logs and certificates: the RabbitMQ node reads the PEM files in it.
	var done func(int)
	if workDir, done, err = testharness.LogDir("chaos", os.Getenv("CCWORKER_CHAOS_KEEP") == "1"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { done(code) }()
	t0 := time.Now()
	var remove func()
	if binary, remove, err = testharness.BuildRelease(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	tlsDir = filepath.Join(workDir, "tls")
	if err := writeCertificates(tlsDir); err != nil {
		fmt.Fprintln(os.Stderr, "certificates:", err)
		return 1
	}
	// Whatever a killed or timed-out run left behind (pid files of its RabbitMQ node,
	// FerretDB and ccworker processes) is stopped first; then a watchdog outside this
	// process cleans up after this run however it ends, kill -9 included.
	if out, err := script("cleanup.sh"); err != nil {
		fmt.Fprintf(os.Stderr, "cleanup of an earlier run: %v\n%s", err, out)
		return 1
	} else if strings.TrimSpace(out) != "" {
		fmt.Printf("chaos: stopped what an earlier run left behind:\n%s", out)
	}
	if err := startWatchdog(); err != nil {
		fmt.Fprintln(os.Stderr, "watchdog:", err)
		return 1
	}
	cleanups := []func(){}
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	if out, err := script("rmq.sh", "start"); err != nil {
		fmt.Fprintf(os.Stderr, "private RabbitMQ: %v\n%s", err, out)
		return 1
	}
	cleanups = append(cleanups, func() { _, _ = script("rmq.sh", "stop") })
	if out, err := script("ferretdb.sh", "createdb", pgDatabase); err != nil {
		fmt.Fprintf(os.Stderr, "createdb: %v\n%s", err, out)
		return 1
	}
	if err := startMongo(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cleanups = append(cleanups, func() { _, _ = script("ferretdb.sh", "stop", "pg") })
	sqliteDir := filepath.Join(workDir, "sqlite") + "/"
	_ = os.MkdirAll(sqliteDir, 0o755)
	if out, err := script("ferretdb.sh", "start", "tls", "--handler=sqlite", "--sqlite-url=file:"+sqliteDir,
		fmt.Sprintf("--listen-addr=127.0.0.1:%d", mongoTLSPlain), fmt.Sprintf("--listen-tls=127.0.0.1:%d", mongoTLSPort),
		"--listen-tls-cert-file="+filepath.Join(tlsDir, "server.pem"), "--listen-tls-key-file="+filepath.Join(tlsDir, "server.key"),
		"--listen-tls-ca-file="+filepath.Join(tlsDir, "ca.pem"), "--debug-addr=127.0.0.1:0"); err != nil {
		fmt.Fprintf(os.Stderr, "TLS FerretDB: %v\n%s", err, out)
		return 1
	}
	cleanups = append(cleanups, func() { _, _ = script("ferretdb.sh", "stop", "tls") })
	fmt.Printf("chaos: binary built, certificates written, private RabbitMQ and FerretDB up in %.1f s\n", time.Since(t0).Seconds())

	code = m.Run()
	printSummary()
	return code
}

// startMongo starts (or restarts, after a kill) the PostgreSQL-backed FerretDB on 27030.
func startMongo() error {
	out, err := script("ferretdb.sh", "start", "pg", "--handler=postgresql",
		"--postgresql-url=postgres://postgres@127.0.0.1:5432/"+pgDatabase,
		fmt.Sprintf("--listen-addr=127.0.0.1:%d", mongoPort), "--debug-addr=127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("FerretDB (pg): %v\n%s", err, out)
	}
	return nil
}

// chaosState is scripts/chaos/env.sh's $CHAOS_STATE.
func chaosState() string {
	if d := os.Getenv("CHAOS_STATE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "ccworker", "chaos")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "ccworker", "chaos")
}

// startWatchdog starts scripts/chaos/watchdog.sh in a session of its own: when this test
// binary is gone, however it ended, it runs cleanup.sh.
func startWatchdog() error {
	if err := os.MkdirAll(filepath.Join(chaosState(), "workers"), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(chaosState(), "watchdog.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "chaos", "watchdog.sh"), strconv.Itoa(os.Getpid()))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// script runs scripts/chaos/NAME with args (CHAOS_TLS_DIR tells rmq.sh to open 5681).
func script(name string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot, "scripts", "chaos", name)}, args...)...)
	cmd.Env = append(os.Environ(), "CHAOS_TLS_DIR="+tlsDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ---------------------------------------------------------------- worker processes

// ledger counts what the workers' logs say happened, across every worker of a scenario:
// the task lines (taskload.Ledger), and the other lines by message and warning.
type ledger struct {
	*taskload.Ledger
	mu       sync.Mutex
	warnings []warning      // WARN and ERROR lines, task failures excepted
	messages map[string]int // every other line's message -> count (INFO included)
}

type warning struct {
	at     time.Time
	worker string
	line   taskload.LogLine
}

func newLedger() *ledger {
	return &ledger{Ledger: taskload.NewLedger(), messages: map[string]int{}}
}

func (l *ledger) add(worker string, ll taskload.LogLine) {
	if _, ev := l.Add(ll.Msg); ev != taskload.NoEvent {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.messages[ll.Msg]++
	switch ll.Level {
	case "warn", "error", "dpanic", "panic", "fatal":
		l.warnings = append(l.warnings, warning{at: time.Now(), worker: worker, line: ll})
	}
}

func (l *ledger) warningsBetween(from, to time.Time) []warning {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []warning
	for _, w := range l.warnings {
		if !w.at.Before(from) && !w.at.After(to) {
			out = append(out, w)
		}
	}
	return out
}

func (l *ledger) sawMessage(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.messages[msg] > 0
}

type rssSample struct {
	at time.Time
	kb int64
}

// proc is one running ccworker: its log (file, output and ledger) and its RSS every 100 ms.
type proc struct {
	*testharness.Logged
	name string

	rssMu sync.Mutex
	rss   []rssSample
}

// startWorker starts ccworker with args; it dies with this test binary, and cleanup.sh
// kills it from its pid file if not.
func startWorker(t *testing.T, name string, led *ledger, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = workDir
	o := testharness.LogOptions{LogPath: filepath.Join(workDir, name+".log"),
		PidDir: filepath.Join(chaosState(), "workers"), PidNote: name}
	if led != nil {
		o.OnLine = func(line []byte) {
			if ll, ok := taskload.ParseLogLine(line); ok {
				led.add(name, ll)
			}
		}
	}
	l, err := testharness.StartLogged(cmd, o)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{Logged: l, name: name}
	go p.sampleRSS()
	t.Cleanup(p.Kill)
	return p
}

func (p *proc) sampleRSS() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.Done():
			return
		case <-tick.C:
			if kb := vmRSS(p.Cmd.Process.Pid); kb > 0 {
				p.rssMu.Lock()
				p.rss = append(p.rss, rssSample{time.Now(), kb})
				p.rssMu.Unlock()
			}
		}
	}
}

// peakRSS is the highest VmRSS sampled in [from, to] (zero times: all), in KiB.
func (p *proc) peakRSS(from, to time.Time) int64 {
	p.rssMu.Lock()
	defer p.rssMu.Unlock()
	var peak int64
	for _, s := range p.rss {
		if (!from.IsZero() && s.at.Before(from)) || (!to.IsZero() && s.at.After(to)) {
			continue
		}
		peak = max(peak, s.kb)
	}
	return peak
}

func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// ---------------------------------------------------------------- summary

type summaryRow struct {
	Scenario         string
	Tasks            int
	FinalDocs        int
	Missing          int
	Wrong            int // a final document with the wrong state
	DupExecuted      int // executions beyond one per (task id, retry step), from the logs
	DupReceived      int // deliveries beyond the expected ones (received lines)
	PeakRSSMiB       float64
	PeakRSSFaultMiB  float64
	WarnLines        int
	FaultSeconds     float64
	RecoverySeconds  float64 // fault end -> every final document present
	WorkerExitedSelf bool
}

func addSummary(r summaryRow) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	summary = append(summary, r)
}

func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) > 0 {
		printFaultSummary()
	}
	if len(tlsRows) > 0 {
		sort.Slice(tlsRows, func(i, j int) bool { return tlsRows[i].name < tlsRows[j].name })
		fmt.Println("TLS misconfigurations (want: exited, code 2, within seconds, cause named, <= 8 warn/error lines)")
		fmt.Printf("%-28s %7s %5s %7s %5s %6s\n", "case", "exited", "code", "secs", "warn", "cause")
		for _, r := range tlsRows {
			fmt.Printf("%-28s %7v %5d %7.1f %5d %6d\n", r.name, r.exited, r.code, r.seconds, r.warnLines, r.causeLines)
		}
		fmt.Println()
	}
}

func printFaultSummary() {
	fmt.Println()
	fmt.Println("chaos summary (duplicates: executions beyond one per task id and retry step, from the workers' logs)")
	fmt.Printf("%-18s %6s %6s %7s %5s %8s %9s %9s %10s %5s %7s %8s %8s\n",
		"scenario", "tasks", "final", "missing", "wrong", "dup-exec", "dup-recv", "peakRSS", "RSS@fault", "warn", "fault-s", "recover", "exited")
	for _, r := range summary {
		fmt.Printf("%-18s %6d %6d %7d %5d %8d %9d %7.1fMi %8.1fMi %5d %7.1f %7.1fs %8v\n",
			r.Scenario, r.Tasks, r.FinalDocs, r.Missing, r.Wrong, r.DupExecuted, r.DupReceived, r.PeakRSSMiB,
			r.PeakRSSFaultMiB, r.WarnLines, r.FaultSeconds, r.RecoverySeconds, r.WorkerExitedSelf)
	}
	fmt.Println()
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// freshQueue deletes queue (and the queues in also) and declares it again as Celery does;
// the connection is closed at the end of the test.
func freshQueue(t *testing.T, queue string, also ...string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(amqpGoURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if ch, err := conn.Channel(); err == nil {
		for _, q := range append([]string{queue}, also...) {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		_ = ch.Close()
	}
	if err := prefetch.Declare(conn, []prefetch.Queue{prefetch.CeleryQueue(queue, 0)}); err != nil {
		t.Fatal(err)
	}
	return conn
}

// freshResults connects to the PostgreSQL-backed FerretDB with co and returns the result
// collection of database db, dropped first (a failed earlier run keeps its own) and again
// at the end of a test that passed.
func freshResults(t *testing.T, db string, co *options.ClientOptions) *mongo.Collection {
	t.Helper()
	client, err := mongo.Connect(co.ApplyURI(mongoURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := ctxTimeout(time.Minute)
		defer cancel()
		if !t.Failed() {
			_ = client.Database(db).Drop(ctx)
		}
		_ = client.Disconnect(ctx)
	})
	ctx, cancel := ctxTimeout(time.Minute)
	defer cancel()
	_ = client.Database(db).Drop(ctx)
	return client.Database(db).Collection("celery_taskmeta")
}
