// Package pyliteral reads the literal subset of Python that celeryconfig.py files are written
// in, without a Python interpreter: module-level assignments of literals, names assigned
// earlier, ssl.CERT_* and os.environ lookups. Everything else is reported with its file,
// line and column rather than guessed at (config imports such files with Python instead).
package pyliteral

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Module is what Parse read: the module-level assignments and the line
// where each name was last assigned (so that callers can point at it).
type Module struct {
	// Values maps each assigned name to its value: string, int64, float64,
	// bool, nil, []any (lists and tuples) or map[string]any.
	Values map[string]any
	// Lines maps each assigned name to the 1-based line of its assignment.
	Lines map[string]int
}

// Parse reads the literal subset of Python that celeryconfig.py files are
// written in, without a Python interpreter, and returns the module-level
// assignments.
//
// Besides literals it evaluates references to names assigned earlier in the
// file, ssl.CERT_NONE/CERT_OPTIONAL/CERT_REQUIRED (after "import ssl" or
// "from ssl import ..."), os.environ.get, os.getenv and os.environ[...]
// (after "import os"; looked up through env, which may be nil for an empty
// environment) and the comparisons == and != (so that
// `x = os.environ.get('X') == '1'` works). Every other construct is reported
// as a *SyntaxError matching ErrUnsupported rather than guessed at.
func Parse(filename string, src []byte, env func(string) (string, bool)) (*Module, error) {
	lx, err := newLexer(filename, src)
	if err != nil {
		return nil, err
	}
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	p := &parser{lx: lx, env: env, scope: map[string]any{}, mod: &Module{Values: map[string]any{}, Lines: map[string]int{}}}
	if err := p.parseFile(); err != nil {
		return nil, err
	}
	return p.mod, nil
}

// Objects that only exist while evaluating: modules and the env helpers.
// They are never stored as setting values.
type pyModule string // "os" or "ssl"
type pyEnviron struct{}
type pyFunc string // "os.getenv" or "os.environ.get"

// node is an expression tree node.
type node interface{ at() pos }

type (
	litNode struct {
		p pos
		v any
	}
	nameNode struct {
		p    pos
		name string
	}
	seqNode struct {
		p    pos
		elts []node
	} // list or tuple
	dictNode struct {
		p          pos
		keys, vals []node
	}
	attrNode struct {
		p    pos
		x    node
		name string
	}
	callNode struct {
		p    pos
		fn   node
		args []node
	}
	indexNode struct {
		p        pos
		x, index node
	}
	cmpNode struct {
		p    pos
		op   string
		l, r node
	}
	negNode struct {
		p   pos
		neg bool
		x   node
	}
)

func (n *litNode) at() pos   { return n.p }
func (n *nameNode) at() pos  { return n.p }
func (n *seqNode) at() pos   { return n.p }
func (n *dictNode) at() pos  { return n.p }
func (n *attrNode) at() pos  { return n.p }
func (n *callNode) at() pos  { return n.p }
func (n *indexNode) at() pos { return n.p }
func (n *cmpNode) at() pos   { return n.p }
func (n *negNode) at() pos   { return n.p }

type parser struct {
	lx    *lexer
	env   func(string) (string, bool)
	buf   []token // lookahead
	scope map[string]any
	mod   *Module
	depth int
}

func (p *parser) peekN(k int) (token, error) {
	for len(p.buf) <= k {
		t, err := p.lx.next()
		if err != nil {
			return token{}, err
		}
		p.buf = append(p.buf, t)
		if t.kind == tkEOF {
			break
		}
	}
	if k >= len(p.buf) {
		return p.buf[len(p.buf)-1], nil
	}
	return p.buf[k], nil
}

func (p *parser) peek() (token, error) { return p.peekN(0) }

func (p *parser) advance() (token, error) {
	t, err := p.peek()
	if err != nil {
		return token{}, err
	}
	if t.kind != tkEOF {
		p.buf = p.buf[1:]
	}
	return t, nil
}

