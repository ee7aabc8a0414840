package main

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

func TestFindCLI(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{
		"etc/nginx/nginx.conf": {Content: []byte("worker_processes 2;\n")},
		"home/u/.ssh/id_rsa":   {Content: []byte("-----BEGIN KEY-----\n"), Mode: 0o600},
	})
	first := decodeJSON[backupOutput](t, c.ok(r.writer("backup", "--json", src)...).stdout).SnapshotID
	if err := os.Remove(filepath.Join(src, "home/u/.ssh/id_rsa")); err != nil {
		t.Fatal(err)
	}
	second := decodeJSON[backupOutput](t, c.ok(r.writer("backup", "--json", src)...).stdout).SnapshotID

	out := c.ok(r.reader("find", "id_rsa")...).stdout
	if !strings.Contains(out, "snapshot "+first[:8]) || strings.Contains(out, "snapshot "+second[:8]) ||
		!strings.Contains(out, "-rw-------") || !strings.Contains(out, src+"/home/u/.ssh/id_rsa") || !strings.Contains(out, "1 match in 2 snapshots") {
		t.Errorf("find id_rsa: want it in %s only, with its mode:\n%s", first[:8], out)
	}
	// Newest first, a path pattern, JSON.
	lines := strings.Split(strings.TrimSpace(c.ok(r.reader("find", "--json", src+"/etc/*/*.conf")...).stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("find --json: %d lines, want one per snapshot:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	type hit struct {
		Snapshot string `json:"snapshot"`
		Path     string `json:"path"`
		Type     string `json:"type"`
	}
	if h := decodeJSON[hit](t, lines[0]); h.Snapshot != second || h.Path != src+"/etc/nginx/nginx.conf" || h.Type != "file" {
		t.Errorf("first JSON line %+v: want the newest snapshot's nginx.conf", h)
	}
	if out := c.ok(r.reader("find", "--snapshot", first[:8], "nginx.conf")...).stdout; strings.Contains(out, second[:8]) || !strings.Contains(out, "in 1 snapshot searched") {
		t.Errorf("find --snapshot searched other snapshots:\n%s", out)
	}
	// A path without its leading slash; a directory pattern.
	if out := c.ok(r.reader("find", strings.TrimPrefix(src, "/")+"/etc/nginx/*")...).stdout; strings.Count(out, src+"/etc/nginx/nginx.conf") != 2 {
		t.Errorf("find with a relative path pattern:\n%s", out)
	}
	if out := c.ok(r.reader("find", "nginx/")...).stdout; !strings.Contains(out, "drwx") || strings.Contains(out, "nginx.conf") {
		t.Errorf("find nginx/ (directories only):\n%s", out)
	}
	c.fails(1, r.reader("find", "nginx.conf/"), "nothing matches")
	c.fails(1, r.reader("find", "no-such-file"), "nothing matches no-such-file in 2 snapshots")
	c.fails(1, r.reader("find", "--host", "elsewhere", "x"), "no snapshot matches --host")
	c.fails(2, r.reader("find", "/"), "empty pattern")
	c.fails(2, r.reader("find", "[unclosed"), `pattern "[unclosed"`)
	c.fails(1, r.writer("find", "id_rsa"), "needs the identity")
}

// TestFindPatternsGlobstar: find's path patterns take "**" as backup's
// and restore's do, with or without the leading slash.
func TestFindPatternsGlobstar(t *testing.T) {
	file := &snapshot.Node{Type: snapshot.TypeFile}
	dir := &snapshot.Node{Type: snapshot.TypeDir}
	for _, tc := range []struct {
		pattern string
		path    string
		node    *snapshot.Node
		want    bool
	}{
		{"**/.ssh/id_*", "/home/u/.ssh/id_rsa", file, true},
		{"**/.ssh/id_*", "/.ssh/id_rsa", file, true},
		{"/home/**/id_rsa", "/home/a/b/c/id_rsa", file, true},
		{"home/**/id_rsa", "/home/id_rsa", file, true},
		{"/home/**/id_rsa", "/srv/home/id_rsa", file, false},
		{"/etc/**", "/etc", dir, false},
		{"/etc/**", "/etc/nginx/nginx.conf", file, true},
		{"**/nginx/", "/etc/nginx", dir, true},
		{"**/nginx/", "/etc/nginx", file, false},
		{"**", "/etc/nginx", file, true},
		// Cleaned as ls and dump clean a path.
		{"./etc/nginx/*.conf", "/etc/nginx/nginx.conf", file, true},
		{"etc//nginx/", "/etc/nginx", dir, true},
		{"/etc/./nginx/nginx.conf", "/etc/nginx/nginx.conf", file, true},
	} {
		pats, err := parseFindPatterns([]string{tc.pattern})
		if err != nil {
			t.Fatal(err)
		}
		n := *tc.node
		n.Name = path.Base(tc.path)
		if got := matches(pats, tc.path, &n); got != tc.want {
			t.Errorf("find %q on %s: %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

// TestFindDamagedSnapshot: a snapshot whose trees cannot be read does not
// stop the search of the others: find lists what they hold, names the
// damaged one, and exits 1. It stopped at the damaged snapshot, so the
// older backups that still held the file were never searched.
func TestFindDamagedSnapshot(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	packs := func() map[string]bool {
		m := map[string]bool{}
		filepath.WalkDir(filepath.Join(r.path, "data"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				m[p] = true
			}
			return nil
		})
		return m
	}
	old := filepath.Join(c.dir, "old")
	fixture.Create(t, old, fixture.Tree{"id_rsa": {Content: []byte("old key\n")}})
	first := decodeJSON[backupOutput](t, c.ok(r.writer("backup", "--json", old)...).stdout).SnapshotID
	before := packs()
	newer := filepath.Join(c.dir, "new")
	fixture.Create(t, newer, fixture.Tree{"id_rsa": {Content: []byte("new key\n")}})
	second := decodeJSON[backupOutput](t, c.ok(r.writer("backup", "--json", newer)...).stdout).SnapshotID
	// Every blob of the newer backup's packs damaged: its trees too.
	for p := range packs() {
		if before[p] {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(b); i += 32 {
			b[i] ^= 0x10
		}
		os.Chmod(p, 0o600)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res := c.fails(1, r.reader("find", "--no-cache", "id_rsa"), "1 of 2 snapshots could not be searched in full ("+second[:8])
	if !strings.Contains(res.stdout, "snapshot "+first[:8]) || !strings.Contains(res.stdout, old+"/id_rsa") {
		t.Errorf("find id_rsa: want the older snapshot's match listed:\n%s", res.stdout)
	}
	if !strings.Contains(res.stderr, "warning: search snapshot "+second[:8]) {
		t.Errorf("find id_rsa: want a warning naming %s:\n%s", second[:8], res.stderr)
	}
}
