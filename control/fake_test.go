package control

import (
	"sync"
	"time"

	"github.com/ccworker/ccworker/prefetch"
)

// fakeWorker is a Worker with canned data that records the commands it gets.
type fakeWorker struct {
	mu         sync.Mutex
	active     []TaskInfo
	reserved   []TaskInfo
	scheduled  []ScheduledTask
	queues     []QueueInfo
	revokes    [][]string
	terminated []string
	added      []AddConsumer
	cancelled  []string
	shutdowns  []string
	timeLimits map[string][2]float64
	rates      map[string]string
}

func newFakeWorker(node string) *fakeWorker {
	start := time.Date(2024, 5, 1, 12, 0, 0, 500000000, time.UTC)
	return &fakeWorker{
		active: []TaskInfo{{ID: "act-1", Name: "ccworker.sleep", Args: []any{int64(5)}, Kwargs: map[string]any{},
			ArgsRepr: "(5,)", KwargsRepr: "{}", Hostname: node, TimeStart: start, Acknowledged: true,
			Delivery: DeliveryInfo{Exchange: "", RoutingKey: "celery", Priority: 0}, WorkerPID: pid}},
		reserved: []TaskInfo{{ID: "res-1", Name: "ccworker.add", Args: []any{int64(1), int64(2)}, Hostname: node,
			Delivery: DeliveryInfo{RoutingKey: "celery", Priority: -1}}},
		scheduled: []ScheduledTask{{ETA: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Priority: 6,
			Request: TaskInfo{ID: "eta-1", Name: "ccworker.noop", Hostname: node, Delivery: DeliveryInfo{Priority: -1}}}},
		queues:     []QueueInfo{QueueFromPrefetch(prefetch.CeleryQueue("celery", 0))},
		timeLimits: map[string][2]float64{}, rates: map[string]string{},
	}
}

func (f *fakeWorker) ActiveTasks() []TaskInfo   { f.mu.Lock(); defer f.mu.Unlock(); return f.active }
func (f *fakeWorker) ReservedTasks() []TaskInfo { f.mu.Lock(); defer f.mu.Unlock(); return f.reserved }
func (f *fakeWorker) ScheduledTasks() []ScheduledTask {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scheduled
}
func (f *fakeWorker) Registered() []TaskMeta {
	return []TaskMeta{
		{Name: "ccworker.sleep", Attrs: map[string]string{"__doc__": "Sleep for n seconds."}},
		{Name: "celery.chord_unlock"},
		{Name: "ccworker.add", Attrs: map[string]string{"rate_limit": "10/s"}},
		{Name: "ccworker.noop"},
	}
}
func (f *fakeWorker) Queues() []QueueInfo { f.mu.Lock(); defer f.mu.Unlock(); return f.queues }
func (f *fakeWorker) Stats() Stats {
	return Stats{Total: map[string]int64{"ccworker.add": 3}, Pool: PoolStats{MaxConcurrency: 4},
		Broker: BrokerStats{Hostname: "127.0.0.1", UserID: "guest", VirtualHost: "/", Port: 5672,
			Alternates: []string{"amqp://u:secret@h2//"}}, PrefetchCount: 16}
}
func (f *fakeWorker) Revoke(ids []string, terminate bool, signal string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes = append(f.revokes, ids)
	if !terminate {
		return nil
	}
	var out []string
	for _, id := range ids {
		for _, t := range f.active {
			if t.ID == id {
				out = append(out, id)
				f.terminated = append(f.terminated, id+":"+signal)
			}
		}
	}
	return out
}
func (f *fakeWorker) AddConsumer(q AddConsumer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, q)
	return nil
}
func (f *fakeWorker) CancelConsumer(q string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, q)
	return nil
}
func (f *fakeWorker) SetTimeLimit(task string, soft, hard float64) error {
	if task != "ccworker.add" {
		return ErrUnknownTask
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timeLimits[task] = [2]float64{soft, hard}
	return nil
}
func (f *fakeWorker) SetRateLimit(task, rate string) error {
	if task != "ccworker.add" {
		return ErrUnknownTask
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rates[task] = rate
	return nil
}
func (f *fakeWorker) Shutdown(reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns = append(f.shutdowns, reason)
}
func (f *fakeWorker) Conf() map[string]any {
	return map[string]any{"broker_url": "amqp://guest:guest@127.0.0.1:5672//", "worker_concurrency": 4,
		"__secret": 1, "mongodb_backend_settings": map[string]any{"password": "pw", "database": "d"}}
}

func (f *fakeWorker) snapshot() (revokes [][]string, terminated []string, added []AddConsumer, cancelled, shutdowns []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.revokes...), append([]string(nil), f.terminated...),
		append([]AddConsumer(nil), f.added...), append([]string(nil), f.cancelled...), append([]string(nil), f.shutdowns...)
}
