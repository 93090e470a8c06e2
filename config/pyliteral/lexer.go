package pyliteral

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pos is a 1-based source position; col counts runes.
type pos struct{ line, col int }

type tokKind int

const (
	tkEOF tokKind = iota
	tkNewline
	tkName
	tkNumber
	tkString
	tkOp
)

type token struct {
	kind tokKind
	pos  pos
	// text is the identifier, the operator, or the cleaned number literal
	// (underscores removed).
	text string
	// str is the decoded value of a string literal.
	str string
	// numBase is 10, 16, 8 or 2 for integers and 0 for floats.
	numBase int
}

// maxNesting bounds bracket and unary nesting. Python's own parser stops at
// a similar depth; the bound keeps hostile input from recursing without end.
const maxNesting = 200

// lexer turns the literal subset of Python into tokens. It works on source
// whose line endings have been normalised to "\n".
type lexer struct {
	file        string
	src         []byte
	off         int
	line        int
	lineStart   int
	depth       int // bracket nesting: newlines inside brackets are ignored
	atLineStart bool
}

func newLexer(file string, src []byte) (*lexer, error) {
	lx := &lexer{file: file, line: 1, atLineStart: true}
	// Python reads source with universal newlines and skips a UTF-8 BOM.
	src = bytes.TrimPrefix(src, []byte("\ufeff"))
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	src = bytes.ReplaceAll(src, []byte("\r"), []byte("\n"))
	lx.src = src
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n <= 1 {
			lx.off = i
			lx.syncLine()
			return nil, lx.errAt(lx.here(), "invalid UTF-8 in source")
		}
		if r == 0 {
			lx.off = i
			lx.syncLine()
			return nil, lx.errAt(lx.here(), "source code cannot contain null bytes")
		}
		i += n
	}
	lx.off = 0
	lx.line, lx.lineStart = 1, 0
	return lx, nil
}

// syncLine recomputes line/lineStart for off; used only on error paths.
func (lx *lexer) syncLine() {
	lx.line = 1 + bytes.Count(lx.src[:lx.off], []byte("\n"))
	lx.lineStart = bytes.LastIndexByte(lx.src[:lx.off], '\n') + 1
}

func (lx *lexer) posAt(off int) pos {
	return pos{line: lx.line, col: utf8.RuneCount(lx.src[lx.lineStart:off]) + 1}
}

func (lx *lexer) here() pos { return lx.posAt(lx.off) }

func (lx *lexer) errAt(p pos, format string, args ...any) *SyntaxError {
	return &SyntaxError{File: lx.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)}
}

func (lx *lexer) unsupportedAt(p pos, construct, msg string) *SyntaxError {
	return &SyntaxError{File: lx.file, Line: p.line, Col: p.col, Construct: construct, Msg: msg}
}

func (lx *lexer) peekByte(k int) byte {
	if lx.off+k < len(lx.src) {
		return lx.src[lx.off+k]
	}
	return 0
}

func (lx *lexer) newline() {
	lx.off++
	lx.line++
	lx.lineStart = lx.off
}

