package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccworker/ccworker/internal/testharness"
)

// sizeScale multiplies every end-to-end load: `go test -bench E2E ./bench/ -args -size-scale 0.1`
// for a smoke run. At 1 each load gives ccworker about 20 s of work on a quiet 2-core machine.
var sizeScale = flag.Float64("size-scale", 1, "multiply the end-to-end load sizes")

func scaled(n int) int { return max(int(float64(n)**sizeScale), 100) }

// queueMonitor is scripts/queue_monitor.sh running: a read-only loop inside the RabbitMQ node
// that reports when the queue's load started to leave it and when the last message was acked,
// on the host's clock, at most one poll (~10 ms) late.
type queueMonitor struct {
	cmd    *exec.Cmd
	out    testharness.Buffer
	exited chan struct{}
}

type monitorResult struct {
	started, end time.Time
	endBound     time.Duration // how late end can be (the last ack came after the poll before)
}

// startMonitor starts the monitor and waits until it polls. It fails (and the caller falls back
// to polling over AMQP) where rabbitmqctl cannot be run. The monitor may start before the queue
// is declared or filled.
func startMonitor(queue string, timeout time.Duration) (*queueMonitor, error) {
	root, err := testharness.RepoRoot()
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(os.TempDir(), fmt.Sprintf("ccw_bench_monitor_%d_%s", os.Getpid(), queue))
	_ = os.Remove(ready)
	m := &queueMonitor{exited: make(chan struct{}), cmd: exec.Command(filepath.Join(root, "scripts", "queue_monitor.sh"),
		queue, ready, strconv.Itoa(int(timeout.Seconds())))}
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.out
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	deadline := time.After(time.Minute)
	for {
		if _, err := os.Stat(ready); err == nil {
			_ = os.Remove(ready)
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("queue monitor: %s", strings.TrimSpace(m.out.String()))
		case <-deadline:
			m.kill()
			return nil, errors.New("queue monitor did not start in a minute")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *queueMonitor) kill() {
	_ = m.cmd.Process.Kill()
	<-m.exited
}

// result waits for the monitor's line.
func (m *queueMonitor) result(ctx context.Context) (monitorResult, error) {
	select {
	case <-ctx.Done():
		m.kill()
		return monitorResult{}, ctx.Err()
	case <-m.exited:
	}
	f := strings.Fields(m.out.String())
	if len(f) != 7 || f[0] != "done" {
		return monitorResult{}, fmt.Errorf("queue monitor: %q", m.out.String())
	}
	us := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return monitorResult{started: time.UnixMicro(us(f[2])), end: time.UnixMicro(us(f[3])),
		endBound: time.Duration(us(f[6])) * time.Microsecond}, nil
}

// cpuSampler samples cumulative CPU seconds (utime+stime, plus cutime+cstime of reaped
// children) of process groups every interval, to read a group's CPU over any window.
type cpuSampler struct {
	groups map[string][]int // name -> root pids (each with its descendants)
	mu     sync.Mutex
	times  []time.Time
	vals   []map[string]float64
	peak   map[string]int64 // highest summed RSS bytes
	stop   chan struct{}
	done   chan struct{}
}

// serviceGroups are the broker and store processes serving the benchmarks' ports.
func serviceGroups() map[string][]int {
	g := map[string][]int{}
	for name, ports := range map[string][]int{"broker": {5672}, "store": {27017, 5432}} {
		for _, p := range ports {
			if pid := listenerPID(p); pid > 0 {
				g[name] = append(g[name], pid)
			}
		}
	}
	return g
}

func newCPUSampler(groups map[string][]int, every time.Duration) *cpuSampler {
	s := &cpuSampler{groups: groups, peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				s.sample()
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *cpuSampler) Stop() { close(s.stop); <-s.done }

func (s *cpuSampler) sample() {
	now := time.Now()
	v := map[string]float64{}
	for name, roots := range s.groups {
		var rss int64
		for _, r := range roots {
			for _, pid := range descendants(r) {
				cpu, mem, ok := procCPU(pid)
				if ok {
					v[name] += cpu
					rss += mem
				}
			}
		}
		s.mu.Lock()
		s.peak[name] = max(s.peak[name], rss)
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.times, s.vals = append(s.times, now), append(s.vals, v)
	s.mu.Unlock()
}

// at returns the group's cumulative CPU seconds at t, linear between the samples around it.
func (s *cpuSampler) at(name string, t time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(s.times); i++ {
		a, b := s.times[i-1], s.times[i]
		if !t.After(b) {
			if t.Before(a) {
				return s.vals[i-1][name]
			}
			w := float64(t.Sub(a)) / float64(max(b.Sub(a), 1))
			return s.vals[i-1][name] + w*(s.vals[i][name]-s.vals[i-1][name])
		}
	}
	return s.vals[len(s.vals)-1][name]
}

func (s *cpuSampler) between(name string, a, b time.Time) float64 {
	return s.at(name, b) - s.at(name, a)
}

func (s *cpuSampler) peakRSS(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[name]
}

const clkTck = 100 // USER_HZ on Linux

// procCPU returns a process's CPU seconds including its reaped children, and its RSS bytes.
func procCPU(pid int) (cpu float64, rss int64, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 22 {
		return 0, 0, false
	}
	var ticks int64
	for _, x := range f[11:15] {
		n, _ := strconv.ParseInt(x, 10, 64)
		ticks += n
	}
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	return float64(ticks) / clkTck, pages * int64(os.Getpagesize()), true
}

// descendants returns pid and its descendants (from /proc/<pid>/task/*/children).
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", out[i]))
		for _, t := range tasks {
			data, _ := os.ReadFile(t)
			for _, c := range strings.Fields(string(data)) {
				if n, err := strconv.Atoi(c); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// listenerPID returns the pid listening on 127.0.0.1:port (via ss), or 0.
func listenerPID(port int) int {
	out, err := exec.Command("ss", "-ltnpH", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(out), "pid=")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
	return n
}

// costs reports the cost metrics of a window of n tasks: CPU s per 1,000 tasks of the
// worker, the broker and the store.
func reportCosts(b *testing.B, s *cpuSampler, a, z time.Time, n int) {
	k := 1000 / float64(n)
	b.ReportMetric(s.between("worker", a, z)*k, "cpu-s/1k")
	b.ReportMetric(s.between("broker", a, z)*k, "broker-cpu-s/1k")
	b.ReportMetric(s.between("store", a, z)*k, "store-cpu-s/1k")
}
