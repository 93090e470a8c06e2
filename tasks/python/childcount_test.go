package python

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// liveChildren counts this process's children that have not exited (zombies, which the
// pool reaps, are dead).
func liveChildren(t *testing.T) int {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	self := os.Getpid()
	n := 0
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		i := bytes.LastIndexByte(b, ')')
		fields := bytes.Fields(b[i+1:])
		if len(fields) < 2 || string(fields[0]) == "Z" || string(fields[0]) == "X" {
			continue
		}
		if ppid, _ := strconv.Atoi(string(fields[1])); ppid == self {
			n++
		}
	}
	return n
}

// A child killed at the hard time limit is replaced, and a queued task runs on the
// replacement; at no moment are there more live children, or more busy ones, than
// Processes.
func TestChildrenNeverExceedProcessesAcrossAHardLimitKill(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	p, _ := newPool(t, func(c *Config) { c.Processes = 2 })
	var maxLive, maxBusy, maxKnown atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			for _, m := range []struct {
				max *atomic.Int64
				n   int
			}{{&maxLive, liveChildren(t)}, {&maxBusy, len(p.busyForTest())}, {&maxKnown, len(p.pidsForTest())}} {
				if int64(m.n) > m.max.Load() {
					m.max.Store(int64(m.n))
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	errs := make(chan error, 3)
	go func() {
		// The worker's pool cancels a task's context at its hard limit.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := p.Handler("mylib.tasks.slow")(ctx, call("hard", 30))
		errs <- err
	}()
	go func() { _, err := run(t, p, "mylib.tasks.slow", call("busy", 3)); errs <- err }()
	require.Eventually(t, func() bool { return len(p.busyForTest()) == 2 }, 20*time.Second, 5*time.Millisecond)
	go func() { _, err := run(t, p, "mylib.tasks.add", call("queued", 1, 2)); errs <- err }()

	var got []error
	for range 3 {
		select {
		case err := <-errs:
			got = append(got, err)
		case <-time.After(60 * time.Second):
			t.Fatal("the tasks did not finish")
		}
	}
	close(stop)
	sampler.Wait()
	n := 0
	for _, err := range got {
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			n++
		}
	}
	assert.Equal(t, 1, n, "one task killed at its hard limit: %v", got)
	assert.LessOrEqual(t, maxLive.Load(), int64(2), "live child processes")
	assert.LessOrEqual(t, maxBusy.Load(), int64(2), "busy children")
	assert.LessOrEqual(t, maxKnown.Load(), int64(2), "children the pool counts")
	require.Eventually(t, func() bool { return len(p.pidsForTest()) == 2 && liveChildren(t) == 2 },
		20*time.Second, 10*time.Millisecond, "the pool is back to two children")
}