func isOp(t token, op string) bool { return t.kind == tkOp && t.text == op }

func (p *parser) errAt(at pos, format string, args ...any) error {
	return p.lx.errAt(at, format, args...)
}

func (p *parser) unsupported(at pos, construct, msg string) error {
	return p.lx.unsupportedAt(at, construct, msg)
}

func (p *parser) invalid(t token) error {
	switch t.kind {
	case tkEOF:
		return p.errAt(t.pos, "invalid syntax: unexpected end of file")
	case tkNewline:
		return p.errAt(t.pos, "invalid syntax: unexpected end of line")
	}
	return p.errAt(t.pos, "invalid syntax at %q", tokenText(t))
}

func tokenText(t token) string {
	switch t.kind {
	case tkString:
		return strconv.Quote(t.str)
	case tkNumber:
		return t.text
	}
	return t.text
}

func (p *parser) expectOp(op string) (token, error) {
	t, err := p.advance()
	if err != nil {
		return token{}, err
	}
	if !isOp(t, op) {
		return token{}, p.invalid(t)
	}
	return t, nil
}

// statementKeywords maps Python keywords that start a statement to the name
// reported for them.
var statementKeywords = map[string]string{
	"if": "if statement", "elif": "if statement", "else": "if statement",
	"for": "for loop", "while": "while loop", "def": "function definition",
	"class": "class definition", "with": "with statement", "try": "try statement",
	"except": "try statement", "finally": "try statement", "return": "return statement",
	"pass": "pass statement", "break": "break statement", "continue": "continue statement",
	"raise": "raise statement", "global": "global statement", "nonlocal": "nonlocal statement",
	"del": "del statement", "assert": "assert statement", "async": "async statement",
	"await": "await expression", "yield": "yield expression", "lambda": "lambda",
	"match": "match statement",
}

// otherKeywords cannot start an expression.
var otherKeywords = map[string]bool{"and": true, "or": true, "not": true, "in": true, "is": true, "as": true, "from": true, "import": true}

func (p *parser) parseFile() error {
	for {
		t, err := p.peek()
		if err != nil {
			return err
		}
		switch t.kind {
		case tkEOF:
			return nil
		case tkNewline:
			p.skip()
			continue
		}
		if err := p.parseStatement(); err != nil {
			return err
		}
		t, err = p.advance()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tkNewline || t.kind == tkEOF:
		case isOp(t, ";"):
			// "a = 1; b = 2": another statement may follow on the same line.
		default:
			return p.statementEndError(t)
		}
	}
}

func (p *parser) statementEndError(t token) error {
	if t.kind == tkOp {
		switch t.text {
		case "+=", "-=", "*=", "/=", "//=", "%=", "**=", ">>=", "<<=", "&=", "|=", "^=", "@=":
			return p.unsupported(t.pos, "augmented assignment", "")
		case ":":
			return p.unsupported(t.pos, "annotated assignment", "")
		}
	}
	if t.kind == tkName {
		switch t.text {
		case "if":
			return p.unsupported(t.pos, "conditional expression", "")
		case "and", "or":
			return p.unsupported(t.pos, "boolean operator", t.text)
		case "for":
			return p.unsupported(t.pos, "comprehension", "")
		}
	}
	return p.invalid(t)
}

func (p *parser) parseStatement() error {
	t, err := p.peek()
	if err != nil {
		return err
	}
	if t.kind == tkName {
		switch t.text {
		case "import":
			return p.parseImport()
		case "from":
			return p.parseFromImport()
		}
		// "match" and friends are soft keywords; only treat them as
		// statements when not used as a plain name.
		if c, ok := statementKeywords[t.text]; ok {
			if t.text != "match" {
				return p.unsupported(t.pos, c, "")
			}
			if n, err := p.peekN(1); err == nil && n.kind == tkName {
				return p.unsupported(t.pos, c, "")
			}
		}
	}
	if isOp(t, "@") {
		return p.unsupported(t.pos, "decorator", "")
	}
	var targets []node
	for {
		n, err := p.parseExprList()
		if err != nil {
			return err
		}
		nt, err := p.peek()
		if err != nil {
			return err
		}
		if !isOp(nt, "=") {
			return p.finishStatement(targets, n)
		}
		p.skip()
		targets = append(targets, n)
	}
}

