package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/worker"
)

// ants (imported through worker → pool) starts its default pool's goroutines at init.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) }

type fakeWorker struct {
	s   worker.Stats
	add worker.TaskCounters
}

func (f *fakeWorker) Counters() *worker.Stats { return &f.s }
func (f *fakeWorker) TaskCounters() map[string]*worker.TaskCounters {
	return map[string]*worker.TaskCounters{"ccworker.add": &f.add}
}
func (f *fakeWorker) Gauges() worker.Gauges { return worker.Gauges{InFlight: 10, Running: 2, Held: 3} }
func (f *fakeWorker) Stats() control.Stats {
	return control.Stats{Pool: control.PoolStats{MaxConcurrency: 512}}
}

type fakeBroker struct{}

func (fakeBroker) Reconnects() map[string]uint64 {
	return map[string]uint64{"connection": 2, "channel": 1}
}

type fakeResults struct{}

func (fakeResults) Stats() results.Stats {
	return results.Stats{Batches: 3, Docs: 7, Replaced: 1, Failures: 2, Refused: 1, LastFlush: 250 * time.Millisecond,
		LastBatch: 5, Queued: 4}
}

func TestScrapeOverARealListener(t *testing.T) {
	w := &fakeWorker{}
	w.add.Received.Store(7)
	w.add.Succeeded.Store(4)
	w.add.Failed.Store(1)
	w.add.Retried.Store(1)
	w.add.Revoked.Store(1)
	w.s.Runtime.Observe(3 * time.Millisecond)
	w.s.Runtime.Observe(2 * time.Second)
	w.s.AckLatency.Observe(20 * time.Millisecond)
	reg, err := NewRegistry(NewCollector(w, fakeResults{}, fakeBroker{}, "celery@test", "1.2.3"))
	require.NoError(t, err)
	srv, err := Start("127.0.0.1:0", reg)
	require.NoError(t, err)
	defer func() { require.NoError(t, srv.Stop(context.Background())) }()

	scrape := func() string {
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`# TYPE ccworker_tasks_total counter`,
		`# TYPE ccworker_tasks_received_total counter`,
		`ccworker_tasks_received_total{task="ccworker.add"} 7`,
		`ccworker_tasks_total{state="succeeded",task="ccworker.add"} 4`,
		`ccworker_tasks_total{state="failed",task="ccworker.add"} 1`,
		`ccworker_tasks_total{state="retried",task="ccworker.add"} 1`,
		`ccworker_tasks_total{state="revoked",task="ccworker.add"} 1`,
		`ccworker_tasks_total{state="rejected",task="ccworker.add"} 0`,
		`# TYPE ccworker_task_runtime_seconds histogram`,
		`ccworker_task_runtime_seconds_bucket{le="0.005"} 1`,
		`ccworker_task_runtime_seconds_bucket{le="5"} 2`,
		`ccworker_task_runtime_seconds_count 2`,
		`ccworker_ack_latency_seconds_bucket{le="0.05"} 1`,
		`# TYPE ccworker_tasks_running gauge`,
		`ccworker_tasks_running 2`,
		`ccworker_tasks_prefetched 5`,
		`ccworker_eta_held 3`,
		`ccworker_pool_capacity 512`,
		`ccworker_result_batches_total 3`,
		`ccworker_result_documents_total 7`,
		`ccworker_result_replaced_total 1`,
		`ccworker_result_write_failures_total 2`,
		`ccworker_result_refused_total 1`,
		`ccworker_result_last_batch_size 5`,
		`ccworker_result_last_flush_seconds 0.25`,
		`ccworker_result_queued 4`,
		`ccworker_broker_reconnects_total{cause="connection"} 2`,
		`ccworker_info{node="celery@test",version="1.2.3"} 1`,
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		assert.Contains(t, body, want)
	}
	assert.NotContains(t, body, `state="received"`, "ccworker_tasks_total holds outcomes only: summing it counts each task once")
	// Pull model: a later scrape sees the counters as they are now.
	w.add.Succeeded.Add(10)
	assert.Contains(t, scrape(), `ccworker_tasks_total{state="succeeded",task="ccworker.add"} 14`)
}

func TestNoResultBackendLeavesResultFamiliesOut(t *testing.T) {
	reg, err := NewRegistry(NewCollector(&fakeWorker{}, nil, nil, "n", "v"))
	require.NoError(t, err)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	all := strings.Join(names, " ")
	assert.Contains(t, all, "ccworker_tasks_total")
	assert.NotContains(t, all, "ccworker_result_")
}

func TestStartReportsABadAddress(t *testing.T) {
	reg, err := NewRegistry()
	require.NoError(t, err)
	_, err = Start("256.0.0.1:bad", reg)
	assert.Error(t, err)
}

// TestPromtoolChecksAScrape runs `promtool check metrics` (Debian's prometheus package;
// `make promtool` fetches it) on a scrape with every family, when promtool is found.
func TestPromtoolChecksAScrape(t *testing.T) {
	promtool := findPromtool()
	if promtool == "" {
		const why = "promtool not found on PATH, in $CCWORKER_PROMTOOL or ~/.cache/ccworker/promtool (make promtool)"
		if os.Getenv("CCWORKER_REQUIRE_TOOLS") == "1" { // make test fetched it: a miss is a failure
			t.Fatal(why)
		}
		t.Skip(why)
	}
	w := &fakeWorker{}
	w.add.Received.Store(1)
	w.s.Runtime.Observe(time.Millisecond)
	reg, err := NewRegistry(NewCollector(w, fakeResults{}, fakeBroker{}, "celery@test", "1.2.3"))
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = rec.Body
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "promtool check metrics found problems")
}

func findPromtool() string {
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	candidates := []string{os.Getenv("CCWORKER_PROMTOOL")}
	if dir, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(dir, "ccworker", "promtool", "promtool"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	return ""
}
