package restore

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestExtraneousStopsWhenCancelled: once the context ends, nothing more
// is handed over for removal, and the walk reports why it stopped.
func TestExtraneousStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	td := testTarget(t, dir)
	in, _ := newIncluder(nil, nil)
	r := &restorer{t: td, guard: &deleteGuard{}}
	var removed []string
	fn := func(p string, dir bool) { removed = append(removed, p) }
	fail := func(p string, err error) { t.Errorf("%s: %v", p, err) }

	if err := r.extraneous(context.Background(), &plan{}, []string{"/"}, nil, in, fn, fail); err != nil || !reflect.DeepEqual(removed, []string{"a", "b", "c"}) {
		t.Fatalf("extraneous = %v, found %v; want a, b, c", err, removed)
	}
	removed = nil
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.extraneous(ctx, &plan{}, []string{"/"}, nil, in, fn, fail); err != context.Canceled || len(removed) != 0 {
		t.Errorf("cancelled: extraneous = %v, found %v; want context.Canceled and nothing", err, removed)
	}
}

func TestDeleteGuard(t *testing.T) {
	info := filepath.Join(t.TempDir(), "mountinfo")
	lines := "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" +
		"30 22 0:40 / /srv/app/data rw - tmpfs tmpfs rw\n" +
		"31 22 0:41 / /srv/app/with\\040space rw - tmpfs tmpfs rw\n" +
		"32 22 0:42 / /srv/application rw - tmpfs tmpfs rw\n" +
		"33 22 0:43 / /srv/app rw - tmpfs tmpfs rw\n"
	if err := os.WriteFile(info, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := newDeleteGuard("/srv/app", []string{"/srv/app/backups/repo", "/elsewhere/id.txt", "/srv/app"}, info)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"data", "with space"}; !reflect.DeepEqual(g.mounts, want) {
		t.Errorf("mount points below the target %q, want %q", g.mounts, want)
	}
	if want := []string{"backups/repo"}; !reflect.DeepEqual(g.protect, want) {
		t.Errorf("protected paths below the target %q, want %q", g.protect, want)
	}
	for p, spared := range map[string]bool{
		"data": true, "data/x": false, "with space": true, "backups": true, "backups/repo": true,
		"backups/repo/data": true, "backups/other": false, "dat": false, "backups-old": false,
	} {
		if got := g.why(p) != ""; got != spared {
			t.Errorf("why(%q) = %q: spared %v, want %v", p, g.why(p), got, spared)
		}
	}
	if _, err := newDeleteGuard("/srv/app", nil, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a mount table that cannot be read was taken as empty")
	}
}

// TestExtraneousSkipsEmptyMountPoint: a mount point the snapshot holds
// empty (as a backup with -x saves one) is not looked in, so what that
// file system holds stays; one the snapshot holds something in, and an
// empty directory that is no mount point, are looked in as before.
func TestExtraneousSkipsEmptyMountPoint(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"mnt/x", "mnt/y"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := newIncluder(nil, nil)
	fail := func(p string, err error) { t.Errorf("%s: %v", p, err) }
	for _, tc := range []struct {
		name   string
		mounts []string
		files  []*fileState
		want   []string
	}{
		{"empty mount point", []string{"mnt"}, nil, nil},
		{"mount point with content", []string{"mnt"}, []*fileState{{path: "mnt/y"}}, []string{"mnt/x"}},
		{"empty directory", nil, nil, []string{"mnt/x", "mnt/y"}},
	} {
		r := &restorer{t: testTarget(t, dir), guard: &deleteGuard{mounts: tc.mounts}, log: slog.New(slog.DiscardHandler)}
		var removed []string
		fn := func(p string, dir bool) { removed = append(removed, p) }
		pl := &plan{dirs: []*entry{{path: "mnt"}}, files: tc.files}
		if err := r.extraneous(context.Background(), pl, []string{"/"}, nil, in, fn, fail); err != nil || !reflect.DeepEqual(removed, tc.want) {
			t.Errorf("%s: extraneous = %v, found %q; want %q", tc.name, err, removed, tc.want)
		}
	}
}
