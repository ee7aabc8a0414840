package snapshot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// TestOneFileSystem: with OneFileSystem, a directory below a backup path
// on another filesystem (a mount point) is saved with its own metadata
// but nothing it holds; without it, it is entered. A second backup path
// on that filesystem makes it one of the backup's own.
func TestOneFileSystem(t *testing.T) {
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"a/f": {Content: []byte("on the backup's filesystem\n")}})
	m := filepath.Join(src, "a", "m")
	if err := os.Mkdir(m, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m,mode=0710"); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v", m, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(m, 0); err != nil {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	fixture.Create(t, m, fixture.Tree{"g": {Content: []byte("on another filesystem\n")}, "sub/h": {Content: []byte("below it\n")}})

	for _, tc := range []struct {
		name   string
		one    bool
		paths  []string
		inside bool
	}{
		{"entered by default", false, []string{src}, true},
		{"not entered", true, []string{src}, false},
		{"a backup path of its own", true, []string{src, m}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repos := storetest.InitRepos(t, mem.New())
			res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: tc.paths, OneFileSystem: tc.one}, "a/f", "a/m", "a/m/g", "a/m/sub/h")
			if len(res.Warnings) != 0 {
				t.Fatalf("warnings: %v", res.Warnings)
			}
			if nodes[0] == nil || nodes[1] == nil || nodes[1].Type != snapshot.TypeDir {
				t.Fatalf("a/f %v, mount point a/m %v: want both saved", nodes[0], nodes[1])
			}
			if nodes[1].Mode&0o777 != 0o710 {
				t.Errorf("the mount point's mode %o, want the mounted root's 0710", nodes[1].Mode&0o777)
			}
			if got := nodes[2] != nil && nodes[3] != nil; got != tc.inside {
				t.Errorf("a/m/g %v, a/m/sub/h %v: want them saved: %v", nodes[2], nodes[3], tc.inside)
			}
		})
	}
}

// TestExcludeIfPresent: a directory holding a marker is saved with the
// marker alone, subdirectories and all else left out; a marker with a
// header counts only when the file begins with it (CACHEDIR.TAG's
// signature), so a look-alike file excludes nothing.
func TestExcludeIfPresent(t *testing.T) {
	src := t.TempDir()
	sig := "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n"
	fixture.Create(t, src, fixture.Tree{
		"cache/CACHEDIR.TAG":    {Content: []byte(sig)},
		"cache/junk":            {Content: []byte("rebuilt at will\n")},
		"cache/deep/more":       {Content: []byte("below\n")},
		"notcache/CACHEDIR.TAG": {Content: []byte("Signature: something else\n")},
		"notcache/keep":         {Content: []byte("not a cache\n")},
		"short/CACHEDIR.TAG":    {Content: []byte("Signature")},
		"short/keep":            {Content: []byte("shorter than the signature\n")},
		"dirtag/CACHEDIR.TAG/x": {Content: []byte("a directory of the name\n")},
		"dirtag/keep":           {Content: []byte("no regular file\n")},
		"nb/.nobackup":          {Content: nil},
		"nb/y":                  {Content: []byte("left out\n")},
		"plain/z":               {Content: []byte("kept\n")},
	})
	repos := storetest.InitRepos(t, mem.New())
	lookups := []string{"cache/CACHEDIR.TAG", "cache/junk", "cache/deep", "notcache/keep", "short/keep", "dirtag/keep", "nb/.nobackup", "nb/y", "plain/z", "cache", "nb"}
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}, ExcludeIfPresent: []string{snapshot.CacheDirTag, ".nobackup"}}, lookups...)
	if len(res.Warnings) != 0 {
		t.Fatalf("warnings: %v", res.Warnings)
	}
	want := []bool{true, false, false, true, true, true, true, false, true, true, true}
	for i, p := range lookups {
		if got := nodes[i] != nil; got != want[i] {
			t.Errorf("%s saved: %v, want %v", p, got, want[i])
		}
	}

	_, err := snapshot.Backup(t.Context(), repos.Writer, snapshot.BackupOptions{Host: "h", Paths: []string{src}, ExcludeIfPresent: []string{"a/b:x"}})
	if err == nil || !strings.Contains(err.Error(), `"a/b:x"`) {
		t.Errorf("a marker name with a slash: %v", err)
	}
}

// TestExcludeIfPresentLongHeader: a marker's header longer than 4 KiB
// counts as any other, when the file begins with it.
func TestExcludeIfPresentLongHeader(t *testing.T) {
	src := t.TempDir()
	header := strings.Repeat("h", 5000)
	fixture.Create(t, src, fixture.Tree{
		"m/TAG":  {Content: []byte(header + "\nmore\n")},
		"m/junk": {Content: []byte("left out\n")},
		"n/TAG":  {Content: []byte(header[:4999])},
		"n/keep": {Content: []byte("kept\n")},
	})
	repos := storetest.InitRepos(t, mem.New())
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}, ExcludeIfPresent: []string{"TAG:" + header}}, "m/TAG", "m/junk", "n/keep")
	if len(res.Warnings) != 0 || nodes[0] == nil || nodes[1] != nil || nodes[2] == nil {
		t.Errorf("warnings %v; m/TAG %v, m/junk %v, n/keep %v: want m/junk alone left out", res.Warnings, nodes[0], nodes[1], nodes[2])
	}
}

// TestExcludeLargerThan: files larger than the limit are left out
// without a warning, those up to it kept; a backup path itself larger
// is named in a warning (the snapshot is partial), as an excluded
// backup path is.
func TestExcludeLargerThan(t *testing.T) {
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"big":   {Content: fixture.Random(1, 1001)},
		"limit": {Content: fixture.Random(2, 1000)},
		"small": {Content: []byte("small\n")},
	})
	repos := storetest.InitRepos(t, mem.New())
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}, ExcludeLargerThan: 1000}, "big", "limit", "small")
	if len(res.Warnings) != 0 || nodes[0] != nil || nodes[1] == nil || nodes[2] == nil {
		t.Fatalf("warnings %v; big %v, limit %v, small %v: want big alone left out", res.Warnings, nodes[0], nodes[1], nodes[2])
	}
	big := filepath.Join(src, "big")
	res, _ = backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{big}, ExcludeLargerThan: 1000})
	if w := warned(res, big); len(w) != 1 || !strings.Contains(w[0], "exclude-larger-than") {
		t.Errorf("a backup path larger than the limit: warnings %v", res.Warnings)
	}
}
