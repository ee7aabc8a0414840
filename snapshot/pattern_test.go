package snapshot_test

import (
	"math/rand/v2"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func mustPattern(t testing.TB, glob string) snapshot.Pattern {
	t.Helper()
	p, err := snapshot.NewPattern(glob)
	if err != nil {
		t.Fatalf("NewPattern(%q): %v", glob, err)
	}
	return p
}

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		// No "**": filepath.Match, unchanged.
		{"/home/*/.cache", "/home/a/.cache", true},
		{"/home/*/.cache", "/home/a/b/.cache", false},
		{"*.tmp", "x.tmp", true},
		// "**" at the start: any depth, including the top, and it takes
		// the empty element before an absolute path's first "/".
		{"**/node_modules/*.js", "/src/app/node_modules/x.js", true},
		{"**/node_modules/*.js", "/node_modules/x.js", true},
		{"**/node_modules/*.js", "node_modules/x.js", true},
		{"**/node_modules/*.js", "/src/node_modules/lib/x.js", false},
		{"**/x", "/a/b/y", false},
		// In the middle: zero or more elements.
		{"/home/**/.cache", "/home/.cache", true},
		{"/home/**/.cache", "/home/a/.cache", true},
		{"/home/**/.cache", "/home/a/b/c/.cache", true},
		{"/home/**/.cache", "/home/a/b/c/.cache/x", false},
		{"/home/**/.cache", "/srv/a/.cache", false},
		{"var/lib/**/*.db", "var/lib/a.db", true},
		{"var/lib/**/*.db", "var/lib/x/y/z/a.db", true},
		{"var/lib/**/*.db", "var/lib/x/y/z/a.txt", false},
		{"/a/**/b/**/c", "/a/b/c", true},
		{"/a/**/b/**/c", "/a/x/b/y/b/z/c", true},
		{"/a/**/b/**/c", "/a/x/c/b", false},
		// At the end: everything below, not the directory itself.
		{"/a/**", "/a/b", true},
		{"/a/**", "/a/b/c/d", true},
		{"/a/**", "/a", false},
		{"/a/**", "/ab/c", false},
		{"/a/**/**", "/a", false},
		{"/a/**/**", "/a/b", true},
		{"/**", "/a", true},
		// The root is one empty element: "/**" and "/*" hold what is
		// below it, not the root, as "/a/**" holds what is below /a.
		{"/**", "/", false},
		{"/*", "/", false},
		{"/**/**", "/", false},
		{"**", "/", true},
		// Alone: any path.
		{"**", "a", true},
		{"**", "a/b/c", true},
		// Next to other characters: just "*", one element.
		{"/a/foo**", "/a/foobar", true},
		{"/a/foo**", "/a/foo/bar", false},
		{"/a/x**y/c", "/a/xzy/c", true},
		{"/a/x**y/c", "/a/x/q/y/c", false},
		{"***", "abc", true},
		{"/a/***/c", "/a/b/x/c", false},
		// Escaped: a name "**", literally.
		{`/a/\*\*/c`, "/a/**/c", true},
		{`/a/\*\*/c`, "/a/b/c", false},
		{`/a/\*\*/c`, "/a/c", false},
		{`/a/\**/c`, "/a/*x/c", true},
		{`/a/\**/c`, "/a/b/x/c", false},
	} {
		if got := mustPattern(t, tc.pattern).Match(tc.name); got != tc.want {
			t.Errorf("%q matching %q = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"[", "**/[", `a\`} {
		if _, err := snapshot.NewPattern(bad); err == nil {
			t.Errorf("NewPattern(%q) accepted", bad)
		}
	}
}

// TestPatternManyGlobstars: a "**" per element against a deep path
// that does not match makes a naive recursion try every way to split
// the path among the "**"s (binomially many); Match must stay
// polynomial.
func TestPatternManyGlobstars(t *testing.T) {
	p := mustPattern(t, "/"+strings.Repeat("**/", 24)+"x")
	deep := strings.Repeat("/d", 300) + "/y"
	done := make(chan bool, 1)
	go func() { done <- p.Match(deep) || !p.MayMatchBelow(deep+"/z") }()
	select {
	case got := <-done:
		if got {
			t.Error("the pathological pattern matched, or MayMatchBelow said no")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("matching 24 \"**\"s against 300 elements did not end in 10s")
	}
	if !p.Match(deep[:len(deep)-1] + "x") {
		t.Error("no match with the x at the end")
	}
}

// definition is what Pattern.Match implements, written as directly as
// possible: exponential, for small cases only. A trailing "**" of a
// pattern of more elements takes one or more; any other zero or more.
func definition(pe, ne []string) bool {
	if n := len(pe); n > 1 && pe[n-1] == "**" {
		for k := 0; k < len(ne); k++ {
			if naiveMatch(pe[:n-1], ne[:k]) {
				return true
			}
		}
		return false
	}
	return naiveMatch(pe, ne)
}

func naiveMatch(pe, ne []string) bool {
	if len(pe) == 0 {
		return len(ne) == 0
	}
	if pe[0] == "**" {
		for k := 0; k <= len(ne); k++ {
			if naiveMatch(pe[1:], ne[k:]) {
				return true
			}
		}
		return false
	}
	if len(ne) == 0 {
		return false
	}
	ok, _ := path.Match(pe[0], ne[0])
	return ok && naiveMatch(pe[1:], ne[1:])
}

var (
	testElems = []string{"a", "b", "ab", "**", "*", "a*", "?", "**", "**"}
	testNames = []string{"a", "b", "ab", "ba"}
)

func randomPattern(r *rand.Rand) string {
	n := 1 + r.IntN(5)
	var pe []string
	for range n {
		pe = append(pe, testElems[r.IntN(len(testElems))])
	}
	return strings.Join(pe, "/")
}

func randomPath(r *rand.Rand) string {
	n := 1 + r.IntN(6)
	var ne []string
	for range n {
		ne = append(ne, testNames[r.IntN(len(testNames))])
	}
	return strings.Join(ne, "/")
}

// TestPatternAgainstBruteForce compares Match with naiveMatch, and
// MayMatchBelow with trying every path below a directory up to some
// depth, on random patterns and paths.
func TestPatternAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// All paths over testNames up to 4 elements deeper than a directory.
	var below func(dir string, depth int, f func(string) bool) bool
	below = func(dir string, depth int, f func(string) bool) bool {
		if depth == 0 {
			return false
		}
		for _, n := range testNames {
			p := dir + "/" + n
			if f(p) || below(p, depth-1, f) {
				return true
			}
		}
		return false
	}
	matched, held := 0, 0
	for range 3000 {
		glob, name := randomPattern(r), randomPath(r)
		p := mustPattern(t, glob)
		pe := strings.Split(glob, "/")
		want := definition(pe, strings.Split(name, "/"))
		matched += map[bool]int{true: 1}[want]
		if got := p.Match(name); got != want {
			t.Fatalf("%q matching %q = %v, the definition says %v", glob, name, got, want)
		}
		// Names of testNames only: a pattern element that matches
		// something matches one of them, so the search is complete up
		// to its depth, which exceeds any pattern's elements.
		holds := below(name, 5, func(q string) bool { return definition(pe, strings.Split(q, "/")) })
		held += map[bool]int{true: 1}[holds]
		if may := p.MayMatchBelow(name); holds && !may {
			t.Fatalf("%q: MayMatchBelow(%q) false, but a path below matches", glob, name)
		} else if may && !holds && !strings.Contains(glob, "**") {
			// Without "**" the answer is exact, as before.
			t.Fatalf("%q: MayMatchBelow(%q) true, yet nothing below matches", glob, name)
		}
	}
	// Both answers must be common, or the comparison proves little.
	t.Logf("%d matches, %d holding", matched, held)
	if matched < 300 || held < 300 {
		t.Errorf("only %d matches and %d directories holding one in 3000 cases", matched, held)
	}
}

func TestExcludeGlobstar(t *testing.T) {
	ex, err := snapshot.NewExcluder([]string{"/home/**/.cache", "**/node_modules/*.js", "/srv/data/**", "/var/**/tmp/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		dir  bool
		want bool
	}{
		{"/home/.cache", true, true},
		{"/home/a/b/.cache", true, true},
		{"/home/a/b/.cachex", true, false},
		{"/node_modules/x.js", false, true},
		{"/a/b/node_modules/x.js", false, true},
		{"/a/b/node_modules/x.ts", false, false},
		{"/srv/data", false, false},
		{"/srv/data/x", false, true},
		{"/srv/data/x/y", false, true},
		{"/var/tmp", true, true},
		{"/var/a/b/tmp", true, true},
		{"/var/a/b/tmp", false, false},
	} {
		if got := ex.Excluded(tc.path, tc.dir); got != tc.want {
			t.Errorf("Excluded(%s, dir %v) = %v", tc.path, tc.dir, got)
		}
	}
	// A backup of / walks the root's entries, never the root itself;
	// should anything ask, "/**" and "/*" exclude what is below it, not
	// the root, as "/a/**" does not exclude /a.
	for _, pat := range []string{"/**", "/*", "/**/"} {
		ex, _ := snapshot.NewExcluder([]string{pat})
		if ex.Excluded("/", true) || !ex.Excluded("/a", true) {
			t.Errorf("%q: Excluded(/) = %v, Excluded(/a) = %v; want false, true", pat, ex.Excluded("/", true), ex.Excluded("/a", true))
		}
	}
	// "**/" alone: every directory, no file.
	for _, tc := range []struct {
		dir, want bool
	}{{true, true}, {false, false}} {
		ex, _ := snapshot.NewExcluder([]string{"**/"})
		if got := ex.Excluded("/a/b", tc.dir); got != tc.want {
			t.Errorf(`"**/": Excluded(/a/b, dir %v) = %v`, tc.dir, got)
		}
	}
	for _, tc := range []struct {
		pattern string
		want    bool
	}{
		{"**/node_modules", false},
		{"**/node_modules/", false},
		{"/home/**/.cache", false},
		{"**", false},
		{"home/**/.cache", true},
		{"a**/b", true},
		// A first element that matches the empty one before a path's
		// "/" ("*" matches the empty string): these match /x.
		{"*/x", false},
		{"***/x", false},
		{"*/**/x", false},
		{"**/x", false},
		{"*/x/", false},
		{`\/x`, false},
		{`*\/x`, false},
		{"[/]x", false},
		// One that needs a character there matches nothing.
		{"?/x", true},
		{"[a]/x", true},
		{"[^a]/x", true}, // the class takes the "/", leaving "/x" for "x"
		{`\*/x`, true},
		{`a\/x`, true},
		{"*a/x", true},
		{"x", false},
		{"x/", false},
	} {
		if got := snapshot.MatchesNothing(tc.pattern); got != tc.want {
			t.Errorf("MatchesNothing(%q) = %v", tc.pattern, got)
		}
	}
}

// TestExcludedAllocs: Excluded runs for every entry a backup walks; it
// must not allocate, with or without "**".
func TestExcludedAllocs(t *testing.T) {
	for _, patterns := range [][]string{
		{"*.tmp", "node_modules/", "/home/*/.cache"},
		{"**/node_modules/*.js", "/home/**/.cache", "/srv/**"},
	} {
		ex, err := snapshot.NewExcluder(patterns)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { ex.Excluded("/home/alice/src/project/lib/main.go", false) }); n != 0 {
			t.Errorf("%q: %v allocations per Excluded", patterns, n)
		}
	}
}

func BenchmarkExcluded(b *testing.B) {
	for _, bc := range []struct {
		name     string
		patterns []string
	}{
		{"plain", []string{"*.tmp", "node_modules/", "/home/*/.cache", "/var/log/*.gz"}},
		{"globstar", []string{"*.tmp", "node_modules/", "/home/**/.cache", "**/node_modules/*.js"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ex, err := snapshot.NewExcluder(bc.patterns)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for range b.N {
				ex.Excluded("/home/alice/src/project/lib/main.go", false)
			}
		})
	}
}

// TestBackupExcludeGlobstar: "**" excludes at every depth in a real
// backup, and leaves alone what it does not match.
func TestBackupExcludeGlobstar(t *testing.T) {
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	file := fixture.Entry{Content: []byte("x\n"), Mode: 0o644}
	tree := fixture.Tree{
		"node_modules/a.js":          file,
		"node_modules/a.json":        file,
		"app/node_modules/b.js":      file,
		"app/x/y/node_modules/c.js":  file,
		"app/x/y/node_modules/d.css": file,
		"home/.cache/e":              file,
		"home/u/v/.cache/f":          file,
		"home/u/v/keep":              file,
		"data/g":                     file,
		"data/sub/h":                 file,
	}
	fixture.Create(t, src, tree)
	excluded := map[string]bool{
		"node_modules/a.js": true, "app/node_modules/b.js": true, "app/x/y/node_modules/c.js": true,
		"home/.cache": true, "home/.cache/e": true, "home/u/v/.cache": true, "home/u/v/.cache/f": true,
		"data/g": true, "data/sub": true, "data/sub/h": true,
	}
	var lookups []string
	for p := range tree {
		lookups = append(lookups, p)
	}
	lookups = append(lookups, "home/.cache", "home/u/v/.cache", "data", "data/sub")
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{
		Paths:    []string{src},
		Excludes: []string{"**/node_modules/*.js", filepath.Join(src, "home/**/.cache/"), filepath.Join(src, "data") + "/**"},
	}, lookups...)
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v", res.Warnings)
	}
	for i, p := range lookups {
		if got := nodes[i] == nil; got != excluded[p] {
			t.Errorf("%s: excluded %v, want %v", p, got, excluded[p])
		}
	}
}

// TestPatternSlashInElement: with "**" a pattern is matched element by
// element, so an escaped "/" or one inside [...] would be part of an
// element, which no path element holds: such a pattern matched nothing,
// silently, where the same pattern without "**" matches. It is refused,
// by NewPattern and by NewExcluder (so backup, rewrite and restore).
func TestPatternSlashInElement(t *testing.T) {
	for _, glob := range []string{`**/a\/b`, `**/a[/]b`, `/x/**/[a/]`} {
		if _, err := snapshot.NewPattern(glob); err == nil {
			t.Errorf("NewPattern(%q) accepted", glob)
		}
		if _, err := snapshot.NewExcluder([]string{glob}); err == nil {
			t.Errorf("NewExcluder(%q) accepted", glob)
		}
	}
	// Without "**", filepath.Match's syntax, as before.
	for _, glob := range []string{`/x/a\/b`, `/x/a[/]b`, `a\/`} {
		if _, err := snapshot.NewExcluder([]string{glob}); err != nil {
			t.Errorf("NewExcluder(%q): %v", glob, err)
		}
	}
	if !mustPattern(t, `/x/a\/b`).Match("/x/a/b") {
		t.Error(`/x/a\/b does not match /x/a/b`)
	}
}
