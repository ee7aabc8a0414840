package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestJSONNamesThatAreNotUTF8: a name or link target that is not UTF-8
// cannot travel in a JSON string (encoding/json writes U+FFFD for its
// bytes, so "caf\xe9" and "caf\xe8" would print the same). ls, find,
// diff and restore --json give its exact bytes in a _b64 twin; valid
// names get none. As text, ls and diff print such names quoted.
func TestJSONNamesThatAreNotUTF8(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	latin1 := "caf\xe9"  // "café" in ISO 8859-1
	latin1b := "caf\xe8" // another name that prints the same
	target := "../d\xe9j\xe0"
	for _, name := range []string{latin1, latin1b, "plain"} {
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", src)...)
	snaps := decodeJSON[[]struct {
		ID string `json:"id"`
	}](t, c.ok(r.reader("snapshots", "--json")...).stdout)
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots, want 1", len(snaps))
	}
	first := snaps[0].ID
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	type entry struct {
		Name          string `json:"name"`
		NameB64       string `json:"name_b64"`
		Path          string `json:"path"`
		PathB64       string `json:"path_b64"`
		LinkTarget    string `json:"link_target"`
		LinkTargetB64 string `json:"link_target_b64"`
	}
	lines := func(out string) []string { return strings.Split(strings.TrimSpace(out), "\n") }
	seen := map[string]bool{}
	for _, l := range lines(c.ok(r.reader("ls", "--json", "latest", src)...).stdout) {
		e := decodeJSON[entry](t, l)
		switch filepath.Base(e.Path) {
		case "plain", filepath.Base(src):
			if e.NameB64 != "" || e.PathB64 != "" {
				t.Errorf("%s: _b64 fields for a UTF-8 name: %+v", e.Path, e)
			}
			seen[e.Path] = true
			continue
		case "link":
			if e.LinkTargetB64 != b64(target) {
				t.Errorf("link: link_target_b64 %q, want the bytes of %q", e.LinkTargetB64, target)
			}
			seen["link"] = true
			continue
		}
		for _, name := range []string{latin1, latin1b} {
			if e.NameB64 == b64(name) {
				if e.PathB64 != b64(src+"/"+name) {
					t.Errorf("%q: path_b64 %q, want the bytes of %q", name, e.PathB64, src+"/"+name)
				}
				if !strings.Contains(e.Name, "\uFFFD") {
					t.Errorf("%q: name %q, want the readable, lossy form beside name_b64", name, e.Name)
				}
				seen[name] = true
			}
		}
	}
	for _, want := range []string{latin1, latin1b, "link", src + "/plain"} {
		if !seen[want] {
			t.Errorf("ls --json: no entry for %q with its exact bytes", want)
		}
	}
	// As text, such names are quoted, so no two print alike and none can
	// forge a line.
	long := c.ok(r.reader("ls", "-l", "latest", src)...).stdout
	for _, want := range []string{strconv.Quote(src + "/" + latin1), strconv.Quote(src + "/" + latin1b), "-> " + strconv.Quote(target), " " + src + "/plain\n"} {
		if !strings.Contains(long, want) {
			t.Errorf("ls -l does not show %s:\n%s", want, long)
		}
	}

	// find and diff carry the same fields.
	found := lines(c.ok(r.reader("find", "--json", "caf*")...).stdout)
	if len(found) != 2 {
		t.Fatalf("find caf*: %d entries, want 2:\n%s", len(found), strings.Join(found, "\n"))
	}
	for _, l := range found {
		e := decodeJSON[entry](t, l)
		if e.NameB64 != b64(latin1) && e.NameB64 != b64(latin1b) {
			t.Errorf("find --json: name_b64 %q is neither name's bytes", e.NameB64)
		}
	}
	if err := os.WriteFile(filepath.Join(src, latin1), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", src)...)
	var diffed bool
	for _, l := range lines(c.ok(r.reader("diff", "--json", first, "latest")...).stdout) {
		if e := decodeJSON[entry](t, l); e.PathB64 == b64(src+"/"+latin1) {
			diffed = true
		}
	}
	if !diffed {
		t.Errorf("diff --json: no change with path_b64 of %q", latin1)
	}
	if out := c.ok(r.reader("diff", first, "latest")...).stdout; !strings.Contains(out, "M    "+strconv.Quote(src+"/"+latin1)+"\n") {
		t.Errorf("diff does not list %s quoted:\n%s", strconv.Quote(src+"/"+latin1), out)
	}

	// A dry run over a restore that holds other content lists the
	// replacement by its exact bytes.
	dst := filepath.Join(c.dir, "dst")
	c.ok(r.reader("restore", first, "--target", dst)...)
	dry := decodeJSON[struct {
		Changes []entry `json:"changes"`
	}](t, c.ok(r.reader("restore", "latest", "--target", dst, "--dry-run", "--json")...).stdout)
	if len(dry.Changes) != 1 || dry.Changes[0].PathB64 != b64(src+"/"+latin1) {
		t.Errorf("restore --dry-run --json changes %+v, want one with path_b64 of %q", dry.Changes, src+"/"+latin1)
	}
}

// TestSnapshotsTableEscapes: the snapshots table prints a host, path or
// tag with control characters quoted (Go syntax, as ls prints names), so
// that a stream named "a\nb" or a host with a terminal escape cannot
// break the table or forge a row; a tag with a comma or surrounding space
// (refused by 'tag', but a manifest may hold one) is quoted too, since
// the column joins tags with commas. --json gives them as they are.
func TestSnapshotsTableEscapes(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	host, name := "h\x1b[31m", "a\nb"
	c.input([]byte("x")).ok(r.writer("backup", "--stdin", "--stdin-filename", name, "--host", host, "--tag", "plain tag")...)
	w := openWriter(t, r)
	snaps, _, err := snapshot.List(t.Context(), w)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("%d snapshots (%v), want 1", len(snaps), err)
	}
	m := snaps[0].Manifest
	m.Host, m.Tags = "other", []string{"x,y", " pad", "ok\t"}
	if _, err := snapshot.Save(t.Context(), w, m); err != nil {
		t.Fatal(err)
	}

	out := c.ok(r.reader("snapshots")...).stdout
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 {
		t.Fatalf("the table has %d lines, want a header, 2 rows and the count:\n%s", len(lines), out)
	}
	for _, want := range []string{strconv.Quote(host), strconv.Quote("/" + name), "plain tag", `"x,y"," pad","ok\t"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("the table holds a raw escape:\n%q", out)
	}
	js := c.ok(r.reader("snapshots", "--json")...).stdout
	for _, want := range []string{`"h\u001b[31m"`, `"/a\nb"`, `"x,y"`} {
		if !strings.Contains(js, want) {
			t.Errorf("--json lacks %s:\n%s", want, js)
		}
	}
}

// TestSnapshotsJSONNotUTF8: a backed-up path, host and tag that are not
// UTF-8 keep their bytes in the snapshot, are listed quoted, and have
// _b64 twins in snapshots --json; dump without PATH finds the path the
// snapshot records, and --path selects it.
func TestSnapshotsJSONNotUTF8(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "caf\xe9")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", "--host", "h\xff", "--tag", "t\xfe", src)...)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	snaps := decodeJSON[[]struct {
		HostB64  string   `json:"host_b64"`
		PathsB64 []string `json:"paths_b64"`
		TagsB64  []string `json:"tags_b64"`
	}](t, c.ok(r.reader("snapshots", "--json", "--path", src)...).stdout)
	if len(snaps) != 1 {
		t.Fatalf("snapshots --path %q: %d snapshots, want 1", src, len(snaps))
	}
	if s := snaps[0]; s.HostB64 != b64("h\xff") || len(s.PathsB64) != 1 || s.PathsB64[0] != b64(src) || len(s.TagsB64) != 1 || s.TagsB64[0] != b64("t\xfe") {
		t.Errorf("snapshots --json: %+v, want the exact bytes of the host, path and tag", s)
	}
	if out := c.ok(r.reader("snapshots")...).stdout; !strings.Contains(out, strconv.Quote(src)) || !strings.Contains(out, `"h\xff"`) {
		t.Errorf("snapshots: %q, want the path and the host quoted", out)
	}
	if out := c.ok(r.reader("dump", "latest")...).stdout; !strings.Contains(out, "x") {
		t.Errorf("dump latest: %q, want a tar of %q", out, src)
	}
	// The group forget prints and the host find prints are quoted too:
	// caf\xe9 and caf\xe8 would both show as caf\uFFFD.
	if out := c.ok(r.reader("forget", "--keep-last", "1", "--dry-run")...).stdout; !strings.Contains(out, "host "+strconv.Quote("h\xff")+", paths "+strconv.Quote(src)+":") {
		t.Errorf("forget: %q, want the group's host and path quoted", out)
	}
	if out := c.ok(r.reader("find", "f")...).stdout; !strings.Contains(out, "host "+strconv.Quote("h\xff")+":") {
		t.Errorf("find: %q, want the host quoted", out)
	}
}
