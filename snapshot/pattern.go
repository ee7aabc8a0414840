package snapshot

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Pattern is a path pattern in filepath.Match syntax with one addition:
// "**" as a whole path element matches zero or more elements, so
// "/home/**/.cache" matches /home/.cache and /home/a/b/.cache, and
// "**/node_modules" matches a node_modules at any depth. A trailing
// "/**" matches everything below the path before it, not that path
// itself ("/var/cache/**" matches /var/cache/x, not /var/cache), as in
// restic and .gitignore. The root "/" is a path of one element, the
// empty one before its "/": "/**" and "/*" match what is below it, not
// the root itself, as "/a/**" and "/a/*" do not match /a. Inside an element "**" is just "*" ("foo**",
// "a**b"), and an escaped "\*\*" is a literal name. Matching takes at
// most elements × pattern elements steps, however many "**"s there are.
//
// Every place that takes patterns (backup and rewrite excludes, restore
// includes and excludes, find) matches through Pattern, so they agree.
type Pattern struct {
	glob string
	// elems is glob split at "/", with a trailing "**" written as "*"
	// and "**" (at least one element). matchElems uses it when glob has
	// a "**" element; MayMatchBelow always does.
	elems    []string
	globstar bool
}

// ErrSlashInElement is NewPattern's error for a pattern with "**"
// whose "/" is escaped or inside [...].
var ErrSlashInElement = errors.New("syntax error in pattern")

// globstar is the element that matches any number of elements.
const globstar = "**"

// NewPattern checks glob's syntax and compiles it. A glob that was
// valid for filepath.Match stays valid, unless it has a "**" element and
// a "/" escaped or inside [...] (ErrSlashInElement): it would match
// nothing.
func NewPattern(glob string) (Pattern, error) {
	if _, err := filepath.Match(glob, ""); err != nil {
		return Pattern{}, err
	}
	p := Pattern{glob: glob, elems: strings.Split(glob, "/")}
	for _, e := range p.elems {
		if e == globstar {
			p.globstar = true
			break
		}
	}
	if p.globstar {
		// Matched element by element: a "/" escaped or inside [...]
		// would leave an element that matches no path element.
		for _, e := range p.elems {
			if _, err := filepath.Match(e, ""); err != nil {
				return Pattern{}, fmt.Errorf("%w: with \"**\", a \"/\" separates elements; it cannot be escaped or inside [...]", ErrSlashInElement)
			}
		}
	}
	if n := len(p.elems); p.globstar && n > 1 && p.elems[n-1] == globstar {
		p.elems = append(p.elems[:n-1], "*", globstar)
	}
	return p, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.glob }

// Match reports whether name, a slash-separated path, matches p. A
// pattern without a "**" element costs what filepath.Match costs, and
// no pattern allocates.
func (p Pattern) Match(name string) bool {
	if !p.globstar && name != "/" {
		ok, _ := filepath.Match(p.glob, name)
		return ok
	}
	return matchElems(p.elems, name)
}

// matchElems matches name's elements against elems, each element with
// filepath.Match, each "**" taking any number of elements. It is the
// classic greedy wildcard algorithm over elements instead of bytes: on
// a mismatch only the latest "**" takes one more element and matching
// resumes after it. Earlier "**"s never need to be revisited, so the
// cost stays at most len(elems) × elements of name, where a naive
// recursion would be exponential in the number of "**"s.
func matchElems(elems []string, name string) bool {
	// ni is the offset of name's next element; end means no element left.
	end := len(name) + 1
	if name == "/" {
		// The root: its "/" ends the one (empty) element, as a "/"
		// between elements does; no second one follows it.
		end = 1
	}
	pi, ni := 0, 0
	starPi, starNi := -1, 0
	for ni < end {
		if pi < len(elems) && elems[pi] == globstar {
			starPi, starNi = pi, ni
			pi++
			continue
		}
		elem, next := nextElem(name, ni)
		if pi < len(elems) {
			if ok, _ := filepath.Match(elems[pi], elem); ok {
				pi, ni = pi+1, next
				continue
			}
		}
		if starPi < 0 {
			return false
		}
		_, starNi = nextElem(name, starNi)
		pi, ni = starPi+1, starNi
	}
	for pi < len(elems) && elems[pi] == globstar {
		pi++
	}
	return pi == len(elems)
}

// nextElem returns the element of name at offset i, and the offset of
// the one after it (len(name)+1 after the last).
func nextElem(name string, i int) (elem string, next int) {
	j := strings.IndexByte(name[i:], '/')
	if j < 0 {
		return name[i:], len(name) + 1
	}
	return name[i : i+j], i + j + 1
}

// MayMatchBelow reports whether a path below dir (dir followed by one or
// more elements) may match p. A true answer may be wrong, a false one
// never is: callers prune the walk on false, and pruning a directory
// that holds a match would silently drop it.
func (p Pattern) MayMatchBelow(dir string) bool {
	// Simulate the pattern as an automaton whose states are positions
	// in elems: at[i] means elems[:i] can match the elements seen so
	// far. A "**" at i lets the walk both stay at i and skip to i+1.
	n := len(p.elems)
	at, nextAt := make([]bool, n+1), make([]bool, n+1)
	at[0] = true
	p.skipStars(at)
	for i := 0; i < len(dir)+1; {
		elem, next := nextElem(dir, i)
		clear(nextAt)
		alive := false
		for s := 0; s < n; s++ {
			if !at[s] {
				continue
			}
			if p.elems[s] == globstar {
				nextAt[s], alive = true, true
			} else if ok, _ := filepath.Match(p.elems[s], elem); ok {
				nextAt[s+1], alive = true, true
			}
		}
		if !alive {
			return false
		}
		p.skipStars(nextAt)
		at, nextAt = nextAt, at
		i = next
	}
	// Any state short of the end has an element left to match one more
	// path element: a "**" takes anything; an element that matches
	// no name at all is too rare to be worth proving.
	for s := 0; s < n; s++ {
		if at[s] {
			return true
		}
	}
	return false
}

// skipStars adds to at the states reached by letting "**"s match zero
// elements.
func (p Pattern) skipStars(at []bool) {
	for s := 0; s < len(p.elems); s++ {
		if at[s] && p.elems[s] == globstar {
			at[s+1] = true
		}
	}
}
