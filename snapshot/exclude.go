package snapshot

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Excluder decides which paths a backup skips. A pattern without a slash
// matches any single path element ("*.tmp", "node_modules"); a pattern
// with a slash matches the whole absolute path ("/home/*/.cache",
// "/home/**/.cache"). A leading "**/" lets one match at any depth
// ("**/node_modules/*.js": its "**" takes the leading "/" and the
// elements after it). A trailing slash makes a pattern match directories
// only ("node_modules/", "/var/cache/*/"), and does not count as its
// slash. Patterns use Pattern's syntax (filepath.Match's, with "**");
// an excluded directory is not descended into.
type Excluder struct {
	base, full []exclPattern
}

type exclPattern struct {
	pattern Pattern
	dirOnly bool
}

// MatchesNothing reports whether pattern can match no path: it has a
// slash, so it is matched against whole paths, but no beginning of it
// can match the "/" every such path starts with ("var/log/*" where
// "/var/log/*" was meant, "?/x"). filepath.Match itself decides, so
// that "*" matching the empty first element ("*/x", "***/x", "*/**/x"
// match /x), "**/" (any depth), an escaped "\/" and a class holding
// "/" count as they do when matching. It looks at the start only: an
// element further on that matches no name is too rare to be worth
// proving.
func MatchesNothing(pattern string) bool {
	t := strings.TrimRight(pattern, "/")
	if !strings.Contains(t, "/") {
		return false
	}
	// The pattern's part that matches the leading "/" ends a prefix of
	// it that matches "/" alone (a prefix cut inside an escape or a
	// class is malformed and matches nothing), and what follows cannot
	// start with a second "/": paths are clean ("[^a]/x" would need //x).
	for i := 1; i <= len(t); i++ {
		if ok, _ := filepath.Match(t[:i], "/"); ok && !strings.HasPrefix(t[i:], "/") {
			return false
		}
	}
	return true
}

// NewExcluder validates the patterns.
func NewExcluder(patterns []string) (*Excluder, error) {
	e := &Excluder{}
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		trimmed := strings.TrimRight(p, "/")
		// Only a pattern ending in an escaped slash ("a\\/") gets here
		// valid and leaves invalid: it matched nothing before, and still
		// does (the zero Pattern matches only "").
		pat, err := NewPattern(trimmed)
		if errors.Is(err, ErrSlashInElement) {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		ep := exclPattern{pattern: pat, dirOnly: trimmed != p}
		switch {
		case trimmed == "":
			// "" or "/": matches nothing, as before
		case strings.Contains(trimmed, "/"):
			e.full = append(e.full, ep)
		default:
			e.base = append(e.base, ep)
		}
	}
	return e, nil
}

// Excluded reports whether path (absolute, cleaned), a directory if
// isDir, is excluded. It runs for every entry a backup walks, so it
// calls filepath.Match itself for patterns without "**" (Pattern.Match
// is not inlined): they cost what they did before there was "**".
func (e *Excluder) Excluded(path string, isDir bool) bool {
	base := filepath.Base(path)
	for i := range e.base {
		p := &e.base[i]
		if p.dirOnly && !isDir {
			continue
		}
		if p.pattern.globstar {
			if matchElems(p.pattern.elems, base) {
				return true
			}
		} else if ok, _ := filepath.Match(p.pattern.glob, base); ok {
			return true
		}
	}
	for i := range e.full {
		p := &e.full[i]
		if p.dirOnly && !isDir {
			continue
		}
		if p.pattern.globstar || path == "/" {
			// The root as Match sees it: "/*" and "/**" hold what is
			// below it, not the root itself.
			if matchElems(p.pattern.elems, path) {
				return true
			}
		} else if ok, _ := filepath.Match(p.pattern.glob, path); ok {
			return true
		}
	}
	return false
}
