package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

func TestDiffCLI(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{
		"www/index.html": {Content: []byte("<h1>hello</h1>\n")},
		"www/old.js":     {Content: []byte("alert(1)\n")},
	})
	first := decodeJSON[backupOutput](t, c.ok(r.writer("backup", "--json", src)...).stdout).SnapshotID
	if err := os.WriteFile(filepath.Join(src, "www/index.html"), []byte("<h1>pwned</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "www/old.js")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "www/README.txt"), []byte("your files are encrypted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", src)...)

	out := c.ok(r.reader("diff", first[:8], "latest")...).stdout
	for _, w := range []string{"M    " + src + "/www/index.html\n", "-    " + src + "/www/old.js\n",
		"+    " + src + "/www/README.txt\n", "1 added, 1 removed, 1 modified, 0 changed type"} {
		if !strings.Contains(out, w) {
			t.Errorf("diff output does not contain %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "U ") {
		t.Errorf("diff without --metadata lists metadata changes:\n%s", out)
	}

	lines := strings.Split(strings.TrimSpace(c.ok(r.reader("diff", "--json", first, "latest", src+"/www")...).stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("diff --json: %d lines, want 3 changes and the statistics:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	type node struct {
		Type string `json:"type"`
		Size uint64 `json:"size"`
	}
	type line struct {
		MessageType string `json:"message_type"`
		Change      string `json:"change"`
		Path        string `json:"path"`
		Old, New    *node
		Added       int64 `json:"added"`
		Removed     int64 `json:"removed"`
		Modified    int64 `json:"modified"`
	}
	ch := decodeJSON[line](t, lines[0])
	if ch.MessageType != "change" || ch.Change != "+" || ch.Path != src+"/www/README.txt" || ch.Old != nil || ch.New == nil || ch.New.Size != 25 || ch.New.Type != "file" {
		t.Errorf("first change %+v: want README.txt added, 25 bytes", ch)
	}
	if m := decodeJSON[line](t, lines[1]); m.Change != "M" || m.Old == nil || m.New == nil || m.Old.Size != 15 || m.New.Size != 15 {
		t.Errorf("second change %+v: want index.html modified, both sides", m)
	}
	stats := decodeJSON[line](t, lines[3])
	if stats.MessageType != "statistics" || stats.Added != 1 || stats.Removed != 1 || stats.Modified != 1 {
		t.Errorf("statistics %+v", stats)
	}

	c.fails(1, r.reader("diff", first, "latest", "/nowhere"), "/nowhere is in neither snapshot")
	c.fails(1, r.writer("diff", first, "latest"), "needs the identity")
	c.fails(2, r.reader("diff", first), "missing two snapshots")
}
