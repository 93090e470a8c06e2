package config

import "strings"

// NodeName expands a worker node name the way `celery worker -n` does
// (celery/utils/nodenames.py): an empty pattern means "celery@<hostname>", a
// pattern without "@" gets "celery@" in front, and %h (full hostname), %n
// (hostname up to the first dot), %d (the domain after the first dot) and
// %% are expanded. Other %-sequences (such as %i, which only makes sense for
// pool processes) are left as written.
func NodeName(pattern, hostname string) string {
	if pattern == "" {
		pattern = "%h"
	}
	if !strings.Contains(pattern, "@") {
		pattern = "celery@" + pattern
	}
	name, domain, _ := strings.Cut(hostname, ".")
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' || i+1 >= len(pattern) {
			b.WriteByte(c)
			continue
		}
		switch pattern[i+1] {
		case 'h':
			b.WriteString(hostname)
		case 'n':
			b.WriteString(name)
		case 'd':
			b.WriteString(domain)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte(c)
			continue
		}
		i++
	}
	return b.String()
}
