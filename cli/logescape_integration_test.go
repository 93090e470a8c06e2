package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/ccworker/ccworker/prefetch"
	"github.com/ccworker/ccworker/protocol"
)

// TestHostileNamesThroughARealWorker sends every hostile string (hostile()) as a task name,
// inside the task id and as the argument repr to the real binary, in both log formats,
// and checks its output: one line per record, no raw control character, no forged line.
func TestHostileNamesThroughARealWorker(t *testing.T) {
	for _, format := range []string{"console", "json"} {
		t.Run(format, func(t *testing.T) {
			e := newRemoteEnv(t)
			_, logs, done := start(t, e, "ccworker", []string{e.bin, "-b", e.broker, "--result-backend", e.backend,
				"-Q", e.queue, "-n", e.node, "-c", "4", "-l", "DEBUG", "--log-format", format}, nil, t.TempDir())
			e.waitPing(t, done, logs)

			conn, err := amqp.Dial(e.broker)
			require.NoError(t, err)
			defer conn.Close()
			ch, err := conn.Channel()
			require.NoError(t, err)
			bad := hostile()
			for i, s := range bad {
				r := &protocol.Request{ID: fmt.Sprintf("h%02d-%s", i, s), Task: s, Args: []any{s},
					Kwargs: map[string]any{s: s}, ArgsRepr: s, KwargsRepr: s}
				m, err := protocol.EncodeV2(r)
				require.NoError(t, err)
				require.NoError(t, ch.Publish("", e.queue, false, false, amqp.Publishing{Headers: prefetch.Table(m.Headers),
					ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, Body: m.Body}))
			}
			settled := func() bool { return strings.Count(logs.String(), "Received unregistered task") >= len(bad) }
			deadline := time.Now().Add(90 * time.Second)
			for !settled() && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			require.True(t, settled(), "not every hostile message was handled:\n%s", logs.String())
			out := logs.String()
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			for _, l := range lines {
				for _, r := range l {
					require.False(t, r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029,
						"raw control %U in %q", r, l)
				}
				require.False(t, strings.HasPrefix(l, "[2026-12-02 14:00:00,000"), "a forged line: %q", l)
			}
			if os.Getenv("CCWORKER_TEST_VERBOSE") != "" {
				t.Log(out)
			}
		})
	}
}
