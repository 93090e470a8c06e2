package worker

import (
	"testing"
	"time"
)

// An idle worker must not wake for the ack guard: with nothing in flight the guard parks
// (its ticker stopped) until a delivery arrives, and parks again once the tasks are gone.
func TestAckGuardParksWhileNothingInFlight(t *testing.T) {
	w, err := New(Config{Concurrency: 1, AckGuard: 100 * time.Millisecond}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.guardParked = make(chan struct{})
	ended := make(chan struct{})
	done := make(chan struct{})
	go func() { w.guardAcks(ended); close(done) }()
	defer func() { close(ended); <-done }()
	parked := func(what string) {
		t.Helper()
		select {
		case <-w.guardParked:
		case <-time.After(10 * time.Second): // a hang, not a speed check
			t.Fatalf("the ack guard did not park %s", what)
		}
	}
	parked("at start")

	tk := &task{w: w, received: time.Now()}
	w.mu.Lock()
	w.inflight[tk] = true
	w.mu.Unlock()
	w.arrived <- struct{}{}
	w.mu.Lock()
	delete(w.inflight, tk)
	w.mu.Unlock()
	parked("once the task was gone")
}
