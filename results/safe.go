package results

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ccworker/ccworker/protocol"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// What the result stores refuse, and what Document and Encode do about it (the rules are
// listed in docs/reliability.md, "What a result store refuses"):
//
//   - a string holding NUL: FerretDB on PostgreSQL fails the whole insert command
//     (jsonb cannot hold \u0000: "unsupported Unicode escape sequence (SQLSTATE 22P05)"),
//     keeping the documents before it; pymongo cannot even encode NUL in a key. NUL is
//     written as the four characters \x00.
//   - invalid UTF-8: MongoDB stores it but pymongo fails to decode the document, and
//     FerretDB refuses it in keys. Each invalid byte is written as \xNN.
//   - keys starting with '$' or holding '.': FerretDB refuses both, MongoDB < 5.0 too, and
//     MongoDB 5.0+ still refuses a top-level '$' key. '$' and '.' are written as \x24
//     and \x2e.
//   - nesting deeper than maxDepth: MongoDB refuses documents nested over 100 levels.
//     A deeper value is stored as its JSON text.
//   - a document over MaxDocumentSize: refused by MongoDB (and by the driver before
//     sending). Encode truncates the result and traceback, with a note, and drops the
//     arguments.
//   - arrays directly inside arrays: FerretDB refuses them; arguments are stored as JSON
//     text (portableValue), children are flattened once the server says so (Writer).

// MaxDocumentSize is MongoDB's maxBsonObjectSize: the largest document a server takes.
const MaxDocumentSize = 16 << 20

// maxDepth bounds the nesting of stored arguments, well under MongoDB's 100 levels (the
// document itself, args and kwargs add a few).
const maxDepth = 64

// Field budgets when a document is over MaxDocumentSize: together well under the limit.
const (
	maxResultBytes    = 4 << 20
	maxTracebackBytes = 1 << 20
	maxFieldBytes     = 64 << 10 // name, worker, queue, ids
)

// safeString returns s as a store takes it: NUL and invalid UTF-8 bytes escaped. The
// common case (clean text) returns s without allocating.
func safeString(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == 0:
			b.WriteString(`\x00`)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// safeKey returns a field name a store takes: safeString, and '$' and '.' escaped.
func safeKey(k string) string {
	k = safeString(k)
	if !strings.ContainsAny(k, "$.") {
		return k
	}
	return strings.NewReplacer("$", `\x24`, ".", `\x2e`).Replace(k)
}

// Encode returns the document as stored: Document, and when that is over
// MaxDocumentSize, the same record with its large fields truncated (see shrunk).
func (r *Record) Encode() (bson.Raw, error) {
	raw, err := bson.Marshal(r.Document())
	if err != nil {
		return nil, fmt.Errorf("results: encode document for %q: %w", safeString(r.TaskID), err)
	}
	if len(raw) <= MaxDocumentSize {
		return raw, nil
	}
	raw, err = bson.Marshal(r.shrunk(len(raw)).Document())
	if err != nil {
		return nil, fmt.Errorf("results: encode truncated document for %q: %w", safeString(r.TaskID), err)
	}
	return raw, nil
}

// shrunk is r cut to fit in a document: the result becomes a JSON string holding a note
// and the start of the result's JSON text, the traceback and the short fields are cut,
// and the arguments (which the client has) are dropped.
func (r *Record) shrunk(size int) *Record {
	c := *r
	note := fmt.Sprintf("[ccworker: this result document was %d bytes, over the %d-byte document limit; result truncated, args and kwargs dropped]",
		size, MaxDocumentSize)
	if len(c.Result) > maxResultBytes {
		text, _ := protocol.AppendJSON(nil, note+" "+truncate(c.Result, maxResultBytes))
		c.Result = string(text)
	}
	if len(c.Traceback) > maxTracebackBytes {
		c.Traceback = truncate(c.Traceback, maxTracebackBytes) + "\n" + note
	} else {
		c.Traceback = strings.TrimPrefix(c.Traceback+"\n"+note, "\n")
	}
	c.Args, c.Kwargs, c.Children = nil, nil, nil
	for _, f := range []*string{&c.TaskID, &c.Name, &c.Worker, &c.Queue, &c.GroupID, &c.ParentID} {
		*f = truncate(*f, maxFieldBytes)
	}
	return &c
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
