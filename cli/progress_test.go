package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestProgressPlainLinesEveryInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	p := newProgress(&buf, 100, false)
	p.now = func() time.Time { return now }
	p.start, p.last = now, now
	now = now.Add(time.Second)
	p.update(10, 0) // within 2 s: nothing
	assert.Empty(t, buf.String())
	now = now.Add(1500 * time.Millisecond)
	p.update(25, 1)
	assert.Equal(t, "25/100 done (25.0%), 1 failed, 10.0 tasks/s, elapsed 2.5s, ETA 8s\n", buf.String())
	now = now.Add(7500 * time.Millisecond)
	p.finish(100, 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	assert.Len(t, lines, 2)
	assert.Equal(t, "100/100 done (100.0%), 1 failed, 10.0 tasks/s, elapsed 10s, ETA 0s", lines[1])
}

func TestProgressTerminalRewritesOneLine(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	p := newProgress(&buf, 10, true)
	p.now = func() time.Time { return now }
	p.start, p.last = now, now
	now = now.Add(200 * time.Millisecond)
	p.update(2, 0)
	now = now.Add(50 * time.Millisecond)
	p.update(3, 0) // under 100 ms since the last: skipped
	now = now.Add(100 * time.Millisecond)
	p.finish(10, 0)
	out := buf.String()
	assert.Equal(t, 2, strings.Count(out, "\r\033[K"))
	assert.Contains(t, out, "2/10 done (20.0%), 10.0 tasks/s, elapsed 200ms, ETA 1s")
	assert.True(t, strings.HasSuffix(out, "ETA 0s\n"))
	assert.NotContains(t, out, "3/10")
}

func TestIsTerminalOnAFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	assert.NoError(t, err)
	defer f.Close()
	assert.False(t, isTerminal(f))
}
