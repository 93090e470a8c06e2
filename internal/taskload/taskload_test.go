package taskload

import (
	"math/rand/v2"
	"testing"

	"github.com/ccworker/ccworker/protocol"
)

func TestRequestMixIsSeeded(t *testing.T) {
	a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	counts := map[Kind]int{}
	for i := range 1000 {
		k1, r1 := Request("q", i, a, "chaos")
		k2, r2 := Request("q", i, b, "chaos")
		if k1 != k2 || r1.Task != r2.Task || r1.ID != "q-"+pad(i) || r1.RootID != r1.ID {
			t.Fatalf("task %d: %v %+v, then %v %+v", i, k1, r1, k2, r2)
		}
		if k1 == Fail && r1.Args[0] != "chaos "+r1.ID {
			t.Errorf("fail argument %v", r1.Args)
		}
		counts[k1]++
	}
	for k, want := range map[Kind]int{Noop: 500, Sleep: 300, Fail: 100, Flaky: 100} {
		if n := counts[k]; n < want*7/10 || n > want*13/10 {
			t.Errorf("kind %d: %d of 1000, want about %d", k, n, want)
		}
	}
}

func pad(i int) string { return ID("", i)[1:] }

func TestPublishing(t *testing.T) {
	msg, err := Publishing(&protocol.Request{ID: "x", Task: "ccworker.noop", Args: []any{}, Kwargs: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if msg.CorrelationId != "x" || msg.DeliveryMode != 2 || msg.Headers["task"] != "ccworker.noop" || len(msg.Body) == 0 {
		t.Errorf("publishing %+v", msg)
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		k    Kind
		d    Doc
		good bool
	}{
		{Noop, Doc{Status: "SUCCESS"}, true},
		{Sleep, Doc{Status: "FAILURE"}, false},
		{Fail, Doc{Status: "FAILURE", Result: map[string]any{"exc_type": "ValueError"}}, true},
		{Fail, Doc{Status: "SUCCESS"}, false},
		{Flaky, Doc{Status: "SUCCESS", Result: int64(1)}, true},
		{Flaky, Doc{Status: "SUCCESS", Result: int64(2)}, false},
	}
	for _, c := range cases {
		if why := Check(c.k, c.d); (why == "") != c.good {
			t.Errorf("Check(%d, %+v) = %q", c.k, c.d, why)
		}
	}
}

func TestLedger(t *testing.T) {
	l := NewLedger()
	for _, line := range []string{
		`{"level":"info","msg":"Task ccworker.flaky[a] received"}`,
		`{"level":"info","msg":"Task ccworker.flaky[a] retry: Retry in 0s"}`,
		`{"level":"info","msg":"Task ccworker.flaky[a] received"}`,
		`{"level":"info","msg":"Task ccworker.flaky[a] succeeded in 0.001s: 1"}`,
		`{"level":"error","msg":"Task ccworker.fail[b] raised unexpected: ValueError('x')"}`,
		`{"level":"error","msg":"Task ccworker.fail[b] raised unexpected: ValueError('x')"}`,
		`{"level":"warn","msg":"broker connection lost; reconnecting","error":"EOF"}`,
		`not json`,
	} {
		ll, ok := ParseLogLine([]byte(line))
		if !ok {
			if line[0] == '{' {
				t.Fatalf("ParseLogLine(%s) failed", line)
			}
			continue
		}
		l.Add(ll.Msg)
	}
	if l.Finished() != 4 || l.Received("a") != 2 || l.Ran("a", Retried) != 1 || l.Ran("a", Done) != 1 ||
		l.Ran("b", Done) != 2 || l.Duplicates() != 1 {
		t.Errorf("finished %d, received a %d, ran a %d/%d, b %d, duplicates %d", l.Finished(), l.Received("a"),
			l.Ran("a", Retried), l.Ran("a", Done), l.Ran("b", Done), l.Duplicates())
	}
	if id, ev := TaskEvent("connected to the broker"); id != "" || ev != NoEvent {
		t.Errorf("TaskEvent of another line: %q %v", id, ev)
	}
}

func TestTrunc(t *testing.T) {
	if Trunc("abcdef", 3) != "abc..." || Trunc("ab", 3) != "ab" {
		t.Error(Trunc("abcdef", 3), Trunc("ab", 3))
	}
}
