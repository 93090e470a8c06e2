package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRateLimiterSpacesTasks(t *testing.T) {
	r := newRateLimiter(0, map[string]float64{"slow": 2})
	now := time.Now()
	require.Zero(t, r.reserve("slow", now))
	require.Equal(t, 500*time.Millisecond, r.reserve("slow", now))
	require.Equal(t, time.Second, r.reserve("slow", now))
	require.Zero(t, r.reserve("free", now), "no limit, no default")
	// Idle time does not bank turns: capacity 1.
	later := now.Add(10 * time.Second)
	require.Zero(t, r.reserve("slow", later))
	require.Equal(t, 500*time.Millisecond, r.reserve("slow", later))

	r.set("slow", 0)
	require.Zero(t, r.reserve("slow", later))
	d := newRateLimiter(10, nil)
	d.reserve("any", now)
	require.Equal(t, 100*time.Millisecond, d.reserve("any", now), "task_default_rate_limit")
}