func (p *parser) finishStatement(targets []node, rhs node) error {
	// Check what ends the statement before evaluating, so that "x += 1"
	// is reported as augmented assignment rather than as an unknown x.
	end, err := p.peek()
	if err != nil {
		return err
	}
	if end.kind != tkNewline && end.kind != tkEOF && !isOp(end, ";") {
		return p.statementEndError(end)
	}
	if len(targets) == 0 {
		// A bare string is a docstring or a comment-like string statement.
		if _, ok := rhs.(*litNode); ok {
			if _, isStr := rhs.(*litNode).v.(string); isStr {
				return nil
			}
		}
		if _, err := p.eval(rhs); err != nil {
			return err
		}
		return p.unsupported(rhs.at(), "expression statement", "")
	}
	for _, t := range targets {
		switch t := t.(type) {
		case *nameNode:
			if t.name == "True" || t.name == "False" || t.name == "None" {
				return p.errAt(t.p, "cannot assign to %s", t.name)
			}
		case *seqNode:
			return p.unsupported(t.p, "tuple unpacking", "")
		case *attrNode:
			return p.unsupported(t.p, "attribute assignment", "")
		case *indexNode:
			return p.unsupported(t.p, "item assignment", "")
		default:
			return p.errAt(t.at(), "cannot assign to expression")
		}
	}
	v, err := p.evalValue(rhs)
	if err != nil {
		return err
	}
	for _, t := range targets {
		n := t.(*nameNode)
		p.scope[n.name] = deepCopy(v)
		p.mod.Values[n.name] = deepCopy(v)
		p.mod.Lines[n.name] = n.p.line
	}
	return nil
}

// allowedModules are the only modules a config file may import.
var allowedModules = map[string]bool{"os": true, "ssl": true}

func (p *parser) parseImport() error {
	p.skip()
	for {
		name, at, err := p.dottedName()
		if err != nil {
			return err
		}
		if !allowedModules[name] {
			return p.unsupported(at, "import", fmt.Sprintf("module %q (only os and ssl may be imported)", name))
		}
		bind := name
		if t, _ := p.peek(); t.kind == tkName && t.text == "as" {
			p.skip()
			alias, err := p.expectName()
			if err != nil {
				return err
			}
			bind = alias.text
		}
		p.scope[bind] = pyModule(name)
		t, err := p.peek()
		if err != nil {
			return err
		}
		if !isOp(t, ",") {
			return nil
		}
		p.skip()
	}
}

func (p *parser) expectName() (token, error) {
	t, err := p.advance()
	if err != nil {
		return token{}, err
	}
	if t.kind != tkName {
		return token{}, p.invalid(t)
	}
	return t, nil
}

func (p *parser) dottedName() (string, pos, error) {
	t, err := p.expectName()
	if err != nil {
		return "", pos{}, err
	}
	name := t.text
	for {
		n, err := p.peek()
		if err != nil {
			return "", pos{}, err
		}
		if !isOp(n, ".") {
			return name, t.pos, nil
		}
		p.skip()
		part, err := p.expectName()
		if err != nil {
			return "", pos{}, err
		}
		name += "." + part.text
	}
}

// importable lists what "from os/ssl import X" may bind.
var importable = map[string]map[string]any{
	"os":  {"environ": pyEnviron{}, "getenv": pyFunc("os.getenv")},
	"ssl": {"CERT_NONE": int64(0), "CERT_OPTIONAL": int64(1), "CERT_REQUIRED": int64(2)},
}

