package bench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ccworker/ccworker/internal/testharness"
	"github.com/ccworker/ccworker/protocol"
)

var (
	soakTasks   = flag.Int("soak-tasks", 1_000_000, "tasks BenchmarkSoak pushes through one worker")
	soakBacklog = flag.Int("soak-backlog", 2000, "BenchmarkSoak keeps at most this many tasks waiting in the queue")
)

// soakMix is the load's mix, by task sequence number.
func soakMix(i int) (task string, args []any) {
	switch i % 4 {
	case 0, 1:
		return "ccworker.noop", []any{}
	case 2:
		return "ccworker.add", []any{int64(i), int64(1)}
	default:
		return "ccworker.sleep", []any{0.001}
	}
}

// BenchmarkSoak: -soak-tasks mixed tasks (noop, add, sleep(1 ms)) through one worker
// (-c 512, results on), published while it runs with at most -soak-backlog waiting, so the
// worker is saturated the whole time. Every 250 ms it records the worker's RSS; at the end
// every task must have a SUCCESS document (nothing lost), and from the documents' date_done
// it derives throughput and latency (publish -> result durable, which includes up to
// backlog/throughput of queueing) per second. Writes bench/out/soak.csv and bench/soak.svg and
// reports the RSS growth from the 10 % mark to the end (target < 5 %) and the throughput
// change from the second to the ninth tenth of the tasks (target within 10 %).
func BenchmarkSoak(b *testing.B) {
	bin := ccworkerBinary(b)
	e := newEnv(b)
	n := *soakTasks
	coll := e.db.Collection("celery_taskmeta")
	p := testharness.Start(b, exec.Command(bin, "-b", e.amqpURL, "-Q", e.queue, "-c", "512", "-n", "soak@%h", "-l", "WARNING", "--builtin-tasks",
		"--without-heartbeat", "--result-backend", strings.TrimSuffix(e.mongoURL, "/")+"/"+e.db.Name()))
	defer p.Stop(b)
	pid := p.Cmd.Process.Pid

	type rssSample struct {
		at  time.Time
		rss int64
	}
	var rss []rssSample
	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	go func() {
		defer close(rssDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		if _, r, ok := procCPU(pid); ok {
			rss = append(rss, rssSample{time.Now(), r})
		}
		for {
			select {
			case <-stopRSS:
				return
			case now := <-t.C:
				if _, r, ok := procCPU(pid); ok {
					rss = append(rss, rssSample{now, r})
				}
			}
		}
	}()

	b.ResetTimer()
	sent := e.publishPaced(b, n, *soakBacklog)
	// The end: nothing ready or unacked (acks follow durable results), read inside the
	// broker. Not by counting the store's documents: on FerretDB that scans the
	// collection (18 s at 200,000), loading the store while the worker writes to it.
	waitDrained(b, e.queue, 30*time.Minute)
	b.StopTimer()
	close(stopRSS)
	<-rssDone

	start := time.Now()
	done := soakDocs(b, coll, n)
	b.Logf("read back %d result documents in %v", n, time.Since(start).Round(time.Second))
	series := soakSeries(done, sent)
	// RSS at t: the highest sample of the 10 s before t (the garbage collector's sawtooth
	// would make single samples compare its phases, not the memory kept).
	rssAt := func(t time.Time) int64 {
		var v int64
		for _, s := range rss {
			if s.at.After(t) {
				break
			}
			if s.at.After(t.Add(-10 * time.Second)) {
				v = max(v, s.rss)
			}
		}
		return v
	}
	for i := range series {
		series[i].rss = rssAt(series[i].at)
	}
	writeSoak(b, series)

	// Throughput of the second and the ninth tenth of the completions (by count: the first
	// has the start, the last the drain); RSS at the 10 % mark and at the end.
	byDone := slices.SortedFunc(func(yield func(time.Time) bool) {
		for _, t := range done {
			if !yield(t) {
				return
			}
		}
	}, func(a, c time.Time) int { return a.Compare(c) })
	tenth := n / 10
	first := float64(tenth) / byDone[2*tenth].Sub(byDone[tenth]).Seconds()
	last := float64(tenth) / byDone[9*tenth].Sub(byDone[8*tenth]).Seconds()
	r10, r100 := rssAt(byDone[tenth]), rssAt(byDone[n-1])
	b.ReportMetric(float64(n)/byDone[n-1].Sub(byDone[0]).Seconds(), "tasks/s")
	b.ReportMetric((last/first-1)*100, "throughput-change-%")
	b.ReportMetric(float64(r10)/(1<<20), "RSS-at-10%-MB")
	b.ReportMetric(float64(r100)/(1<<20), "RSS-at-end-MB")
	b.ReportMetric((float64(r100)/float64(max(r10, 1))-1)*100, "RSS-growth-%")
	b.ReportMetric(0, "ns/op")
}

// publishPaced publishes n soak tasks, keeping at most backlog ready in the queue, and
// returns each task's publish time by sequence number.
func (e *env) publishPaced(b *testing.B, n, backlog int) []time.Time {
	ch, confirms := e.confirmChannel(b, 1000)
	defer ch.Close()
	sent := make([]time.Time, n)
	const batch = 500
	for i := 0; i < n; {
		if q, err := ch.QueueDeclarePassive(e.queue, true, false, false, false, nil); err == nil && q.Messages+batch > backlog {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		k := min(batch, n-i)
		for j := i; j < i+k; j++ {
			task, args := soakMix(j)
			id := fmt.Sprintf("soak-%08d", j)
			sent[j] = time.Now()
			publishOne(b, ch, e.queue, &protocol.Request{ID: id, Task: task, Args: args, Kwargs: map[string]any{}, RootID: id})
		}
		awaitConfirms(b, confirms, k)
		i += k
	}
	return sent
}

// soakDocs reads every result document, checks it is a SUCCESS of a published task, and
// returns the date_done of each task by sequence number.
func soakDocs(b *testing.B, coll *mongo.Collection, n int) []time.Time {
	ctx := context.Background()
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "date_done", Value: 1}, {Key: "status", Value: 1}}))
	if err != nil {
		b.Fatal(err)
	}
	defer cur.Close(ctx)
	done := make([]time.Time, n)
	seen := 0
	for cur.Next(ctx) {
		var d struct {
			ID       string        `bson:"_id"`
			Status   string        `bson:"status"`
			DateDone bson.DateTime `bson:"date_done"`
		}
		if err := cur.Decode(&d); err != nil {
			b.Fatal(err)
		}
		var i int
		if _, err := fmt.Sscanf(d.ID, "soak-%08d", &i); err != nil || i < 0 || i >= n || !done[i].IsZero() {
			b.Fatalf("unexpected result document %q", d.ID)
		}
		if d.Status != "SUCCESS" {
			b.Fatalf("task %s: %s", d.ID, d.Status)
		}
		done[i] = d.DateDone.Time()
		seen++
	}
	if err := cur.Err(); err != nil {
		b.Fatal(err)
	}
	if seen != n {
		b.Fatalf("%d of %d tasks have a result: %d lost", seen, n, n-seen)
	}
	return done
}

