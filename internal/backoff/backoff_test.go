package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayGrowsWithinBounds(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; attempt <= 20; attempt++ {
		want := p.Min << min(attempt-1, 10)
		want = min(want, p.Max)
		for range 200 {
			d := p.Delay(attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestDelayIsJittered(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[p.Delay(3)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 delays took only %d distinct values: no jitter", len(seen))
	}
}

func TestZeroPolicyUsesDefaults(t *testing.T) {
	var p Policy
	if d := p.Delay(1); d < DefaultMin/2 || d > DefaultMin {
		t.Fatalf("first delay %v, want within [%v, %v]", d, DefaultMin/2, DefaultMin)
	}
	if d := p.Delay(1000); d < DefaultMax/2 || d > DefaultMax {
		t.Fatalf("capped delay %v, want within [%v, %v]", d, DefaultMax/2, DefaultMax)
	}
	// Max below Min: Min wins rather than a negative range.
	p = Policy{Min: time.Second, Max: time.Millisecond}
	if d := p.Delay(5); d < 500*time.Millisecond || d > time.Second {
		t.Fatalf("Max < Min: delay %v", d)
	}
}

func TestBackoffCountsAndResets(t *testing.T) {
	b := New(Policy{Min: 10 * time.Millisecond, Max: time.Second})
	for i := 1; i <= 5; i++ {
		d := b.Next()
		if want := 10 * time.Millisecond << (i - 1); d < want/2 || d > want {
			t.Fatalf("attempt %d: %v, want within [%v, %v]", i, d, want/2, want)
		}
	}
	if b.Attempts() != 5 {
		t.Fatalf("Attempts = %d, want 5", b.Attempts())
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after Reset: %v, want at most Min", d)
	}
}

func TestWaitReturnsWhenContextEnds(t *testing.T) {
	b := New(Policy{Min: time.Hour, Max: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}
