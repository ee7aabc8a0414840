package snapshot

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Excluder decides which paths a backup skips. A pattern without a slash
// matches any single path element ("*.tmp", "node_modules"); a pattern
// with a slash matches the whole absolute path ("/home/*/.cache"). A
// trailing slash makes a pattern match directories only
// ("node_modules/", "/var/cache/*/"), and does not count as its slash.
// Patterns use filepath.Match syntax; an excluded directory is not
// descended into.
type Excluder struct {
	base, full []exclPattern
}

type exclPattern struct {
	pattern string
	dirOnly bool
}

// MatchesNothing reports whether pattern can match no path: it has a
// slash, so it is matched against whole paths, but does not start with
// one, as every path does ("var/log/*" where "/var/log/*" was meant).
func MatchesNothing(pattern string) bool {
	t := strings.TrimRight(pattern, "/")
	return strings.Contains(t, "/") && !strings.HasPrefix(t, "/")
}

// NewExcluder validates the patterns.
func NewExcluder(patterns []string) (*Excluder, error) {
	e := &Excluder{}
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		trimmed := strings.TrimRight(p, "/")
		ep := exclPattern{pattern: trimmed, dirOnly: trimmed != p}
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
// isDir, is excluded.
func (e *Excluder) Excluded(path string, isDir bool) bool {
	base := filepath.Base(path)
	for _, p := range e.base {
		if ok, _ := filepath.Match(p.pattern, base); ok && (isDir || !p.dirOnly) {
			return true
		}
	}
	for _, p := range e.full {
		if ok, _ := filepath.Match(p.pattern, path); ok && (isDir || !p.dirOnly) {
			return true
		}
	}
	return false
}