// soakPoint is one second of the soak.
type soakPoint struct {
	at       time.Time
	done     int
	p50, p99 time.Duration
	rss      int64
}

// soakSeries buckets completions by second of date_done, with the latency percentiles of
// each second's tasks.
func soakSeries(done, sent []time.Time) []soakPoint {
	t0 := slices.MinFunc(done, func(a, c time.Time) int { return a.Compare(c) }).Truncate(time.Second)
	buckets := map[int][]time.Duration{}
	last := 0
	for i, t := range done {
		k := int(t.Sub(t0) / time.Second)
		buckets[k] = append(buckets[k], t.Sub(sent[i]))
		last = max(last, k)
	}
	out := make([]soakPoint, 0, last+1)
	for k := 0; k <= last; k++ {
		lat := buckets[k]
		pt := soakPoint{at: t0.Add(time.Duration(k+1) * time.Second), done: len(lat)}
		if len(lat) > 0 {
			slices.Sort(lat)
			pt.p50, pt.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
		}
		out = append(out, pt)
	}
	return out
}

// writeSoak writes bench/out/soak.csv and the plot bench/soak.svg (three panels over time:
// tasks/s, RSS MiB, latency p50/p99 ms).
func writeSoak(b *testing.B, series []soakPoint) {
	root, err := testharness.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("second,tasks_per_s,rss_mib,p50_ms,p99_ms\n")
	for i, p := range series {
		fmt.Fprintf(&csv, "%d,%d,%.1f,%.1f,%.1f\n", i+1, p.done, float64(p.rss)/(1<<20),
			float64(p.p50.Microseconds())/1000, float64(p.p99.Microseconds())/1000)
	}
	_ = os.MkdirAll(filepath.Join(root, "bench", "out"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "bench", "out", "soak.csv"), []byte(csv.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	panels := []struct {
		title string
		lines [][]float64
		color []string
	}{
		{"tasks/s", [][]float64{pick(series, func(p soakPoint) float64 { return float64(p.done) })}, []string{"#2b7a78"}},
		{"RSS MiB", [][]float64{pick(series, func(p soakPoint) float64 { return float64(p.rss) / (1 << 20) })}, []string{"#c9a227"}},
		{"latency ms (p50, p99), publish -> result stored", [][]float64{
			pick(series, func(p soakPoint) float64 { return float64(p.p50.Microseconds()) / 1000 }),
			pick(series, func(p soakPoint) float64 { return float64(p.p99.Microseconds()) / 1000 })},
			[]string{"#2b7a78", "#b5403a"}},
	}
	const w, ph, left, top = 720, 150, 60, 30
	var svg strings.Builder
	fmt.Fprintf(&svg, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n",
		w+left+20, len(panels)*(ph+top+20)+30)
	for i, pn := range panels {
		y0 := i*(ph+top+20) + top
		vmax := 0.0
		for _, l := range pn.lines {
			for _, v := range l {
				vmax = math.Max(vmax, v)
			}
		}
		vmax = math.Max(vmax*1.1, 1e-9)
		fmt.Fprintf(&svg, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, y0-8, pn.title)
		fmt.Fprintf(&svg, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`+"\n", left, y0, w, ph)
		fmt.Fprintf(&svg, `<text x="%d" y="%d" text-anchor="end">%.0f</text><text x="%d" y="%d" text-anchor="end">0</text>`+"\n",
			left-4, y0+10, vmax, left-4, y0+ph)
		for j, l := range pn.lines {
			var pts strings.Builder
			for k, v := range l {
				x := float64(left) + float64(w)*float64(k)/math.Max(float64(len(l)-1), 1)
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, float64(y0+ph)-float64(ph)*v/vmax)
			}
			fmt.Fprintf(&svg, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>`+"\n", pn.color[j], pts.String())
		}
	}
	fmt.Fprintf(&svg, `<text x="%d" y="%d">seconds: 0 .. %d</text>`+"\n", left, len(panels)*(ph+top+20)+20, len(series))
	svg.WriteString("</svg>\n")
	if err := os.WriteFile(filepath.Join(root, "bench", "soak.svg"), []byte(svg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

func pick(series []soakPoint, f func(soakPoint) float64) []float64 {
	out := make([]float64, len(series))
	for i, p := range series {
		out[i] = f(p)
	}
	return out
}

// waitDrained waits until queue has no ready and no unacked message, asking RabbitMQ once
// a second (rabbitmqctl: the unacked count is not visible over AMQP).
func waitDrained(b *testing.B, queue string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged").Output()
		if err != nil {
			b.Fatalf("rabbitmqctl list_queues: %v", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == queue && f[1] == "0" && f[2] == "0" {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("queue %s not drained in %v", queue, timeout)
		}
		time.Sleep(time.Second)
	}
}
