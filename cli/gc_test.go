package cli

import (
	"runtime/debug"
	"testing"
)

// The worker runs at GOGC=200 unless GOGC is set: then Go's own setting stands.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	tuneGC(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != workerGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, workerGCPercent)
	}
	tuneGC(func(k string) string {
		if k == "GOGC" {
			return "100"
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC=100 set: GC percent %d, want it left at 100", got)
	}
}
