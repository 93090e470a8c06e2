package cli

import (
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// escapingEncoder wraps the console or JSON encoder so that every record is one line
// with no control character in it, whatever a message put into the text or the fields
// (task names, ids, argument reprs, exception text, host names, a Python child's
// output): escaping happens on the encoded line, so no call site can forget it. zap's
// JSON encoding escapes C0 controls in field values already; the console message, DEL,
// C1 controls, U+2028/U+2029 and invalid UTF-8 are escaped here. On a terminal the
// escaped line is then coloured by level, so colour never reaches a file or a pipe.
type escapingEncoder struct {
	zapcore.Encoder
	json  bool
	color bool
}

var escapedPool = buffer.NewPool()

func (e escapingEncoder) Clone() zapcore.Encoder {
	return escapingEncoder{Encoder: e.Encoder.Clone(), json: e.json, color: e.color}
}

func (e escapingEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	buf, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return buf, err
	}
	line := buf.Bytes()
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
	}
	color := ""
	if e.color {
		color = levelColor[ent.Level]
	}
	if color == "" && clean(line[:n]) {
		return buf, nil
	}
	out := escapedPool.Get()
	out.AppendString(color)
	appendEscaped(out, line[:n], e.json)
	if color != "" {
		out.AppendString("\x1b[0m")
	}
	out.Write(line[n:])
	buf.Free()
	return out, nil
}

// levelColor is Celery's ColorFormatter's: blue, yellow, red, magenta; INFO plain.
var levelColor = map[zapcore.Level]string{
	zapcore.DebugLevel: "\x1b[34m", zapcore.WarnLevel: "\x1b[33m", zapcore.ErrorLevel: "\x1b[31m",
	zapcore.DPanicLevel: "\x1b[35m", zapcore.PanicLevel: "\x1b[35m", zapcore.FatalLevel: "\x1b[35m",
}

// clean reports whether b needs no escaping: printable ASCII only (the common case), or
// valid UTF-8 without controls.
func clean(b []byte) bool {
	ascii := true
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if ascii {
		return true
	}
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if escapedRune(r, size) {
			return false
		}
		b = b[size:]
	}
	return true
}

func escapedRune(r rune, size int) bool {
	return r == utf8.RuneError && size == 1 || r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029
}

// appendEscaped appends b with each control character, line separator and invalid byte
// escaped: as \u00XX inside JSON (valid in the JSON strings they can only occur in),
// as Go and Python write them in the console form (\n, \x1b, \u0085).
func appendEscaped(out *buffer.Buffer, b []byte, json bool) {
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case !escapedRune(r, size):
			out.Write(b[:size])
		case json && size == 1 && r == utf8.RuneError:
			out.AppendString(`\ufffd`)
		case json:
			out.AppendString(fmt.Sprintf(`\u%04x`, r))
		case r == '\n':
			out.AppendString(`\n`)
		case r == '\r':
			out.AppendString(`\r`)
		case r == '\t':
			out.AppendString(`\t`)
		case size == 1:
			out.AppendString(fmt.Sprintf(`\x%02x`, b[0]))
		default:
			out.AppendString(fmt.Sprintf(`\u%04x`, r))
		}
		b = b[size:]
	}
}

// colorTerminal reports whether w is a terminal that colour may go to: a character
// device, with NO_COLOR (no-color.org) unset and TERM not dumb.
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}
