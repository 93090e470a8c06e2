package metrics

import (
	"context"
	"io"
	"net/http"
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

type fakeWorker struct{ s worker.Stats }

func (f *fakeWorker) Counters() *worker.Stats { return &f.s }
func (f *fakeWorker) Running() []string       { return []string{"a", "b"} }
func (f *fakeWorker) Stats() control.Stats {
	return control.Stats{Total: map[string]int64{"ccworker.add": 5, "ccworker.sleep": 2},
		Pool: control.PoolStats{MaxConcurrency: 512}}
}

type fakeResults struct{}

func (fakeResults) Stats() results.Stats {
	return results.Stats{Batches: 3, Docs: 7, Replaced: 1, LastFlush: 250 * time.Millisecond, Queued: 4}
}

func TestScrapeOverARealListener(t *testing.T) {
	w := &fakeWorker{}
	w.s.Received.Store(7)
	w.s.Succeeded.Store(4)
	w.s.Failed.Store(1)
	w.s.Retried.Store(1)
	w.s.Revoked.Store(1)
	reg, err := NewRegistry(NewCollector(w, fakeResults{}, "celery@test", "1.2.3"))
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
		`ccworker_tasks_total{state="received"} 7`,
		`ccworker_tasks_total{state="succeeded"} 4`,
		`ccworker_tasks_total{state="failed"} 1`,
		`ccworker_tasks_total{state="retried"} 1`,
		`ccworker_tasks_total{state="revoked"} 1`,
		`ccworker_tasks_total{state="rejected"} 0`,
		`ccworker_tasks_received_by_name_total{task="ccworker.add"} 5`,
		`ccworker_tasks_received_by_name_total{task="ccworker.sleep"} 2`,
		`# TYPE ccworker_tasks_running gauge`,
		`ccworker_tasks_running 2`,
		`ccworker_pool_capacity 512`,
		`ccworker_result_batches_total 3`,
		`ccworker_result_documents_total 7`,
		`ccworker_result_replaced_total 1`,
		`ccworker_result_last_flush_seconds 0.25`,
		`ccworker_result_queued 4`,
		`ccworker_info{node="celery@test",version="1.2.3"} 1`,
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		assert.Contains(t, body, want)
	}
	// Pull model: a later scrape sees the counters as they are now.
	w.s.Succeeded.Add(10)
	assert.Contains(t, scrape(), `ccworker_tasks_total{state="succeeded"} 14`)
}

func TestNoResultBackendLeavesResultFamiliesOut(t *testing.T) {
	reg, err := NewRegistry(NewCollector(&fakeWorker{}, nil, "n", "v"))
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
