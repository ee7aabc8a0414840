package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestSnapshotsLatest: --latest N lists the N newest snapshots of each
// host and set of paths, oldest first as without it, and works with the
// filters; a negative N is a usage error.
func TestSnapshotsLatest(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	a, b := filepath.Join(c.dir, "a"), filepath.Join(c.dir, "b")
	fixture.Create(t, a, fixture.Tree{"f": {Content: []byte("a\n")}})
	fixture.Create(t, b, fixture.Tree{"f": {Content: []byte("b\n")}})
	var ids []string // in the order made
	backup := func(host, path string) {
		ids = append(ids, decodeJSON[struct {
			ID string `json:"snapshot_id"`
		}](t, c.ok(r.writer("backup", "--json", "--host", host, path)...).stdout).ID)
	}
	backup("h1", a) // 0
	backup("h2", a) // 1
	backup("h1", a) // 2
	backup("h1", b) // 3
	backup("h2", a) // 4
	backup("h1", a) // 5
	list := func(args ...string) []string {
		var out []string
		for _, s := range decodeJSON[[]struct{ ID string }](t, c.ok(r.writer(append([]string{"snapshots", "--json"}, args...)...)...).stdout) {
			out = append(out, s.ID)
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want []int
	}{
		{[]string{"--latest", "1"}, []int{3, 4, 5}},
		{[]string{"--latest", "2"}, []int{1, 2, 3, 4, 5}},
		{[]string{"--latest", "1", "--host", "h1"}, []int{3, 5}},
		{[]string{"--latest", "0"}, []int{0, 1, 2, 3, 4, 5}},
	} {
		var want []string
		for _, i := range tc.want {
			want = append(want, ids[i])
		}
		if got := list(tc.args...); !slices.Equal(got, want) {
			t.Errorf("snapshots %v: %v, want %v", tc.args, got, want)
		}
	}
	c.fails(2, r.writer("snapshots", "--latest", "-1"), "--latest must not be negative")
}
