package config

import (
	"regexp"
	"strings"
)

// passwordParam matches query options that carry secrets, e.g. MongoDB's
// tlsCertificateKeyFilePassword or a password= option.
var passwordParam = regexp.MustCompile(`(?i)([?&;][^=&;#]*(?:password|passphrase|secret)[^=&;#]*=)[^&;#]*`)

// Redact returns s with every password replaced by "****": the password
// part of each URL's credentials (s may hold several URLs separated by ';',
// as broker_url does) and the value of query options whose name contains
// "password". It errs on the side of hiding too much: when the credentials
// cannot be told apart reliably, everything between the first ':' of the
// user info and the '@' is hidden.
func Redact(s string) string {
	if !strings.ContainsAny(s, "@?&;") {
		return s
	}
	parts := strings.Split(s, ";")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return passwordParam.ReplaceAllString(strings.Join(parts, ";"), "${1}****")
}

func redactOne(s string) string {
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	// The credentials end at the last '@' before the path; if the password
	// holds an unescaped '/', fall back to the last '@' before the query.
	at := -1
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		at = strings.LastIndexByte(rest[:slash], '@')
	}
	if at < 0 {
		end := len(rest)
		if q := strings.IndexAny(rest, "?#"); q >= 0 {
			end = q
		}
		at = strings.LastIndexByte(rest[:end], '@')
	}
	if at < 0 {
		return s
	}
	userinfo := rest[:at]
	colon := strings.IndexByte(userinfo, ':')
	if colon < 0 {
		return s
	}
	return prefix + userinfo[:colon] + ":****" + rest[at:]
}
