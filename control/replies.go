package control

import (
	"net/url"
	"os"
	"strconv"
	"strings"
)

// dict is TaskInfo as Request.info(safe) returns it.
func (t TaskInfo) dict(safe bool) map[string]any {
	var args, kwargs any
	if safe {
		args, kwargs = t.ArgsRepr, t.KwargsRepr
	} else {
		args, kwargs = t.Args, t.Kwargs
		if t.Args == nil {
			args = []any{}
		}
		if t.Kwargs == nil {
			kwargs = map[string]any{}
		}
	}
	var start, pid any
	if !t.TimeStart.IsZero() {
		start = unixFloat(t.TimeStart)
	}
	if t.WorkerPID != 0 {
		pid = t.WorkerPID
	}
	var prio any
	if t.Delivery.Priority >= 0 {
		prio = t.Delivery.Priority
	}
	return map[string]any{
		"id": t.ID, "name": t.Name, "args": args, "kwargs": kwargs, "type": t.Name,
		"hostname": t.Hostname, "time_start": start, "acknowledged": t.Acknowledged,
		"delivery_info": map[string]any{
			"exchange": t.Delivery.Exchange, "routing_key": t.Delivery.RoutingKey,
			"priority": prio, "redelivered": t.Delivery.Redelivered,
		},
		"worker_pid": pid,
	}
}

func (s ScheduledTask) dict() map[string]any {
	var eta any
	if !s.ETA.IsZero() {
		eta = pyISO(s.ETA)
	}
	return map[string]any{"eta": eta, "priority": s.Priority, "request": s.Request.dict(false)}
}

func nullIfZero[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

// dict is kombu's Queue.as_dict(recurse=True).
func (q QueueInfo) dict() map[string]any {
	typ := q.ExchangeType
	if typ == "" {
		typ = "direct"
	}
	durableEx := q.ExchangeDurable
	if q.Exchange == "" {
		durableEx = true
	}
	var qargs any
	if len(q.QueueArguments) > 0 {
		qargs = q.QueueArguments
	}
	return map[string]any{
		"name": q.Name,
		"exchange": map[string]any{
			"name": q.Exchange, "type": typ, "arguments": nil, "durable": durableEx,
			"passive": false, "auto_delete": false, "delivery_mode": nil, "no_declare": false,
		},
		"routing_key": q.RoutingKey, "queue_arguments": qargs, "binding_arguments": nil,
		"consumer_arguments": nil, "durable": q.Durable, "exclusive": q.Exclusive,
		"auto_delete": q.AutoDelete, "no_ack": false, "alias": nil, "bindings": []any{},
		"no_declare": nil, "expires": nullIfZero(q.Expires), "message_ttl": nullIfZero(q.MessageTTL),
		"max_length": nullIfZero(q.MaxLength), "max_length_bytes": nullIfZero(q.MaxLengthBytes),
		"max_priority": nullIfZero(q.MaxPriority),
	}
}

func (s Stats) dict(pid int, clock int64, uptime float64) map[string]any {
	total := map[string]any{}
	for k, v := range s.Total {
		total[k] = v
	}
	procs := s.Pool.Processes
	if procs == nil {
		procs = []int{pid}
	}
	mtpc := s.Pool.MaxTasksPerChild
	if mtpc == nil {
		mtpc = "N/A"
	}
	b := s.Broker
	alts := make([]any, 0, len(b.Alternates))
	for _, a := range b.Alternates {
		alts = append(alts, maskURL(a))
	}
	topts := map[string]any{}
	for k, v := range b.TransportOptions {
		topts[k] = v
	}
	fs := b.FailoverStrategy
	if fs == "" {
		fs = "round-robin"
	}
	var ru any = "N/A"
	if r := rusage(); r != nil {
		ru = r
	}
	return map[string]any{
		"total": total, "pid": pid, "clock": itoa(clock), "uptime": int64(uptime + 0.5),
		"pool": map[string]any{
			"max-concurrency": s.Pool.MaxConcurrency, "processes": procs,
			"max-tasks-per-child": mtpc, "put-guarded-by-semaphore": false,
			"timeouts": []any{s.Pool.SoftTimeLimit, s.Pool.HardTimeLimit},
		},
		"broker": map[string]any{
			"hostname": b.Hostname, "userid": b.UserID, "virtual_host": b.VirtualHost,
			"port": b.Port, "insist": false, "ssl": b.SSL, "transport": "amqp",
			"connect_timeout": b.ConnectTimeout, "transport_options": topts,
			"login_method": nullIfZero(b.LoginMethod), "uri_prefix": nullIfZero(b.URIPrefix),
			"heartbeat": b.Heartbeat, "failover_strategy": fs, "alternates": alts,
		},
		"prefetch_count": s.PrefetchCount,
		"rusage":         ru,
	}
}

// maskURL replaces a URL's password with "**" (kombu's as_uri(include_password=False) style).
func maskURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "**")
	return strings.Replace(u.String(), "%2A%2A", "**", 1)
}

var sensitiveKey = []string{"password", "secret", "passwd", "token", "credential"}

// sanitizeConf drops dunder keys (Celery's _wanted_config_key), masks URL passwords and
// hides values of keys that look secret.
func sanitizeConf(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if strings.HasPrefix(k, "__") {
			continue
		}
		lk := strings.ToLower(k)
		secret := false
		for _, s := range sensitiveKey {
			if strings.Contains(lk, s) {
				secret = true
			}
		}
		if secret && v != nil && v != "" {
			out[k] = "********"
			continue
		}
		out[k] = sanitizeValue(v)
	}
	return out
}

func sanitizeValue(v any) any {
	switch x := v.(type) {
	case string:
		return maskURL(x)
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = maskURL(s)
		}
		return l
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = sanitizeValue(e)
		}
		return l
	case map[string]any:
		return sanitizeConf(x)
	}
	return v
}

var pid = os.Getpid()

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
