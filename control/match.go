package control

import (
	"regexp"
	"slices"
	"strings"

	"github.com/ccworker/ccworker/internal/fnmatch"
)

// matches reports whether a request addressed by destination/pattern/matcher is for node
// (kombu Node.handle_message): a non-empty destination must contain node; otherwise a pattern
// with a matcher must match it; otherwise everybody runs it.
func matches(node string, destination any, pattern, matcher string) bool {
	switch d := destination.(type) {
	case []any:
		if len(d) > 0 {
			return slices.ContainsFunc(d, func(v any) bool { s, ok := v.(string); return ok && s == node })
		}
	case string: // `hostname in destination` on a str is a substring test
		if d != "" {
			return strings.Contains(d, node)
		}
	}
	if pattern != "" && matcher != "" {
		return matchNode(node, pattern, matcher)
	}
	return true
}

// matchNode is kombu.matcher.match: glob = fnmatch.fnmatch, pcre = re.match (anchored at the
// start only). Unknown matchers raise MatcherNotInstalled in kombu; here they match nothing.
func matchNode(node, pattern, matcher string) bool {
	switch matcher {
	case "glob":
		return fnmatch.Match(pattern, node)
	case "pcre":
		re, err := regexp.Compile(`^(?:` + pattern + `)`)
		return err == nil && re.MatchString(node)
	}
	return false
}