// threeOps and twoOps are Python's multi-character operators; they are lexed
// whole so that, e.g., "+=" is reported as augmented assignment.
var threeOps = []string{"**=", "//=", ">>=", "<<=", "..."}
var twoOps = []string{"==", "!=", "<=", ">=", "**", "//", "->", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", ">>", "<<", ":=", "@="}

const oneOps = "()[]{},:.;=+-*/%@&|^~<>"

func (lx *lexer) next() (token, error) {
	for {
		if lx.atLineStart && lx.depth == 0 {
			eof, err := lx.startLine()
			if err != nil {
				return token{}, err
			}
			if eof {
				return token{kind: tkEOF, pos: lx.here()}, nil
			}
		}
		if lx.off >= len(lx.src) {
			if lx.depth > 0 {
				return token{}, lx.errAt(lx.here(), "unexpected end of file: unclosed bracket")
			}
			return token{kind: tkEOF, pos: lx.here()}, nil
		}
		c := lx.src[lx.off]
		switch {
		case c == ' ' || c == '\t' || c == '\f':
			lx.off++
			continue
		case c == '#':
			lx.skipComment()
			continue
		case c == '\\':
			if lx.peekByte(1) != '\n' {
				return token{}, lx.errAt(lx.here(), "unexpected character after line continuation character")
			}
			lx.off++
			lx.newline()
			if lx.off >= len(lx.src) {
				return token{}, lx.errAt(lx.here(), "unexpected end of file after line continuation")
			}
			continue
		case c == '\n':
			if lx.depth > 0 {
				lx.newline()
				continue
			}
			p := lx.here()
			lx.newline()
			lx.atLineStart = true
			return token{kind: tkNewline, pos: p}, nil
		case c >= '0' && c <= '9' || c == '.' && isDigit(lx.peekByte(1)):
			return lx.number()
		case c == '\'' || c == '"':
			return lx.str(lx.off, "")
		}
		r, _ := utf8.DecodeRune(lx.src[lx.off:])
		if isIdentStart(r) {
			return lx.name()
		}
		return lx.op(r)
	}
}

// startLine skips blank and comment-only lines at the start of a logical
// line and refuses indentation (only module-level statements are read).
// It reports whether the file ended.
func (lx *lexer) startLine() (eof bool, err error) {
	for {
		start := lx.off
		for lx.off < len(lx.src) && (lx.src[lx.off] == ' ' || lx.src[lx.off] == '\t' || lx.src[lx.off] == '\f') {
			lx.off++
		}
		c := lx.peekByte(0)
		if lx.off >= len(lx.src) || c == '\n' || c == '#' {
			// Blank or comment-only line: no statement, no indentation rule.
			lx.skipComment()
			if lx.off >= len(lx.src) {
				return true, nil
			}
			lx.newline()
			continue
		}
		lx.atLineStart = false
		if lx.off > start {
			return false, lx.errAt(lx.posAt(start), "unexpected indent")
		}
		return false, nil
	}
}

// name reads an identifier, or a string literal with a prefix (r”, b”, ...).
func (lx *lexer) name() (token, error) {
	start := lx.off
	for lx.off < len(lx.src) {
		r, n := utf8.DecodeRune(lx.src[lx.off:])
		if lx.off > start && !isIdentContinue(r) {
			break
		}
		lx.off += n
	}
	word := string(lx.src[start:lx.off])
	if q := lx.peekByte(0); (q == '\'' || q == '"') && isStringPrefix(word) {
		return lx.str(start, strings.ToLower(word))
	}
	return token{kind: tkName, pos: lx.posAt(start), text: word}, nil
}

// op reads an operator or bracket, longest first, tracking bracket depth;
// r is the rune at the current offset.
func (lx *lexer) op(r rune) (token, error) {
	p := lx.here()
	rest := lx.src[lx.off:]
	for _, ops := range [][]string{threeOps, twoOps} {
		for _, op := range ops {
			if bytes.HasPrefix(rest, []byte(op)) {
				lx.off += len(op)
				return token{kind: tkOp, pos: p, text: op}, nil
			}
		}
	}
	c := rest[0]
	if strings.IndexByte(oneOps, c) < 0 {
		return token{}, lx.errAt(p, "invalid character %q", r)
	}
	lx.off++
	switch c {
	case '(', '[', '{':
		lx.depth++
		if lx.depth > maxNesting {
			return token{}, lx.errAt(p, "too many nested brackets")
		}
	case ')', ']', '}':
		if lx.depth == 0 {
			return token{}, lx.errAt(p, "unmatched %q", string(c))
		}
		lx.depth--
	}
	return token{kind: tkOp, pos: p, text: string(c)}, nil
}

func (lx *lexer) skipComment() {
	if lx.peekByte(0) != '#' {
		return
	}
	for lx.off < len(lx.src) && lx.src[lx.off] != '\n' {
		lx.off++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(r rune) bool {
	return r == '_' || r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') || r >= utf8.RuneSelf && unicode.IsLetter(r)
}

func isIdentContinue(r rune) bool {
	return isIdentStart(r) || r >= '0' && r <= '9' || r >= utf8.RuneSelf && (unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r))
}

func isStringPrefix(w string) bool {
	switch strings.ToLower(w) {
	case "r", "u", "b", "f", "br", "rb", "fr", "rf":
		return true
	}
	return false
}

// digits scans digit ( "_"? digit )* and returns the digits without
// underscores. A leading underscore is allowed only when allowLead (right
// after a base prefix, as Python allows 0x_ff).
func (lx *lexer) digits(ok func(byte) bool, allowLead bool) (string, error) {
	var b strings.Builder
	if allowLead && lx.peekByte(0) == '_' && ok(lx.peekByte(1)) {
		lx.off++
	}
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		if ok(c) {
			b.WriteByte(c)
			lx.off++
			continue
		}
		if c == '_' && b.Len() > 0 && ok(lx.peekByte(1)) {
			lx.off++
			continue
		}
		if c == '_' {
			return "", lx.errAt(lx.here(), "invalid number literal: misplaced '_'")
		}
		break
	}
	return b.String(), nil
}

func (lx *lexer) number() (token, error) {
	start := lx.off
	p := lx.here()
	tok := token{kind: tkNumber, pos: p}
	if lx.src[lx.off] == '0' {
		var base int
		var ok func(byte) bool
		switch lx.peekByte(1) {
		case 'x', 'X':
			base, ok = 16, func(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
		case 'o', 'O':
			base, ok = 8, func(c byte) bool { return c >= '0' && c <= '7' }
		case 'b', 'B':
			base, ok = 2, func(c byte) bool { return c == '0' || c == '1' }
		}
		if base != 0 {
			lx.off += 2
			d, err := lx.digits(ok, true)
			if err != nil {
				return token{}, err
			}
			if d == "" {
				return token{}, lx.errAt(p, "invalid number literal")
			}
			tok.text, tok.numBase = d, base
			return tok, lx.numberEnd(p)
		}
	}
	intPart, err := lx.digits(isDigit, false)
	if err != nil {
		return token{}, err
	}
	isFloat := false
	text := intPart
	if lx.peekByte(0) == '.' {
		isFloat = true
		lx.off++
		frac, err := lx.digits(isDigit, false)
		if err != nil {
			return token{}, err
		}
		text += "." + frac
	}
	if c := lx.peekByte(0); c == 'e' || c == 'E' {
		save := lx.off
		lx.off++
		sign := ""
		if c := lx.peekByte(0); c == '+' || c == '-' {
			sign = string(c)
			lx.off++
		}
		exp, err := lx.digits(isDigit, false)
		if err != nil {
			return token{}, err
		}
		if exp == "" {
			lx.off = save
			return token{}, lx.errAt(p, "invalid float literal %q", lx.src[start:lx.off+1])
		}
		isFloat = true
		text += "e" + sign + exp
	}
	if c := lx.peekByte(0); c == 'j' || c == 'J' {
		return token{}, lx.unsupportedAt(p, "complex number", "")
	}
	if !isFloat && len(intPart) > 1 && intPart[0] == '0' && strings.Trim(intPart, "0") != "" {
		return token{}, lx.errAt(p, "leading zeros in decimal integer literals are not permitted")
	}
	tok.text = text
	if !isFloat {
		tok.numBase = 10
	}
	return tok, lx.numberEnd(p)
}

// numberEnd rejects "1abc" and "0x1g", which Python also rejects.
func (lx *lexer) numberEnd(p pos) error {
	if lx.off < len(lx.src) {
		r, _ := utf8.DecodeRune(lx.src[lx.off:])
		if isIdentContinue(r) {
			return lx.errAt(p, "invalid number literal")
		}
	}
	return nil
}

// str lexes a string literal whose prefix (already lower-cased) starts at start.
func (lx *lexer) str(start int, prefix string) (token, error) {
	p := lx.posAt(start)
	if strings.Contains(prefix, "f") {
		return token{}, lx.unsupportedAt(p, "f-string", "")
	}
	if strings.Contains(prefix, "b") {
		return token{}, lx.unsupportedAt(p, "bytes literal", "")
	}
	raw := strings.Contains(prefix, "r")
	q := lx.src[lx.off]
	triple := lx.peekByte(1) == q && lx.peekByte(2) == q
	if triple {
		lx.off += 3
	} else {
		lx.off++
	}
	bodyStart := lx.off
	for {
		if lx.off >= len(lx.src) {
			if triple {
				return token{}, lx.errAt(p, "unterminated triple-quoted string literal")
			}
			return token{}, lx.errAt(p, "unterminated string literal")
		}
		c := lx.src[lx.off]
		switch {
		case c == '\\':
			lx.off++
			if lx.peekByte(0) == '\n' {
				lx.newline()
			} else if lx.off < len(lx.src) {
				lx.off++
			}
			continue
		case c == '\n':
			if !triple {
				return token{}, lx.errAt(p, "unterminated string literal")
			}
			lx.newline()
			continue
		case c == q && (!triple || lx.peekByte(1) == q && lx.peekByte(2) == q):
			body := string(lx.src[bodyStart:lx.off])
			if triple {
				lx.off += 3
			} else {
				lx.off++
			}
			if raw {
				return token{kind: tkString, pos: p, str: body}, nil
			}
			s, err := unescape(body)
			if err != nil {
				if se, ok := err.(*SyntaxError); ok {
					se.File, se.Line, se.Col = lx.file, p.line, p.col
					return token{}, se
				}
				return token{}, lx.errAt(p, "%v", err)
			}
			return token{kind: tkString, pos: p, str: s}, nil
		}
		lx.off++
	}
}

// unescape decodes Python's string escapes. Unknown escapes keep the
// backslash, as Python does (with a warning).
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case '\n':
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(s[i:j], 8, 32)
			b.WriteRune(rune(v))
			i = j - 1
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+1+n > len(s) {
				return "", &SyntaxError{Msg: fmt.Sprintf(`truncated \%c escape`, e)}
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", &SyntaxError{Msg: fmt.Sprintf(`truncated \%c escape`, e)}
			}
			if v > unicode.MaxRune || v >= 0xD800 && v <= 0xDFFF {
				return "", &SyntaxError{Msg: fmt.Sprintf(`illegal Unicode character in \%c escape`, e)}
			}
			b.WriteRune(rune(v))
			i += n
		case 'N':
			return "", &SyntaxError{Construct: `\N{...} escape`}
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String(), nil
}
