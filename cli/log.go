package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the zap logger for -l LEVEL and --log-format console|json. The console
// form reads like Celery's: "[2026-11-26 17:29:45,890: INFO/MainProcess] message". Every
// record is one line with control characters escaped (escapingEncoder), coloured by
// level only when out is a terminal.
func newLogger(level, format string, out io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	switch strings.ToUpper(level) {
	case "DEBUG":
		lvl = zap.DebugLevel
	case "INFO":
		lvl = zap.InfoLevel
	case "WARNING", "WARN":
		lvl = zap.WarnLevel
	case "ERROR":
		lvl = zap.ErrorLevel
	case "CRITICAL", "FATAL":
		lvl = zap.DPanicLevel // zap's Fatal would exit; these only filter
	default:
		return nil, fmt.Errorf("-l %q: not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL, FATAL)", level)
	}
	var enc zapcore.Encoder
	switch format {
	case "console", "":
		enc = zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
			TimeKey: "time", LevelKey: "level", MessageKey: "msg",
			EncodeTime: func(t time.Time, e zapcore.PrimitiveArrayEncoder) {
				e.AppendString("[" + t.Format("2006-01-02 15:04:05,000"))
			},
			EncodeLevel: func(l zapcore.Level, e zapcore.PrimitiveArrayEncoder) {
				name := l.CapitalString()
				if l == zapcore.WarnLevel {
					name = "WARNING"
				}
				e.AppendString(name + "/MainProcess]")
			},
			EncodeName:       zapcore.FullNameEncoder,
			EncodeDuration:   zapcore.StringDurationEncoder,
			ConsoleSeparator: " ",
		})
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("--log-format %q: console or json", format)
	}
	enc = escapingEncoder{Encoder: enc, json: format == "json", color: format != "json" && colorTerminal(out)}
	core := zapcore.NewCore(enc, zapcore.AddSync(out), lvl)
	return zap.New(core), nil
}
