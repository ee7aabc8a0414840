package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBackupSymlinkTrailingSlash: a backup path that names a symlink to a
// directory, given with a trailing slash, backs up the directory under
// its real path (docs/operations.md, "Backup paths"), not the symlink
// alone; without the slash, the symlink is saved.
func TestBackupSymlinkTrailingSlash(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	real := filepath.Join(c.dir, "data")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "f"), []byte("in the directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(c.dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", link+"/")...)
	ls := strings.Split(c.ok(r.reader("ls", "latest")...).stdout, "\n")
	if !slices.Contains(ls, real+"/f") || slices.Contains(ls, link) {
		t.Errorf("backup %s/: the snapshot lists\n%s\nwant %s/f (and not the symlink)", link, strings.Join(ls, "\n"), real)
	}
	c.ok(r.writer("backup", link)...)
	ls = strings.Split(c.ok(r.reader("ls", "latest")...).stdout, "\n")
	if !slices.Contains(ls, link) || slices.Contains(ls, real+"/f") {
		t.Errorf("backup %s: the snapshot lists\n%s\nwant the symlink alone", link, strings.Join(ls, "\n"))
	}
}

// TestBackupSymlinkDot: "link/." and "link/./" name the directory the
// symlink points to, as "link/" does (the kernel resolves them alike);
// filepath.Abs cleans them to "link", which alone saves the symlink.
func TestBackupSymlinkDot(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	real := filepath.Join(c.dir, "data")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "f"), []byte("in the directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(c.dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{link + "/.", link + "/./"} {
		c.ok(r.writer("backup", arg)...)
		ls := strings.Split(c.ok(r.reader("ls", "latest")...).stdout, "\n")
		if !slices.Contains(ls, real+"/f") || slices.Contains(ls, link) {
			t.Errorf("backup %s: the snapshot lists\n%s\nwant %s/f (and not the symlink)", arg, strings.Join(ls, "\n"), real)
		}
	}
}
