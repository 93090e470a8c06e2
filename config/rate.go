package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseRate reads a Celery rate limit ("10/s", "100/m", "1000/h", or a number meaning
// per second; None or "" meaning none) as tasks per second, as celery.utils.time.rate
// does.
func ParseRate(v any) (float64, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case string:
		x = strings.TrimSpace(x)
		if x == "" {
			return 0, nil
		}
		num, unit, found := strings.Cut(x, "/")
		n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: rate %q: want N/s, N/m, N/h or a number", ErrInvalidValue, x)
		}
		if !found {
			return n, nil
		}
		per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(unit)]
		if per == 0 {
			return 0, fmt.Errorf("%w: rate %q: the unit must be s, m or h", ErrInvalidValue, x)
		}
		return n / per.Seconds(), nil
	}
	return 0, fmt.Errorf("%w: rate limit: want a string like '10/s' or a number, got %s", ErrWrongType, typeName(v))
}

// TaskTimeLimits returns the time_limit and soft_time_limit annotations of task (its
// own, else those of "*"), zero when unset.
func (c *Config) TaskTimeLimits(task string) (hard, soft time.Duration) {
	get := func(key string) time.Duration {
		for _, name := range []string{task, "*"} {
			if v, ok := c.TaskAnnotations[name][key]; ok {
				switch x := v.(type) {
				case int64:
					return time.Duration(x) * time.Second
				case float64:
					return time.Duration(x * float64(time.Second))
				}
			}
		}
		return 0
	}
	return get("time_limit"), get("soft_time_limit")
}

// TaskRateLimit returns the rate limit of task in tasks per second (0 = none): its own
// annotation, else "*", else task_default_rate_limit; none when rate limits are off.
func (c *Config) TaskRateLimit(task string) float64 {
	if c.WorkerDisableRateLimits {
		return 0
	}
	for _, name := range []string{task, "*"} {
		if v, ok := c.TaskAnnotations[name]["rate_limit"]; ok {
			r, _ := ParseRate(v) // checked when loading
			return r
		}
	}
	return c.TaskDefaultRateLimit
}

// TaskAnnotationBool returns the boolean annotation key (acks_late, track_started,
// reject_on_worker_lost, ...) of task, its own else that of "*"; nil when unset or not a
// bool.
func (c *Config) TaskAnnotationBool(task, key string) *bool {
	for _, name := range []string{task, "*"} {
		if v, ok := c.TaskAnnotations[name][key]; ok {
			if b, ok := v.(bool); ok {
				return &b
			}
			return nil
		}
	}
	return nil
}
