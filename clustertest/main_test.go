// Package clustertest runs ccworker against a private 3-node RabbitMQ cluster on loopback
// (issue #13): quorum queues, the broker URL list on every connection, and what a worker
// fleet sees when a node crashes, is down at start, or the cluster is restarted node by
// node. The nodes (cc1..cc3@localhost, AMQP 5691-5693) are started once for all scenarios
// by scripts/cluster/rmq.sh and stopped at the end; `make cluster` also stops them when
// the test binary is killed or times out, and the next start stops a stale cluster.
// Results go to the shared MongoDB-wire server (CCWORKER_TEST_MONGO_URL, 27017), a fresh
// database per scenario.
//
// Skipped unless CCWORKER_CLUSTER=1 (`make cluster` sets it), so `make test` does not run
// them.
package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccworker/ccworker/internal/testharness"
)

const nodes = 3

var (
	repoRoot string
	binary   string
	workDir  string
	mongoURL string

	summaryMu sync.Mutex
	summary   []row
)

// nodeURL is node n's AMQP URL (kombu's spelling of vhost "/"), n = 1..3.
func nodeURL(n int) string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d//", 5690+n) }

// urls lists the nodes' URLs in the given order.
func urls(order ...int) []string {
	var out []string
	for _, n := range order {
		out = append(out, nodeURL(n))
	}
	return out
}

func TestMain(m *testing.M) {
	if os.Getenv("CCWORKER_CLUSTER") != "1" {
		fmt.Println("clustertest: skipped (CCWORKER_CLUSTER=1 runs them; `make cluster` sets it)")
		os.Exit(0)
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	var err error
	if repoRoot, err = testharness.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mongoURL = os.Getenv("CCWORKER_TEST_MONGO_URL")
	if mongoURL == "" {
		mongoURL = "mongodb://127.0.0.1:27017/"
	}
	keep := os.Getenv("CCWORKER_CLUSTER_KEEP") == "1"
	var done func(int)
	if workDir, done, err = testharness.LogDir("clustertest", keep); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { done(code) }()
	t0 := time.Now()
	var remove func()
	if binary, remove, err = testharness.Build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	// Forming a cluster is the slow part (tens of seconds): one for every scenario.
	if out, err := rmq("start"); err != nil {
		fmt.Fprintf(os.Stderr, "private RabbitMQ cluster: %v\n%s", err, out)
		_, _ = rmq("stop")
		return 1
	}
	if !keep {
		defer func() { _, _ = rmq("stop") }()
	}
	fmt.Printf("clustertest: binary built and a %d-node cluster formed in %.1f s\n", nodes, time.Since(t0).Seconds())
	code = m.Run()
	printSummary()
	return code
}

// rmq runs scripts/cluster/rmq.sh with args.
func rmq(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot, "scripts", "cluster", "rmq.sh")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// row is one scenario's line in the summary.
type row struct {
	Scenario    string
	Published   int     // tasks confirmed by the broker
	Republished int     // publishes repeated after a lost confirm (the client's share of duplicates)
	FinalDocs   int     // ids with a SUCCESS/FAILURE document
	Missing     int     // published ids without one
	Stranded    int     // messages the broker held in a delay queue until its leader was moved (stranded_test.go)
	Wrong       int     // documents with the wrong state or result
	DupExecuted int     // finished executions beyond one per (id, retry step)
	Consumed    float64 // seconds from the fault until tasks were received again
	EventsBack  float64 // seconds from the fault until a worker event arrived again
	InspectBack float64 // seconds from the fault until inspect ping answered again
	Seconds     float64 // the scenario's wall time
}

func addSummary(r row) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	summary = append(summary, r)
}

func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nclustertest summary (5,000 mixed tasks each at ~250/s, 10 %% countdown 1-20 s, quorum queue, -c 32)\n")
	fmt.Fprintf(&b, "%-28s %9s %7s %7s %7s %8s %5s %5s %9s %7s %8s %6s\n", "scenario", "published", "repub", "final",
		"missing", "stranded", "wrong", "dups", "consumed", "events", "inspect", "wall")
	for _, r := range summary {
		fmt.Fprintf(&b, "%-28s %9d %7d %7d %7d %8d %5d %5d %8.1fs %6.1fs %7.1fs %5.0fs\n", r.Scenario, r.Published,
			r.Republished, r.FinalDocs, r.Missing, r.Stranded, r.Wrong, r.DupExecuted, r.Consumed, r.EventsBack, r.InspectBack, r.Seconds)
	}
	fmt.Print(b.String())
}
