package restore

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestMayHoldMatchesNeverPrunes: on random trees and include patterns
// (many with "**"), every directory that match does not select but that
// holds a path match selects must get a true mayHoldMatches: a false
// one there would leave out what the operator asked for (restore
// --delete walks the target by it).
func TestMayHoldMatchesNeverPrunes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	names := []string{"a", "b", "ab", "x.db"}
	elems := []string{"a", "b", "*", "**", "**", "*.db", "a*", "?"}
	held := 0
	for range 200 {
		// A random tree, as the walk sees it: parents before children.
		var paths []string
		var grow func(dir string, depth int)
		grow = func(dir string, depth int) {
			for _, n := range names {
				if r.IntN(3) == 0 {
					continue
				}
				p := n
				if dir != "" {
					p = dir + "/" + n
				}
				paths = append(paths, p)
				if depth > 0 {
					grow(p, depth-1)
				}
			}
		}
		grow("", 4)
		var patterns []string
		for range 1 + r.IntN(2) {
			var pe []string
			for range 1 + r.IntN(4) {
				pe = append(pe, elems[r.IntN(len(elems))])
			}
			patterns = append(patterns, strings.Join(pe, "/"))
		}
		in, err := newIncluder(patterns, nil)
		if err != nil {
			t.Fatal(err)
		}
		selected := map[string]bool{}
		for _, p := range paths {
			selected[p] = in.match(p, true)
		}
		for _, d := range paths {
			if selected[d] || in.mayHoldMatches(d) {
				continue
			}
			for _, p := range paths {
				if strings.HasPrefix(p, d+"/") && selected[p] {
					t.Fatalf("patterns %q: mayHoldMatches(%q) is false, yet %q below it is selected", patterns, d, p)
				}
			}
		}
		for _, d := range paths {
			if selected[d] {
				continue
			}
			for _, p := range paths {
				if strings.HasPrefix(p, d+"/") && selected[p] {
					held++
					break
				}
			}
		}
	}
	// The check means something only if many unselected directories
	// hold selected paths.
	t.Logf("%d unselected directories held a selected path", held)
	if held < 200 {
		t.Errorf("only %d unselected directories held a selected path", held)
	}
}

// TestIncludePatternsCleaned: an include pattern is cleaned as ls and
// dump clean a path, so "./etc", "etc//nginx" and "etc/nginx/." select
// etc/nginx, and "/" the whole snapshot; they selected nothing (exit 0,
// with a warning naming the pattern, "" for "/").
func TestIncludePatternsCleaned(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		dir, want     bool
	}{
		{"/", "etc", true, true},
		{"/", "etc/passwd", false, true},
		{".", "etc/passwd", false, true},
		{"./etc/nginx", "etc/nginx/nginx.conf", false, true},
		{"etc//nginx", "etc/nginx", true, true},
		{"etc/nginx/.", "etc/nginx/nginx.conf", false, true},
		{"/etc/./nginx/", "etc/nginx", true, true},
		{"/etc/./nginx/", "etc/nginx", false, false}, // still directories only
		{"./etc/nginx", "etc/hosts", false, false},
	} {
		in, err := newIncluder([]string{c.pattern}, nil)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if got := in.match(c.path, c.dir); got != c.want {
			t.Errorf("include %q, path %q (dir %v): match = %v, want %v", c.pattern, c.path, c.dir, got, c.want)
		}
	}
}
