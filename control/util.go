package control

import (
	"math"
	"syscall"
	"time"

	"github.com/ccworker/ccworker/protocol"
)

// pyStr returns Python's repr() of a str.
func pyStr(s string) string { return protocol.Repr(s) }

func pyExc(class, msg string) string { return class + "(" + pyStr(msg) + ")" }

// pyISO formats t like Python's aware datetime.isoformat(): microseconds only when non-zero,
// offset as +HH:MM.
func pyISO(t time.Time) string {
	layout := "2006-01-02T15:04:05"
	if t.Nanosecond()/1000 != 0 {
		layout += ".000000"
	}
	return t.Format(layout + "-07:00")
}

// unixFloat is t as Python's time.time() float.
func unixFloat(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// UTCOffset returns Celery's utcoffset for t in its location: Python's time.timezone // 3600
// (or time.altzone // 3600 under DST), i.e. the hours WEST of UTC, floor-divided. It is 0 on UTC
// hosts, -2 in CEST (UTC+2), 5 in EST (UTC-5), -6 in India (UTC+5:30: -19800 // 3600 = -6),
// 3 in Newfoundland standard time (UTC-3:30: 12600 // 3600 = 3).
func UTCOffset(t time.Time) int {
	_, east := t.Zone()
	west := -east
	return int(math.Floor(float64(west) / 3600))
}

// loadAvg is the load average like celery.utils.sysinfo.load_average (rounded to 2
// places). It comes from sysinfo(2), the kernel's figures behind /proc/loadavg, in one
// system call: reading the file took eight, on every 2 s worker-heartbeat.
func loadAvg() []float64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return []float64{0, 0, 0}
	}
	out := make([]float64, 3)
	for i, l := range si.Loads {
		out[i] = math.Round(float64(l)/(1<<16)*100) / 100 // SI_LOAD_SHIFT
	}
	return out
}

// rusage is the `rusage` block of Celery's stats reply (resource.getrusage(RUSAGE_SELF)).
func rusage() map[string]any {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return nil
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return map[string]any{
		"utime": tv(r.Utime), "stime": tv(r.Stime), "maxrss": int64(r.Maxrss),
		"ixrss": int64(r.Ixrss), "idrss": int64(r.Idrss), "isrss": int64(r.Isrss),
		"minflt": int64(r.Minflt), "majflt": int64(r.Majflt), "nswap": int64(r.Nswap),
		"inblock": int64(r.Inblock), "oublock": int64(r.Oublock), "msgsnd": int64(r.Msgsnd),
		"msgrcv": int64(r.Msgrcv), "nsignals": int64(r.Nsignals), "nvcsw": int64(r.Nvcsw),
		"nivcsw": int64(r.Nivcsw),
	}
}
