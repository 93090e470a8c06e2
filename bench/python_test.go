package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccworker/ccworker/internal/testenv"
	"github.com/ccworker/ccworker/internal/testharness"
)

// BenchmarkPythonPool runs the same trivial Python task (mylib.tasks.add, from
// tasks/python/testdata/pylib) on ccworker's Python pool and on a real
// `celery worker -P prefork -c 2`, with the same concurrency, results on, the same broker
// and result store, in one run. Each worker starts on pythonLoad pre-published messages
// (celery_client.py load --publish-only); the clock runs from its start to the last stored
// result (celery_client.py wait). Reported: tasks/s of each and ccworker/celery.
//
//	go test -run '^$' -bench PythonPool -benchtime 1x ./bench/
func BenchmarkPythonPool(b *testing.B) {
	const python = testharness.Python
	const pythonLoad = 5000 // enough that the children's start-up (~0.5 s) does not dominate
	amqpURL, mongoURL := testenv.AMQPURL(b), testenv.MongoURL(b)
	if err := testharness.CheckCelery(); err != nil {
		b.Skip(err)
	}
	bin := ccworkerBinary(b)
	lib, err := filepath.Abs("../tasks/python/testdata/pylib")
	if err != nil {
		b.Fatal(err)
	}

	rate := func(b *testing.B, name string, worker func(dir, config, queue string) *exec.Cmd) float64 {
		queue := testenv.Name(b, "pybench-"+name)
		db := testenv.Database(b)
		dir := b.TempDir()
		config := filepath.Join(dir, "celeryconfig.py")
		text := fmt.Sprintf(`broker_url = %q
result_backend = %q
mongodb_backend_settings = {'database': %q, 'taskmeta_collection': 'celery_taskmeta'}
task_default_queue = %q
imports = ('mylib.tasks',)
worker_send_task_events = False
`, amqpURL, mongoURL, db.Name(), queue)
		if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		c := testharness.Client{Broker: amqpURL, Backend: mongoURL, Database: db.Name(), Collection: "celery_taskmeta", Queue: queue}
		client := func(args ...string) string {
			out, stderr, code, err := c.Run(context.Background(), args...)
			if err != nil || code != 0 {
				b.Fatalf("celery_client.py %s: exit %d, %v\n%s%s", args[0], code, err, out, stderr)
			}
			return out
		}
		ids := filepath.Join(dir, "ids")
		client("load", "--task", "mylib.tasks.add", "--n", strconv.Itoa(pythonLoad), "--args", "[1, 2]",
			"--publish-only", "--ids-file", ids)
		b.Cleanup(func() {
			_ = exec.Command(python, testharness.ClientScript(), "--broker", amqpURL, "--queue", queue, "drain", "--n", "0", "--timeout", "0").Run()
		})

		cmd := worker(dir, config, queue)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PYTHONPATH="+lib)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()
		res := client("wait", "--ids-file", ids, "--t0", fmt.Sprintf("%.6f", float64(t0.UnixNano())/1e9),
			"--timeout", "300")
		lines := strings.Split(strings.TrimSpace(res), "\n")
		var s struct {
			DonePerS *float64 `json:"done_per_s"`
			AllDone  bool     `json:"all_done"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || !s.AllDone || s.DonePerS == nil {
			b.Fatalf("%s: not all done (%v): %s\n%s", name, err, res, out.String())
		}
		return *s.DonePerS
	}

	b.ResetTimer()
	ccw := rate(b, "ccworker", func(dir, config, queue string) *exec.Cmd {
		return exec.Command(bin, "--config", config, "-Q", queue, "-P", "prefork", "-c", "2",
			"-l", "WARNING", "--log-tasks=false", "--without-heartbeat", "--python", python,
			"--early-ack") // Celery's default task_acks_late=False, as the celery worker runs
	})
	cel := rate(b, "celery", func(dir, config, queue string) *exec.Cmd {
		return exec.Command(python, "-m", "celery", "worker", "-P", "prefork", "-c", "2", "-Q", queue,
			"-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat")
	})
	b.StopTimer()
	b.ReportMetric(ccw, "ccworker-tasks/s")
	b.ReportMetric(cel, "celery-tasks/s")
	b.ReportMetric(ccw/cel, "ratio")
	b.ReportMetric(0, "ns/op")
}
