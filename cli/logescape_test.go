package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hostile is what a message can put into a log line: every C0 control, DEL, the C1
// controls, terminal escape sequences, line separators, invalid UTF-8, and a newline
// followed by a forged record.
func hostile() []string {
	var out []string
	for c := 0; c < 0x20; c++ {
		out = append(out, "ccworker.add"+string(rune(c))+"x")
	}
	out = append(out, "a\x7fb")
	for c := 0x80; c <= 0x9f; c++ {
		out = append(out, "a"+string(rune(c))+"b")
	}
	return append(out,
		"ccworker.add\x00\x1b[2J\x07\r",
		"\x1b]0;title\x07\x1b[31mred\x1b[0m\x1bc",
		"a\u2028b\u2029c",
		"bad\xff\xfeutf8",
		"ccworker.add\n[2026-12-02 14:00:00,000: INFO/MainProcess] Task ccworker.add[FAKE] received",
		"x\r[2026-12-02 14:00:00,000: INFO/MainProcess] FAKE LOG LINE received",
	)
}

type stringer string

func (s stringer) String() string { return string(s) }

// logEverywhere logs s through every way a call site puts a value into a record.
func logEverywhere(log *zap.Logger, s string) int {
	log.Info(fmt.Sprintf("Task %s[%s] received", s, s))
	log.Error("Received unregistered task of type "+s, zap.String("task_id", s))
	log.Warn("w", zap.Error(errors.New(s)), zap.Stringer("host", stringer(s)))
	log.Info("i", zap.Strings("args", []string{s, s}), zap.Any("kwargs", map[string]any{s: s}))
	log.With(zap.String("task", s)).Named(s).Error(s, zap.ByteString("raw", []byte(s)))
	return 5
}

func TestLogLinesAreEscaped(t *testing.T) {
	for _, format := range []string{"console", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := newLogger("DEBUG", format, &buf)
			require.NoError(t, err)
			records := 0
			for _, s := range hostile() {
				records += logEverywhere(log, s)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			require.Len(t, lines, records, "one line per record")
			for _, l := range lines {
				require.True(t, utf8.ValidString(l), "%q", l)
				for _, r := range l {
					require.False(t, r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029,
						"raw control %U in %q", r, l)
				}
				require.NotContains(t, l, "FAKE LOG LINE received\n")
				if format == "json" {
					var m map[string]any
					require.NoError(t, json.Unmarshal([]byte(l), &m), l)
				}
			}
		})
	}
}

func TestEscapedLogLinesStayReadable(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("INFO", "console", &buf)
	require.NoError(t, err)
	log.Info("Task ccworker.add\x00\x1b[2J[id] received\nFAKE")
	require.Contains(t, buf.String(), `Task ccworker.add\x00\x1b[2J[id] received\nFAKE`)
	buf.Reset()
	log.Info("Task ccworker.add[id] received: ü")
	require.Contains(t, buf.String(), "Task ccworker.add[id] received: ü\n", "clean lines untouched")
}

func TestNoColourOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger("DEBUG", "console", &buf)
	require.NoError(t, err)
	log.Error("e")
	log.Warn("w")
	require.NotContains(t, buf.String(), "\x1b")

	// On a terminal the escaped line is coloured; the message's own escapes stay text.
	enc := escapingEncoder{Encoder: zapcore.NewConsoleEncoder(zapcore.EncoderConfig{MessageKey: "msg"}), color: true}
	out, err := enc.EncodeEntry(zapcore.Entry{Level: zap.ErrorLevel, Message: "bad\x1b[2J"}, nil)
	require.NoError(t, err)
	require.Equal(t, "\x1b[31mbad\\x1b[2J\x1b[0m\n", out.String())
}
