package restore

import "testing"

func TestSplit(t *testing.T) {
	for _, c := range []struct{ p, dir, base string }{
		{"f", "", "f"},
		{"a/f", "a", "f"},
		{"a/b/c/f", "a/b/c", "f"},
		{"日本語/a name\nwith a newline", "日本語", "a name\nwith a newline"},
	} {
		if dir, base := split(c.p); dir != c.dir || base != c.base {
			t.Errorf("split(%q) = %q, %q; want %q, %q", c.p, dir, base, c.dir, c.base)
		}
	}
}
