package fnmatch

import "testing"

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"tasks.*", "tasks.add", true},
		{"tasks.*", "other.add", false},
		{"*", "", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"celery@[ab]*", "celery@box", true},
		{"celery@[!ab]*", "celery@box", false},
		{"x.y", "xzy", false}, // the dot is literal
		{"[", "[", true},      // no closing bracket: literal
		{"é*", "été", true},
	} {
		if got := Match(tc.pat, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pat, tc.name, got, tc.want)
		}
	}
}
