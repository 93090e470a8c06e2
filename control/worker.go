package control

import (
	"errors"
	"time"

	"github.com/ccworker/ccworker/prefetch"
)

// Worker is what the mailbox needs from the worker. Every method is called on the mailbox
// goroutine and must return promptly (take a snapshot; never wait for a task or the pool).
type Worker interface {
	// ActiveTasks lists the tasks executing now.
	ActiveTasks() []TaskInfo
	// ReservedTasks lists the tasks received (prefetched) but not started, ETA tasks excluded.
	ReservedTasks() []TaskInfo
	// ScheduledTasks lists the ETA/countdown tasks waiting for their time.
	ScheduledTasks() []ScheduledTask
	// Registered lists the registered tasks (all of them; the mailbox filters celery.* and sorts).
	Registered() []TaskMeta
	// Queues lists the task queues consumed now, in -Q order (the first one is what
	// cyberCommons advertises).
	Queues() []QueueInfo
	// Stats returns the worker's counters for the `stats` reply.
	Stats() Stats
	// Revoke is told that ids were revoked (the mailbox has already added them to the
	// Revoked set). With terminate, it stops the running executions of those ids with
	// signal (a name such as "SIGTERM"/"SIGKILL"; a Go worker cancels the task's context)
	// and returns the ids it terminated.
	Revoke(ids []string, terminate bool, signal string) (terminated []string)
	// AddConsumer starts consuming from a queue (add_consumer); it may work asynchronously.
	AddConsumer(q AddConsumer) error
	// CancelConsumer stops consuming from a queue (cancel_consumer).
	CancelConsumer(queue string) error
	// SetTimeLimit changes a task's limits in seconds (0 = none); ErrUnknownTask if unknown.
	SetTimeLimit(task string, soft, hard float64) error
	// SetRateLimit changes a task's rate limit ("" = none; "10/s", "5/m", "100/h", "2.5");
	// ErrUnknownTask if unknown. The mailbox validates the syntax first.
	SetRateLimit(task, rate string) error
	// Shutdown starts a warm shutdown (remote `shutdown`) and returns at once.
	Shutdown(reason string)
	// Conf returns the worker's settings for `conf`: JSON-safe values (strings, numbers,
	// bools, nil, lists, maps), passwords already redacted (URL passwords are masked again
	// by the mailbox as a safety net).
	Conf() map[string]any
}

// ErrUnknownTask is returned by SetTimeLimit/SetRateLimit for a task name not registered.
var ErrUnknownTask = errors.New("unknown task")

// TaskInfo mirrors celery.worker.request.Request.info().
type TaskInfo struct {
	ID         string
	Name       string
	Args       []any          // decoded positional arguments (sent with safe=False, the default)
	Kwargs     map[string]any // decoded keyword arguments
	ArgsRepr   string         // Python repr of args (the message's argsrepr); sent with safe=True
	KwargsRepr string
	Hostname   string    // the node name that received it
	TimeStart  time.Time // zero until it started
	// Acknowledged: the message has been acked (early ack: at start; acks_late: at the end).
	Acknowledged bool
	Delivery     DeliveryInfo
	WorkerPID    int // 0 = null (not running)
}

// DeliveryInfo is Request.delivery_info.
type DeliveryInfo struct {
	Exchange    string
	RoutingKey  string
	Priority    int // -1 = null
	Redelivered bool
}

// ScheduledTask is one entry of the `scheduled` reply.
type ScheduledTask struct {
	ETA      time.Time
	Priority int // Celery's timer priority (6 for ETA tasks; 0 is fine)
	Request  TaskInfo
}

// TaskMeta describes one registered task for `registered`.
type TaskMeta struct {
	Name string
	// Attrs holds the task attributes a client may ask for with taskinfoitems (Celery's
	// defaults are exchange, routing_key, rate_limit; cyberCommons asks for __doc__). Only
	// attributes that are set belong here; a missing __doc__ is reported as None.
	Attrs map[string]string
}

// QueueInfo is a consumed queue, replied in kombu's Queue.as_dict(recurse=True) shape.
type QueueInfo struct {
	Name            string
	Exchange        string // "" = the default exchange
	ExchangeType    string // "direct" when empty
	ExchangeDurable bool
	RoutingKey      string
	Durable         bool
	Exclusive       bool
	AutoDelete      bool
	QueueArguments  map[string]any // x-max-priority, x-queue-type, ... (nil = null)
	Expires         float64        // seconds; 0 = null
	MessageTTL      float64
	MaxLength       int
	MaxLengthBytes  int
	MaxPriority     int
}

// QueueFromPrefetch converts the consumer's queue description.
func QueueFromPrefetch(q prefetch.Queue) QueueInfo {
	qi := QueueInfo{
		Name: q.Name, Exchange: q.Exchange, ExchangeType: q.ExchangeType, ExchangeDurable: q.Durable,
		RoutingKey: q.RoutingKey, Durable: q.Durable, Exclusive: q.Exclusive, AutoDelete: q.AutoDelete,
	}
	if len(q.Args) > 0 {
		qi.QueueArguments = map[string]any{}
		for k, v := range q.Args {
			qi.QueueArguments[k] = v
			switch k {
			case "x-max-priority":
				qi.MaxPriority = toInt(v)
			case "x-max-length":
				qi.MaxLength = toInt(v)
			case "x-max-length-bytes":
				qi.MaxLengthBytes = toInt(v)
			case "x-expires":
				qi.Expires = float64(toInt(v)) / 1000
			case "x-message-ttl":
				qi.MessageTTL = float64(toInt(v)) / 1000
			}
		}
	}
	return qi
}

// AddConsumer holds add_consumer's arguments.
type AddConsumer struct {
	Queue        string
	Exchange     string // "" = same as Queue (Celery's default)
	ExchangeType string // "direct" when empty
	RoutingKey   string // "" = same as Queue
	Options      map[string]any
}

// Stats is the worker's part of the `stats` reply; pid, clock and rusage are added by the
// mailbox.
type Stats struct {
	Total         map[string]int64 // tasks accepted, by name
	Uptime        time.Duration    // 0 = since the Mailbox was created
	Pool          PoolStats
	Broker        BrokerStats
	PrefetchCount int
}

// PoolStats is stats()["pool"].
type PoolStats struct {
	MaxConcurrency   int
	Processes        []int   // Celery lists child pids; ccworker has one process: its own pid
	MaxTasksPerChild any     // nil = "N/A"
	SoftTimeLimit    float64 // 0 = none
	HardTimeLimit    float64
}

// BrokerStats is stats()["broker"] (kombu Connection.info()), without the password.
type BrokerStats struct {
	Hostname         string
	UserID           string
	VirtualHost      string
	Port             int
	SSL              bool
	ConnectTimeout   float64
	Heartbeat        float64
	LoginMethod      string
	URIPrefix        string
	FailoverStrategy string
	TransportOptions map[string]any
	Alternates       []string // other broker URLs, passwords masked
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int8:
		return int(n)
	case int16:
		return int(n)
	case int32:
		return int(n)
	case int64:
		return int(n)
	case uint8:
		return int(n)
	case uint16:
		return int(n)
	case uint32:
		return int(n)
	case uint64:
		return int(n)
	case float64:
		return int(n)
	case float32:
		return int(n)
	}
	return 0
}
