package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCleanPaths: duplicates and paths inside another given path are
// dropped, "data-old" is not inside "data", "/" holds everything, and a
// path below a symlink that is also given is refused.
func TestCleanPaths(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"data/app/x", "data-old", "other", "real/x"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	j := func(ps ...string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, filepath.Join(dir, p))
		}
		return out
	}
	for _, tc := range []struct {
		in, want []string
	}{
		{j("data/app/x", "data-old", "data", "data/app", "data", "other"), j("data", "data-old", "other")},
		{j("data/app/x", "data/app", "data-old"), j("data-old", "data/app")},
		{append(j("data", "other"), "/"), []string{"/"}},
	} {
		got, err := cleanPaths(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("cleanPaths(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := cleanPaths(j("link", "link/x")); err == nil || !strings.Contains(err.Error(), "which is a symlink") {
		t.Errorf("a path below a symlink given too: %v", err)
	}
}

// BenchmarkCleanPaths: the paths of a --files-from list of 20,000 files
// (find -type f), which compared each with every path kept before took
// seconds, growing with the square of the list.
func BenchmarkCleanPaths(b *testing.B) {
	dir := b.TempDir()
	var paths []string
	for d := range 20 {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprint(d)), 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 1000 {
			p := filepath.Join(dir, fmt.Sprint(d), fmt.Sprint(f))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, p)
		}
	}
	b.ResetTimer()
	for range b.N {
		if got, err := cleanPaths(paths); err != nil || len(got) != len(paths) {
			b.Fatalf("cleanPaths: %d paths, %v", len(got), err)
		}
	}
}