func (p *parser) parseFromImport() error {
	p.skip()
	mod, at, err := p.dottedName()
	if err != nil {
		return err
	}
	if !allowedModules[mod] {
		return p.unsupported(at, "import", fmt.Sprintf("module %q (only os and ssl may be imported)", mod))
	}
	t, err := p.advance()
	if err != nil {
		return err
	}
	if t.kind != tkName || t.text != "import" {
		return p.invalid(t)
	}
	paren := false
	if t, _ := p.peek(); isOp(t, "(") {
		p.skip()
		paren = true
	} else if isOp(t, "*") {
		return p.unsupported(t.pos, "star import", "")
	}
	for {
		name, err := p.expectName()
		if err != nil {
			return err
		}
		v, ok := importable[mod][name.text]
		if !ok {
			return p.unsupported(name.pos, "import", fmt.Sprintf("%s.%s", mod, name.text))
		}
		bind := name.text
		if t, _ := p.peek(); t.kind == tkName && t.text == "as" {
			p.skip()
			alias, err := p.expectName()
			if err != nil {
				return err
			}
			bind = alias.text
		}
		p.scope[bind] = v
		t, err := p.peek()
		if err != nil {
			return err
		}
		if !isOp(t, ",") {
			break
		}
		p.skip()
		if paren {
			if t, _ := p.peek(); isOp(t, ")") {
				break
			}
		}
	}
	if paren {
		_, err := p.expectOp(")")
		return err
	}
	return nil
}

// parseExprList parses "a" or a bare tuple "a, b" (trailing comma allowed).
func (p *parser) parseExprList() (node, error) {
	first, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	t, err := p.peek()
	if err != nil {
		return nil, err
	}
	if !isOp(t, ",") {
		return first, nil
	}
	tup := &seqNode{p: first.at(), elts: []node{first}}
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		if !isOp(t, ",") {
			return tup, nil
		}
		p.skip()
		t, err = p.peek()
		if err != nil {
			return nil, err
		}
		if !startsExpr(t) {
			return tup, nil
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		tup.elts = append(tup.elts, e)
	}
}

func startsExpr(t token) bool {
	switch t.kind {
	case tkName:
		return !otherKeywords[t.text] || t.text == "not"
	case tkNumber, tkString:
		return true
	case tkOp:
		switch t.text {
		case "(", "[", "{", "-", "+", "~", "*", "**", "...":
			return true
		}
	}
	return false
}

var binaryOps = map[string]bool{"+": true, "-": true, "*": true, "/": true, "//": true, "%": true, "**": true, "@": true, "|": true, "&": true, "^": true, "<<": true, ">>": true}

// checkNoBinary reports an arithmetic or other unsupported operator that
// follows an operand.
func (p *parser) checkNoBinary() error {
	t, err := p.peek()
	if err != nil {
		return err
	}
	switch {
	case t.kind == tkOp && binaryOps[t.text]:
		return p.unsupported(t.pos, "arithmetic", "operator "+t.text)
	case t.kind == tkOp && t.text == ":=":
		return p.unsupported(t.pos, "assignment expression", "")
	case t.kind == tkName && (t.text == "and" || t.text == "or"):
		return p.unsupported(t.pos, "boolean operator", t.text)
	case t.kind == tkName && t.text == "if":
		return p.unsupported(t.pos, "conditional expression", "")
	}
	return nil
}

