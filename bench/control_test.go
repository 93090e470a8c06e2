package bench

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccworker/ccworker/control"
	"github.com/ccworker/ccworker/protocol"
)

// BenchmarkControlUnderLoad (issue #15, item 5): remote control and worker heartbeats while
// the task connection is saturated. Every task of the backlog has two link callbacks of
// 8 KiB, so the worker publishes twice as many messages as it consumes, on its task
// connection, each confirmed; rabbitmqctl is asked once a second whether RabbitMQ's credit
// flow holds that connection back (the share of samples in state "flow"). Meanwhile a
// control client pings the worker every 250 ms, and a listener records the gaps between
// its worker-heartbeat events (sent every 2 s). Events and remote control share the
// worker's second connection: this measures what keeping them off the task connection buys.
func BenchmarkControlUnderLoad(b *testing.B) {
	bin := ccworkerBinary(b)
	e := newEnv(b)
	n := scaled(20000)
	node := "flowbench@" + e.queue
	// Two callbacks of 8 KiB each: the worker publishes 16 KiB for every task it takes.
	cb := map[string]any{"task": "ccworker.echo", "args": []any{strings.Repeat("x", 8<<10)}, "kwargs": map[string]any{},
		"options": map[string]any{"queue": e.queue}, "subtask_type": nil, "immutable": true}
	cbs := []any{cb, cb}
	callbacks := len(cbs)
	e.publishBacklog(b, n, func(i int) *protocol.Request {
		id := fmt.Sprintf("%s-%08d", e.queue, i)
		return &protocol.Request{ID: id, RootID: id, Task: "ccworker.noop", Args: []any{}, Kwargs: map[string]any{},
			IgnoreResult: true, Callbacks: cbs}
	})

	beats := listenHeartbeats(b, e, node)
	ctl := control.NewClient(e.conn, control.ClientOptions{})
	defer ctl.Close()

	cmd := exec.Command(bin, "-b", e.amqpURL, "-Q", e.queue, "-c", "512", "-n", node, "-l", "WARNING",
		"--builtin-tasks", "--max-idle", "3s")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	// The worker answers pings before it consumes: the first answered one starts the clock.
	ping := func(timeout time.Duration) bool {
		r, err := ctl.Broadcast(context.Background(), "ping", nil, []string{node}, timeout, 1)
		return err == nil && len(r) == 1
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ping(time.Second) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the worker did not answer a ping in 30 s\n%s", out.String())
		}
	}
	start := time.Now()

	flow := startFlowSampler(node)
	type pingResult struct {
		sent time.Time
		rtt  time.Duration
		ok   bool
	}
	var pings []pingResult
	for done := false; !done; {
		select {
		case err := <-exited:
			exited <- err
			done = true
			continue
		default:
		}
		t0 := time.Now()
		ok := ping(5 * time.Second)
		pings = append(pings, pingResult{t0, time.Since(t0), ok})
		time.Sleep(250 * time.Millisecond)
	}
	end := time.Now().Add(-3 * time.Second) // --max-idle: the worker left 3 s after its last task
	// Pings sent after the last task met an idle or stopping worker: not under load.
	var underLoad []time.Duration
	lost := 0
	for _, p := range pings {
		switch {
		case !p.sent.Before(end):
		case p.ok:
			underLoad = append(underLoad, p.rtt)
		default:
			lost++
		}
	}
	inFlow, samples := flow.stop()
	gaps := beats.gapsBetween(start, end)
	if len(underLoad) == 0 {
		b.Fatalf("no ping answered under load (%d lost)\n%s", lost, out.String())
	}
	slices.Sort(underLoad)
	q := func(p float64) float64 {
		return float64(underLoad[int(p*float64(len(underLoad)-1))].Microseconds()) / 1000
	}
	b.Logf("%d tasks and %d callbacks in %.1f s; %d pings under load, %d unanswered in 5 s; task connection in flow in %d of %d samples; %d heartbeats",
		n, callbacks*n, end.Sub(start).Seconds(), len(underLoad), lost, inFlow, samples, len(gaps)+1)
	b.ReportMetric(float64((1+callbacks)*n)/end.Sub(start).Seconds(), "tasks/s")
	b.ReportMetric(q(0.5), "ping-p50-ms")
	b.ReportMetric(q(0.99), "ping-p99-ms")
	b.ReportMetric(q(1), "ping-max-ms")
	b.ReportMetric(float64(lost), "pings-lost")
	if len(gaps) > 0 {
		b.ReportMetric(slices.Max(gaps).Seconds(), "heartbeat-max-gap-s")
	}
	if samples > 0 {
		b.ReportMetric(100*float64(inFlow)/float64(samples), "flow-%")
	}
	b.ReportMetric(0, "ns/op")
}

// heartbeats records when node's worker-heartbeat events arrive.
type heartbeats struct {
	mu sync.Mutex
	at []time.Time
}

func listenHeartbeats(b *testing.B, e *env, node string) *heartbeats {
	ch, err := e.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ch.Close() })
	if err := ch.ExchangeDeclare("celeryev", "topic", true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "worker.heartbeat", "celeryev", false, nil); err != nil {
		b.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := &heartbeats{}
	go func() {
		for d := range msgs {
			if strings.Contains(string(d.Body), `"`+node+`"`) {
				h.mu.Lock()
				h.at = append(h.at, time.Now())
				h.mu.Unlock()
			}
		}
	}()
	return h
}

// gapsBetween returns the gaps between consecutive heartbeats from the one before a to
// the one after z.
func (h *heartbeats) gapsBetween(a, z time.Time) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var gaps []time.Duration
	for i := 1; i < len(h.at); i++ {
		if h.at[i].After(a) && h.at[i-1].Before(z) {
			gaps = append(gaps, h.at[i].Sub(h.at[i-1]))
		}
	}
	return gaps
}

// flowSampler asks rabbitmqctl once a second for the state of the worker's task
// connection (named "ccworker <node>").
type flowSampler struct {
	quit            chan struct{}
	done            chan struct{}
	inFlow, samples int
}

func startFlowSampler(node string) *flowSampler {
	s := &flowSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "state", "client_properties").Output()
			if err == nil {
				for _, line := range strings.Split(string(out), "\n") {
					if strings.Contains(line, `"ccworker `+node+`"`) {
						s.samples++
						if strings.HasPrefix(strings.TrimSpace(line), "flow") {
							s.inFlow++
						}
					}
				}
			}
			select {
			case <-s.quit:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return s
}

func (s *flowSampler) stop() (inFlow, samples int) {
	close(s.quit)
	<-s.done
	return s.inFlow, s.samples
}
