// Package fnmatch is Python's fnmatch for the glob patterns Celery users write in
// task_routes and in remote-control node patterns: * ? [seq] [!seq], case-sensitive.
package fnmatch

import (
	"regexp"
	"strings"
)

// Compile translates a glob into an anchored regular expression, as Python's
// fnmatch.translate does.
func Compile(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	p := []rune(pat)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			if j < len(p) && p[j] == '!' {
				j++
			}
			if j < len(p) && p[j] == ']' {
				j++
			}
			for j < len(p) && p[j] != ']' {
				j++
			}
			if j >= len(p) {
				b.WriteString(`\[`) // no closing bracket: a literal [
				continue
			}
			set := strings.ReplaceAll(string(p[i+1:j]), `\`, `\\`)
			switch {
			case strings.HasPrefix(set, "!"):
				set = "^" + set[1:]
			case strings.HasPrefix(set, "^"):
				set = `\` + set
			}
			b.WriteString("[" + set + "]")
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`$`)
	return regexp.Compile(b.String())
}

// Match reports whether name matches the glob pat; a malformed pattern matches nothing.
func Match(pat, name string) bool {
	re, err := Compile(pat)
	return err == nil && re.MatchString(name)
}
