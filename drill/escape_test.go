package drill

import (
	"testing"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestEscapePattern: a sampled path becomes a restore pattern that
// matches that path only, whatever glob characters its names hold; a
// name "**" must not turn into "any number of elements".
func TestEscapePattern(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other []string // paths the pattern must not match
	}{
		{"srv/**/x", []string{"srv/x", "srv/a/b/x", "srv/a/x"}},
		{"srv/**", []string{"srv/a", "srv/a/b"}},
		{"**/x", []string{"x", "a/x"}},
		{"a*b/c?d/[x]", []string{"ab/cxd/x", "a-b/c-d/x"}},
		{`back\slash`, []string{"backslash"}},
	} {
		p, err := snapshot.NewPattern(escapePattern(tc.name))
		if err != nil {
			t.Fatalf("%q escaped to %q: %v", tc.name, escapePattern(tc.name), err)
		}
		if !p.Match(tc.name) {
			t.Errorf("%q escaped to %q, which does not match it", tc.name, escapePattern(tc.name))
		}
		for _, o := range tc.other {
			if p.Match(o) {
				t.Errorf("%q escaped to %q, which matches %q too", tc.name, escapePattern(tc.name), o)
			}
		}
	}
}
