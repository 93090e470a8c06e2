package clustertest

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Countdowns and parked tasks wait in the celery_delayed_* levels (or ccworker.delay.*),
// quorum queues that dead-letter at-least-once: a queue's leader runs a dead-letter worker
// that forwards each expired message and removes it once the next queue has confirmed it.
// After a leader failover, RabbitMQ can end up with no such worker running (seen on
// Debian 12's 3.10.8; upstream fixed dead-letter worker races in 3.10.20, #7677, and in
// 2026, #16203): the queue's expired messages stay counted, neither ready nor unacked, and
// move on only when its leader changes again. Those tasks are the broker's to deliver, not
// lost by the worker, so the scenarios tell them apart, move the leader as the runbook in
// docs/cluster.md says, and then require every task.

// strandedQueue is a delay queue holding messages that are neither ready nor unacked.
type strandedQueue struct {
	name     string
	leader   string
	stranded int
}

// strandedDelayQueues lists the delay queues with stranded messages, asking node live.
func strandedDelayQueues(live int) ([]strandedQueue, error) {
	out, err := rmq("ctl", strconv.Itoa(live), "list_queues", "--no-table-headers",
		"name", "messages", "messages_ready", "messages_unacknowledged", "leader")
	if err != nil {
		return nil, fmt.Errorf("list_queues on cc%d: %w\n%s", live, err, out)
	}
	return parseStranded(out), nil
}

// parseStranded reads list_queues' "name messages ready unacked leader" lines.
func parseStranded(out string) []strandedQueue {
	var qs []strandedQueue
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || !isDelayQueue(f[0]) {
			continue
		}
		total, err1 := strconv.Atoi(f[1])
		ready, err2 := strconv.Atoi(f[2])
		unacked, err3 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if n := total - ready - unacked; n > 0 {
			qs = append(qs, strandedQueue{name: f[0], leader: f[4], stranded: n})
		}
	}
	return qs
}

func isDelayQueue(name string) bool {
	return strings.HasPrefix(name, "celery_delayed_") || strings.HasPrefix(name, "ccworker.delay.")
}

// moveLeader hands q's leadership to another member, which starts a dead-letter worker
// of its own: what restarting the leader's node also does, without a failover for the
// clients connected to it.
func moveLeader(live int, q strandedQueue) error {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(q.leader, "cc"), "@localhost"))
	if err != nil {
		return fmt.Errorf("leader %q of %s: not one of ours", q.leader, q.name)
	}
	target := fmt.Sprintf("cc%d@localhost", n%nodes+1)
	expr := fmt.Sprintf(`{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"%s">>)),
{Name, Leader} = amqqueue:get_pid(Q),
ra:transfer_leadership({Name, Leader}, {Name, '%s'}).`, q.name, target)
	out, err := rmq("ctl", strconv.Itoa(live), "eval", expr)
	if err != nil {
		return fmt.Errorf("move the leader of %s to %s: %w\n%s", q.name, target, err, out)
	}
	if s := strings.TrimSpace(out); s != "ok" && s != "already_leader" {
		return fmt.Errorf("move the leader of %s to %s: %s", q.name, target, s)
	}
	return nil
}

func TestParseStranded(t *testing.T) {
	out := "celery_delayed_3\t95\t0\t0\tcc2@localhost\n" +
		"celery_delayed_4\t7\t7\t0\tcc1@localhost\n" + // waiting out its TTL: fine
		"cluster_kill9_0252\t46\t0\t0\tcc1@localhost\n" + // not a delay queue
		"ccworker.delay.q.8s\t5\t1\t1\tcc3@localhost\n" +
		"amq.gen-x\t0\t0\t0\t\n"
	got := parseStranded(out)
	want := []strandedQueue{{"celery_delayed_3", "cc2@localhost", 95}, {"ccworker.delay.q.8s", "cc3@localhost", 3}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseStranded = %+v, want %+v", got, want)
	}
}