func (p *parser) parseExpr() (node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxNesting {
		t, _ := p.peek()
		return nil, p.errAt(t.pos, "expression nested too deeply")
	}
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	if err := p.checkNoBinary(); err != nil {
		return nil, err
	}
	t, err := p.peek()
	if err != nil {
		return nil, err
	}
	if !p.isComparison(t) {
		return l, nil
	}
	if !isOp(t, "==") && !isOp(t, "!=") {
		return nil, p.unsupported(t.pos, "comparison", "operator "+t.text+" (only == and != are read)")
	}
	p.skip()
	r, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	if err := p.checkNoBinary(); err != nil {
		return nil, err
	}
	if n, err := p.peek(); err != nil {
		return nil, err
	} else if p.isComparison(n) {
		return nil, p.unsupported(n.pos, "chained comparison", "")
	}
	return &cmpNode{p: l.at(), op: t.text, l: l, r: r}, nil
}

func (p *parser) isComparison(t token) bool {
	if t.kind == tkOp {
		switch t.text {
		case "==", "!=", "<", ">", "<=", ">=":
			return true
		}
	}
	return t.kind == tkName && (t.text == "in" || t.text == "is" || t.text == "not")
}

func (p *parser) parseUnary() (node, error) {
	t, err := p.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case isOp(t, "-") || isOp(t, "+"):
		p.skip()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxNesting {
			return nil, p.errAt(t.pos, "expression nested too deeply")
		}
		n, err := p.peek()
		if err != nil {
			return nil, err
		}
		if n.kind == tkNumber && isOp(t, "-") {
			// Fold the sign into the literal so that -9223372036854775808
			// (which does not fit as a positive int64) is read.
			p.skip()
			v, err := p.number(n, true)
			if err != nil {
				return nil, err
			}
			return p.parseTrailers(&litNode{p: t.pos, v: v})
		}
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &negNode{p: t.pos, neg: t.text == "-", x: x}, nil
	case isOp(t, "~"):
		return nil, p.unsupported(t.pos, "arithmetic", "operator ~")
	case t.kind == tkName && t.text == "not":
		return nil, p.unsupported(t.pos, "boolean operator", "not")
	case isOp(t, "*") || isOp(t, "**"):
		return nil, p.unsupported(t.pos, "starred expression", "")
	}
	return p.parsePrimary()
}

func (p *parser) number(t token, negative bool) (any, error) {
	text := t.text
	if negative {
		text = "-" + text
	}
	if t.numBase == 0 {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, p.errAt(t.pos, "invalid float literal %q", t.text)
		}
		// Out of range floats become ±inf, as in Python.
		return f, nil
	}
	i, err := strconv.ParseInt(text, t.numBase, 64)
	if err != nil {
		return nil, p.unsupported(t.pos, "integer out of range", "integers must fit in 64 bits")
	}
	return i, nil
}

func (p *parser) parsePrimary() (node, error) {
	a, err := p.parseAtom()
	if err != nil {
		return nil, err
	}
	return p.parseTrailers(a)
}

func (p *parser) parseTrailers(x node) (node, error) {
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		switch {
		case isOp(t, "."):
			p.skip()
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			x = &attrNode{p: x.at(), x: x, name: name.text}
		case isOp(t, "("):
			p.skip()
			args, err := p.parseArgs()
			if err != nil {
				return nil, err
			}
			x = &callNode{p: x.at(), fn: x, args: args}
		case isOp(t, "["):
			p.skip()
			idx, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			n, err := p.advance()
			if err != nil {
				return nil, err
			}
			switch {
			case isOp(n, ":"):
				return nil, p.unsupported(n.pos, "slice", "")
			case isOp(n, ","):
				return nil, p.unsupported(t.pos, "subscript", "tuple index")
			case !isOp(n, "]"):
				return nil, p.invalid(n)
			}
			x = &indexNode{p: x.at(), x: x, index: idx}
		default:
			return x, nil
		}
	}
}

func (p *parser) parseArgs() ([]node, error) {
	var args []node
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		if isOp(t, ")") {
			p.skip()
			return args, nil
		}
		if t.kind == tkName {
			if n, err := p.peekN(1); err != nil {
				return nil, err
			} else if isOp(n, "=") {
				return nil, p.unsupported(t.pos, "keyword argument", t.text)
			}
		}
		a, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if n, _ := p.peek(); n.kind == tkName && n.text == "for" {
			return nil, p.unsupported(n.pos, "comprehension", "")
		}
		args = append(args, a)
		t, err = p.advance()
		if err != nil {
			return nil, err
		}
		if isOp(t, ")") {
			return args, nil
		}
		if !isOp(t, ",") {
			return nil, p.invalid(t)
		}
	}
}

