package bench

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccworker/ccworker/internal/testharness"
)

var idleFor = flag.Duration("idle-for", 60*time.Second, "how long BenchmarkIdle watches the idle worker")

// BenchmarkIdle: a worker with an empty queue, as a fleet's idle workers run (results on, the
// broker heartbeat at its default, Celery's 2 s worker-heartbeat sent; "task-events" adds -E).
// After a 5 s settle it watches the process for -idle-for and reports
//
//	core-%           CPU used, in % of one core (target < 0.05), from schedstat (ns resolution)
//	cpu-s/idle-hour  the same scaled to an hour
//	wakeups/s        times any of its threads was scheduled (/proc/<pid>/task/*/schedstat)
func BenchmarkIdle(b *testing.B) {
	b.Run("default", func(b *testing.B) { runIdle(b) })
	b.Run("task-events", func(b *testing.B) { runIdle(b, "-E") })
}

func runIdle(b *testing.B, flags ...string) {
	bin := ccworkerBinary(b)
	e := newEnv(b)
	args := append([]string{"-b", e.amqpURL, "-Q", e.queue, "-c", "512", "-n", "idle@%h", "-l", "WARNING",
		"--result-backend", strings.TrimSuffix(e.mongoURL, "/") + "/" + e.db.Name()}, flags...)
	cmd := exec.Command(bin, args...)
	p := testharness.Start(b, cmd)
	defer p.Stop(b)
	time.Sleep(5 * time.Second) // connected, consuming, start-up garbage collected
	pid := cmd.Process.Pid
	cpu0, runs0 := schedStat(pid)
	b.ResetTimer()
	time.Sleep(*idleFor)
	b.StopTimer()
	cpu1, runs1 := schedStat(pid)
	secs := idleFor.Seconds()
	b.ReportMetric((cpu1-cpu0).Seconds()/secs*100, "core-%")
	b.ReportMetric((cpu1-cpu0).Seconds()/secs*3600, "cpu-s/idle-hour")
	b.ReportMetric(float64(runs1-runs0)/secs, "wakeups/s")
	b.ReportMetric(0, "ns/op")
}

// schedStat sums, over the process's threads, the CPU time (ns resolution, unlike the
// 10 ms ticks of /proc/<pid>/stat) and the run counts (timeslices) of
// /proc/<pid>/task/*/schedstat.
func schedStat(pid int) (cpu time.Duration, runs int64) {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(data)); len(fs) == 3 {
			ns, _ := strconv.ParseInt(fs[0], 10, 64)
			n, _ := strconv.ParseInt(fs[2], 10, 64)
			cpu += time.Duration(ns)
			runs += n
		}
	}
	return cpu, runs
}
