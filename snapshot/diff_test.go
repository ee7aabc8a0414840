package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func TestDiff(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, "local")
	src := t.TempDir()
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	fixture.Create(t, src, fixture.Tree{
		"etc/app.conf":     {Content: []byte("port = 80\n"), MTime: old},
		"etc/keep.conf":    {Content: []byte("same\n"), MTime: old},
		"etc/mode.conf":    {Content: []byte("mode\n"), Mode: 0o644, MTime: old},
		"etc/gone.conf":    {Content: []byte("bye\n"), MTime: old},
		"etc/link":         {Symlink: "app.conf"},
		"var/cache/a.bin":  {Content: fixture.Random(1, 100<<10), MTime: old},
		"var/cache/b.bin":  {Content: fixture.Random(2, 100<<10), MTime: old},
		"srv/untouched/x":  {Content: []byte("x\n"), MTime: old},
		"srv/becomes-dir":  {Content: []byte("a file first\n"), MTime: old},
		"srv/untouched/yy": {Content: []byte("y\n"), MTime: old},
	})
	first := r.backupReload(t, src)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(src, rel) }
	must(os.WriteFile(p("etc/app.conf"), []byte("port = 8080\n"), 0o644))
	must(os.Chtimes(p("etc/app.conf"), old, old))
	must(os.Chmod(p("etc/mode.conf"), 0o600))
	must(os.Remove(p("etc/gone.conf")))
	must(os.Remove(p("etc/link")))
	must(os.Symlink("keep.conf", p("etc/link")))
	must(os.RemoveAll(p("var/cache")))
	must(os.Remove(p("srv/becomes-dir")))
	must(os.MkdirAll(p("srv/becomes-dir/sub"), 0o755))
	must(os.WriteFile(p("srv/becomes-dir/sub/new.txt"), []byte("new\n"), 0o644))
	must(os.WriteFile(p("etc/new.conf"), []byte("hello\n"), 0o644))
	second := r.backupReload(t, src)

	diff := func(at string, a, b *snapshot.Result, opts snapshot.DiffOptions) ([]string, snapshot.DiffStats) {
		t.Helper()
		var an, bn *snapshot.Node
		if a != nil {
			an, _ = snapshot.Lookup(ctx, r.reader, a.Manifest.Tree, at)
		}
		if b != nil {
			bn, _ = snapshot.Lookup(ctx, r.reader, b.Manifest.Tree, at)
		}
		var got []string
		st, err := snapshot.Diff(ctx, r.reader, at, an, bn, opts, func(c snapshot.Change) error {
			got = append(got, fmt.Sprintf("%s %s", c.Kind, strings.TrimPrefix("/"+c.Path, src+"/")))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, st
	}

	got, st := diff("", first, second, snapshot.DiffOptions{})
	// The mode change shows with Metadata only.
	want := []string{
		"M etc/app.conf",
		"- etc/gone.conf",
		"M etc/link", // another target
		"+ etc/new.conf",
		"T srv/becomes-dir",
		"+ srv/becomes-dir/sub",
		"+ srv/becomes-dir/sub/new.txt",
		"- var/cache",
		"- var/cache/a.bin",
		"- var/cache/b.bin",
	}
	if !slices.Equal(got, want) {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantSt := snapshot.DiffStats{Added: 3, Removed: 4, Modified: 2, TypeChanged: 1,
		BytesAdded: 12 + 6 + 4, BytesRemoved: 10 + 4 + 200<<10 + 13}
	if st != wantSt {
		t.Errorf("stats %+v, want %+v", st, wantSt)
	}

	// With metadata: the mode change, and the directories whose times
	// moved.
	got, st = diff("", first, second, snapshot.DiffOptions{Metadata: true})
	for _, w := range []string{"U etc/mode.conf", "U etc", "U srv"} {
		if !slices.Contains(got, w) {
			t.Errorf("diff --metadata does not list %q:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if slices.Contains(got, "U etc/keep.conf") || slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "untouched") }) {
		t.Errorf("diff --metadata lists unchanged entries:\n%s", strings.Join(got, "\n"))
	}
	if st.Metadata < 3 {
		t.Errorf("metadata changes %d, want at least 3", st.Metadata)
	}

	// Below a path; a path on one side only; the same snapshot.
	if got, _ := diff(p("etc"), first, second, snapshot.DiffOptions{}); !slices.Equal(got, want[:4]) {
		t.Errorf("diff below etc: %q, want %q", got, want[:4])
	}
	if got, _ := diff(p("var/cache"), first, second, snapshot.DiffOptions{}); !slices.Equal(got, want[7:]) {
		t.Errorf("diff of a directory only in the first: %q, want %q", got, want[7:])
	}
	if got, st := diff("", second, second, snapshot.DiffOptions{Metadata: true}); len(got) != 0 || st != (snapshot.DiffStats{}) {
		t.Errorf("a snapshot against itself: %q %+v, want nothing", got, st)
	}
	// A second name for a file: its link count changes (U with metadata).
	must(os.Link(p("etc/keep.conf"), p("etc/keep-link")))
	third := r.backupReload(t, src)
	if got, _ := diff(p("etc"), second, third, snapshot.DiffOptions{Metadata: true}); !slices.Contains(got, "U etc/keep.conf") || !slices.Contains(got, "+ etc/keep-link") {
		t.Errorf("diff after a hard link: %q, want etc/keep.conf's link count and the new name", got)
	}
	// An extended attribute set on a file: its metadata changed.
	if err := unix.Lsetxattr(p("srv/untouched/x"), "user.note", []byte("checked"), 0); err == nil {
		fourth := r.backupReload(t, src)
		if got, _ := diff(p("srv"), third, fourth, snapshot.DiffOptions{Metadata: true}); !slices.Contains(got, "U srv/untouched/x") {
			t.Errorf("diff after setting an extended attribute: %q, want srv/untouched/x (U)", got)
		}
	} else if !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}
	// Reversed, additions and removals swap.
	if got, st := diff("", second, first, snapshot.DiffOptions{}); len(got) != len(want) || st.Added != 4 || st.Removed != 3 {
		t.Errorf("reversed diff: %q %+v", got, st)
	}
}