func (p *parser) parseAtom() (node, error) {
	t, err := p.advance()
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case tkNumber:
		v, err := p.number(t, false)
		if err != nil {
			return nil, err
		}
		return &litNode{p: t.pos, v: v}, nil
	case tkString:
		s := t.str
		// Adjacent string literals are concatenated, as in Python.
		for {
			n, err := p.peek()
			if err != nil {
				return nil, err
			}
			if n.kind != tkString {
				break
			}
			p.skip()
			s += n.str
		}
		return &litNode{p: t.pos, v: s}, nil
	case tkName:
		switch t.text {
		case "True":
			return &litNode{p: t.pos, v: true}, nil
		case "False":
			return &litNode{p: t.pos, v: false}, nil
		case "None":
			return &litNode{p: t.pos, v: nil}, nil
		}
		if c, ok := statementKeywords[t.text]; ok && (t.text == "lambda" || t.text == "await" || t.text == "yield") {
			return nil, p.unsupported(t.pos, c, "")
		}
		if otherKeywords[t.text] || statementKeywords[t.text] != "" && t.text != "match" {
			return nil, p.invalid(t)
		}
		return &nameNode{p: t.pos, name: t.text}, nil
	case tkOp:
		switch t.text {
		case "(":
			return p.parseSeq(t, ")", true)
		case "[":
			return p.parseSeq(t, "]", false)
		case "{":
			return p.parseDict(t)
		case "...":
			return nil, p.unsupported(t.pos, "Ellipsis", "")
		}
	}
	return nil, p.invalid(t)
}

// parseSeq parses the rest of a parenthesised expression, tuple or list.
func (p *parser) parseSeq(open token, closer string, paren bool) (node, error) {
	seq := &seqNode{p: open.pos}
	comma := false
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		if isOp(t, closer) {
			p.skip()
			if paren && len(seq.elts) == 1 && !comma {
				return seq.elts[0], nil // (x) is just x
			}
			return seq, nil
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if n, _ := p.peek(); n.kind == tkName && (n.text == "for" || n.text == "async") {
			return nil, p.unsupported(n.pos, "comprehension", "")
		}
		seq.elts = append(seq.elts, e)
		t, err = p.advance()
		if err != nil {
			return nil, err
		}
		if isOp(t, closer) {
			if paren && len(seq.elts) == 1 && !comma {
				return seq.elts[0], nil
			}
			return seq, nil
		}
		if !isOp(t, ",") {
			if paren && t.kind == tkName && t.text == "yield" {
				return nil, p.unsupported(t.pos, "yield expression", "")
			}
			return nil, p.invalid(t)
		}
		comma = true
	}
}

func (p *parser) parseDict(open token) (node, error) {
	d := &dictNode{p: open.pos}
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		if isOp(t, "}") {
			p.skip()
			return d, nil
		}
		if isOp(t, "**") {
			return nil, p.unsupported(t.pos, "dict unpacking", "")
		}
		k, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		t, err = p.advance()
		if err != nil {
			return nil, err
		}
		if !isOp(t, ":") {
			if isOp(t, ",") || isOp(t, "}") {
				return nil, p.unsupported(open.pos, "set literal", "")
			}
			if t.kind == tkName && t.text == "for" {
				return nil, p.unsupported(t.pos, "comprehension", "")
			}
			return nil, p.invalid(t)
		}
		v, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if n, _ := p.peek(); n.kind == tkName && n.text == "for" {
			return nil, p.unsupported(n.pos, "comprehension", "")
		}
		d.keys = append(d.keys, k)
		d.vals = append(d.vals, v)
		t, err = p.advance()
		if err != nil {
			return nil, err
		}
		if isOp(t, "}") {
			return d, nil
		}
		if !isOp(t, ",") {
			return nil, p.invalid(t)
		}
	}
}

