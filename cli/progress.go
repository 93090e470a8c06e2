package cli

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress reports how many of total tasks are done: on a terminal one line rewritten in
// place (at most 10 times a second) with rate and ETA; otherwise a plain line every
// interval (2 s), so logs of batch jobs stay readable.
type progress struct {
	w        io.Writer
	total    int
	tty      bool
	interval time.Duration
	start    time.Time
	last     time.Time
	now      func() time.Time
	printed  bool
}

func newProgress(w io.Writer, total int, tty bool) *progress {
	p := &progress{w: w, total: total, tty: tty, interval: 2 * time.Second, now: time.Now}
	if tty {
		p.interval = 100 * time.Millisecond
	}
	p.start = p.now()
	p.last = p.start
	return p
}

// isTerminal reports whether f is a character device (a terminal), without x/term.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// line formats the progress: "  120/1000 done (12.0%), 3 failed, 40.0 tasks/s, ETA 22s".
func (p *progress) line(done, failed int) string {
	elapsed := p.now().Sub(p.start)
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	eta := "?"
	if done >= p.total {
		eta = "0s"
	} else if rate > 0 {
		eta = (time.Duration(float64(p.total-done)/rate*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
	}
	s := fmt.Sprintf("%d/%d done (%.1f%%)", done, p.total, pct)
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s + fmt.Sprintf(", %.1f tasks/s, elapsed %s, ETA %s", rate, elapsed.Truncate(100*time.Millisecond), eta)
}

// update prints the progress if the interval has passed.
func (p *progress) update(done, failed int) {
	now := p.now()
	if now.Sub(p.last) < p.interval {
		return
	}
	p.last = now
	p.emit(done, failed)
}

func (p *progress) emit(done, failed int) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(done, failed))
	} else {
		fmt.Fprintln(p.w, p.line(done, failed))
	}
	p.printed = true
}

// finish prints the final line (and ends the terminal line).
func (p *progress) finish(done, failed int) {
	p.emit(done, failed)
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
