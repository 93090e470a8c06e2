package worker

import (
	"maps"
	"math"
	"strconv"

	"github.com/ccworker/ccworker/config"
	"github.com/ccworker/ccworker/tasks"
)

// taskAttrs are the attributes of task name as `inspect registered` shows them, each as
// Python's str() of Celery's task attribute; an attribute Celery leaves None is absent.
// The options a task reports (a Python task's own attributes) come first; what this
// worker applies (limits, acks, tracking, ignore_result, also as changed by the
// time_limit and rate_limit commands) overrides them, and a Go or command task gets
// Celery's defaults for the rest.
func (w *Worker) taskAttrs(name string) map[string]string {
	own := w.reg.Options(name)
	attrs := maps.Clone(own.Attrs)
	if attrs == nil { // a Go or command task: Celery's Task defaults
		attrs = map[string]string{"max_retries": strconv.Itoa(tasks.DefaultMaxRetries),
			"default_retry_delay": strconv.Itoa(int(tasks.DefaultRetryDelay.Seconds())),
			"serializer":          "json", "typing": "True", "store_errors_even_if_ignored": pyBool(w.cfg.StoreErrorsEvenIfIgnored)}
	}
	if own.Doc != "" {
		attrs["__doc__"] = own.Doc
	}
	attrs["ignore_result"] = pyBool(w.cfg.IgnoreResult || own.IgnoreResult)
	attrs["acks_late"] = pyBool(!w.acksEarly(name))
	attrs["track_started"] = pyBool(w.tracksStarted(name))
	if own.RejectOnWorkerLost != nil || w.cfg.RejectOnWorkerLost {
		attrs["reject_on_worker_lost"] = pyBool(w.rejectsOnWorkerLost(name))
	} else {
		delete(attrs, "reject_on_worker_lost")
	}
	lim := w.taskLimits(name)
	setSeconds(attrs, "time_limit", lim.Hard.Seconds())
	setSeconds(attrs, "soft_time_limit", lim.Soft.Seconds())
	if r := w.rates.rate(name); r > 0 {
		if have, err := config.ParseRate(attrs["rate_limit"]); err != nil || math.Abs(have-r) > 1e-9*r {
			attrs["rate_limit"] = rateText(r)
		}
	} else {
		delete(attrs, "rate_limit")
	}
	return attrs
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// setSeconds sets attrs[key] to s seconds (absent when 0), keeping the text the task
// reported when it is the same number (Python's str(5.0) is '5.0', str(5) '5').
func setSeconds(attrs map[string]string, key string, s float64) {
	if s <= 0 {
		delete(attrs, key)
		return
	}
	if have, err := strconv.ParseFloat(attrs[key], 64); err == nil && have == s {
		return
	}
	attrs[key] = strconv.FormatFloat(s, 'f', -1, 64)
}

// rateText writes a rate in tasks per second as Celery's rate strings: per second,
// minute or hour, whichever gives a whole number.
func rateText(perSecond float64) string {
	for _, u := range []struct {
		unit string
		mult float64
	}{{"s", 1}, {"m", 60}, {"h", 3600}} {
		n := perSecond * u.mult
		if math.Abs(n-math.Round(n)) < 1e-6 && math.Round(n) >= 1 {
			return strconv.FormatFloat(math.Round(n), 'f', -1, 64) + "/" + u.unit
		}
	}
	return strconv.FormatFloat(perSecond, 'f', -1, 64) + "/s"
}