// evalValue evaluates n to a plain value (no modules or helpers).
func (p *parser) evalValue(n node) (any, error) {
	v, err := p.eval(n)
	if err != nil {
		return nil, err
	}
	switch v.(type) {
	case pyModule, pyEnviron, pyFunc:
		return nil, p.unsupported(n.at(), "module reference", "modules and functions cannot be setting values")
	}
	return v, nil
}

func (p *parser) eval(n node) (any, error) {
	switch n := n.(type) {
	case *litNode:
		return n.v, nil
	case *nameNode:
		v, ok := p.scope[n.name]
		if !ok {
			return nil, p.unsupported(n.p, "undefined name", fmt.Sprintf("%q is not assigned earlier in the file", n.name))
		}
		return deepCopy(v), nil
	case *seqNode:
		return p.evalSeq(n)
	case *dictNode:
		return p.evalDict(n)
	case *attrNode:
		return p.evalAttr(n)
	case *callNode:
		return p.evalCall(n)
	case *indexNode:
		return p.evalIndex(n)
	case *negNode:
		return p.evalNeg(n)
	case *cmpNode:
		return p.evalCmp(n)
	}
	return nil, p.errAt(n.at(), "internal error: unknown node %T", n)
}

// evalSeq evaluates a list or tuple display.
func (p *parser) evalSeq(n *seqNode) (any, error) {
	out := make([]any, 0, len(n.elts))
	for _, e := range n.elts {
		v, err := p.evalValue(e)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// evalDict evaluates a dict display; keys must be strings.
func (p *parser) evalDict(n *dictNode) (any, error) {
	out := make(map[string]any, len(n.keys))
	for i, kn := range n.keys {
		k, err := p.evalValue(kn)
		if err != nil {
			return nil, err
		}
		ks, ok := k.(string)
		if !ok {
			return nil, p.unsupported(kn.at(), "non-string dict key", fmt.Sprintf("key %s", pyRepr(k)))
		}
		v, err := p.evalValue(n.vals[i])
		if err != nil {
			return nil, err
		}
		out[ks] = v
	}
	return out, nil
}

// evalAttr resolves module attributes (ssl.CERT_*, os.environ, os.environ.get).
func (p *parser) evalAttr(n *attrNode) (any, error) {
	x, err := p.eval(n.x)
	if err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case pyModule:
		if v, ok := importable[string(x)][n.name]; ok {
			return v, nil
		}
		return nil, p.unsupported(n.p, "attribute access", fmt.Sprintf("%s.%s", x, n.name))
	case pyEnviron:
		if n.name == "get" {
			return pyFunc("os.environ.get"), nil
		}
		return nil, p.unsupported(n.p, "attribute access", "os.environ."+n.name)
	}
	return nil, p.unsupported(n.p, "attribute access", "."+n.name)
}

// evalCall calls os.getenv or os.environ.get, the only callables.
func (p *parser) evalCall(n *callNode) (any, error) {
	fn, err := p.eval(n.fn)
	var se *SyntaxError
	if errors.As(err, &se) && (se.Construct == "undefined name" || se.Construct == "attribute access") {
		return nil, p.unsupported(n.p, "function call", calleeName(n.fn)+"()")
	}
	if err != nil {
		return nil, err
	}
	f, ok := fn.(pyFunc)
	if !ok {
		return nil, p.unsupported(n.p, "function call", "")
	}
	if len(n.args) < 1 || len(n.args) > 2 {
		return nil, p.errAt(n.p, "%s() takes 1 or 2 arguments, got %d", f, len(n.args))
	}
	key, err := p.evalValue(n.args[0])
	if err != nil {
		return nil, err
	}
	ks, ok := key.(string)
	if !ok {
		return nil, p.errAt(n.args[0].at(), "%s(): variable name must be a string, got %s", f, TypeName(key))
	}
	var def any
	if len(n.args) == 2 {
		if def, err = p.evalValue(n.args[1]); err != nil {
			return nil, err
		}
	}
	if v, ok := p.env(ks); ok {
		return v, nil
	}
	return def, nil
}

// evalIndex evaluates os.environ[...], the only subscript.
func (p *parser) evalIndex(n *indexNode) (any, error) {
	x, err := p.eval(n.x)
	if err != nil {
		return nil, err
	}
	if _, ok := x.(pyEnviron); !ok {
		return nil, p.unsupported(n.p, "subscript", "")
	}
	key, err := p.evalValue(n.index)
	if err != nil {
		return nil, err
	}
	ks, ok := key.(string)
	if !ok {
		return nil, p.errAt(n.index.at(), "os.environ[]: variable name must be a string, got %s", TypeName(key))
	}
	v, ok := p.env(ks)
	if !ok {
		return nil, &EnvError{File: p.lx.file, Line: n.p.line, Col: n.p.col, Name: ks}
	}
	return v, nil
}

// evalNeg applies unary minus or plus to a number.
func (p *parser) evalNeg(n *negNode) (any, error) {
	x, err := p.evalValue(n.x)
	if err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case int64:
		if !n.neg {
			return x, nil
		}
		if x == math.MinInt64 {
			return nil, p.unsupported(n.p, "integer out of range", "integers must fit in 64 bits")
		}
		return -x, nil
	case float64:
		if n.neg {
			return -x, nil
		}
		return x, nil
	}
	return nil, p.unsupported(n.p, "arithmetic", "unary minus on "+TypeName(x))
}

