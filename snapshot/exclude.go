package snapshot

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Excluder decides which paths a backup skips. A pattern without a slash
// matches any single path element ("*.tmp", "node_modules"); a pattern
// with a slash matches the whole absolute path ("/home/*/.cache").
// Patterns use filepath.Match syntax; an excluded directory is not
// descended into.
type Excluder struct {
	base []string
	full []string
}

// NewExcluder validates the patterns.
func NewExcluder(patterns []string) (*Excluder, error) {
	e := &Excluder{}
	for _, p := range patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		if strings.Contains(p, "/") {
			e.full = append(e.full, strings.TrimSuffix(p, "/"))
		} else if p != "" {
			e.base = append(e.base, p)
		}
	}
	return e, nil
}

// Excluded reports whether path (absolute, cleaned) is excluded.
func (e *Excluder) Excluded(path string, isDir bool) bool {
	base := filepath.Base(path)
	for _, p := range e.base {
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
	}
	for _, p := range e.full {
		if ok, _ := filepath.Match(p, path); ok {
			return true
		}
	}
	return false
}