// evalCmp evaluates == and != between scalars.
func (p *parser) evalCmp(n *cmpNode) (any, error) {
	l, err := p.evalValue(n.l)
	if err != nil {
		return nil, err
	}
	r, err := p.evalValue(n.r)
	if err != nil {
		return nil, err
	}
	eq, ok := pyEqual(l, r)
	if !ok {
		return nil, p.unsupported(n.p, "container comparison", "only strings, numbers, booleans and None are compared")
	}
	if n.op == "!=" {
		eq = !eq
	}
	return eq, nil
}

// pyEqual implements Python's == for scalars; ok is false for containers.
func pyEqual(a, b any) (eq, ok bool) {
	num := func(v any) (float64, bool) {
		switch v := v.(type) {
		case int64:
			return float64(v), true
		case float64:
			return v, true
		case bool:
			if v {
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
	switch a.(type) {
	case []any, map[string]any:
		return false, false
	}
	switch b.(type) {
	case []any, map[string]any:
		return false, false
	}
	if ai, ok := a.(int64); ok {
		if bi, ok := b.(int64); ok {
			return ai == bi, true
		}
	}
	if af, ok := num(a); ok {
		bf, ok := num(b)
		return ok && af == bf, true
	}
	return a == b, true
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	}
	return v
}

// TypeName names the Python type of a value Parse returns, for error messages.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "str"
	case int64, int:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

func pyRepr(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case string:
		return strconv.Quote(v)
	}
	return fmt.Sprint(v)
}

// skip drops a token that has already been peeked successfully.
func (p *parser) skip() {
	if len(p.buf) > 0 && p.buf[0].kind != tkEOF {
		p.buf = p.buf[1:]
	}
}

// calleeName renders a call's callee for error messages ("f", "os.path.join").
func calleeName(n node) string {
	switch n := n.(type) {
	case *nameNode:
		return n.name
	case *attrNode:
		return calleeName(n.x) + "." + n.name
	case *litNode:
		return pyRepr(n.v)
	}
	return "<expression>"
}
