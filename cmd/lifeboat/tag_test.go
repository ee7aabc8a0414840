package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestTagCLI: a legal hold. A snapshot tagged hold survives forget's
// rules and forget by ID with --keep-tag hold; lifting the hold lets
// forget remove it; the usage errors.
func TestTagCLI(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	dir := filepath.Join(c.dir, "d")
	fixture.Create(t, dir, fixture.Tree{"f": {Content: []byte("one\n")}})
	type snap struct {
		ID   string   `json:"id"`
		Tags []string `json:"tags"`
	}
	list := func() []snap { return decodeJSON[[]snap](t, c.ok(r.writer("snapshots", "--json")...).stdout) }
	for i := range 3 {
		fixture.Create(t, dir, fixture.Tree{"f": {Content: []byte(strings.Repeat("x", i+1))}})
		c.ok(r.writer("backup", "--tag", "daily", dir)...)
	}
	oldest := list()[0].ID

	type tagOut struct {
		Old  string   `json:"old"`
		New  string   `json:"new"`
		Tags []string `json:"tags"`
	}
	res := decodeJSON[[]tagOut](t, c.ok(r.writer("tag", "--add", "hold", "--json", oldest[:8])...).stdout)
	if len(res) != 1 || res[0].Old != oldest || res[0].New == oldest || strings.Join(res[0].Tags, ",") != "daily,hold" {
		t.Fatalf("tag --add hold: %+v", res)
	}
	held := res[0].New

	out := c.ok(r.writer("forget", "--keep-last", "1", "--keep-tag", "hold")...).stdout
	if !strings.Contains(out, "tagged hold") || !strings.Contains(out, "removed 1 snapshot") {
		t.Errorf("forget --keep-last 1 --keep-tag hold:\n%s", out)
	}
	out = c.ok(r.writer("forget", "--keep-tag", "hold", held[:8])...).stdout
	if !strings.Contains(out, "removed 0 snapshots") {
		t.Errorf("forget of a held snapshot by ID:\n%s", out)
	}
	if s := list(); len(s) != 2 || s[0].ID != held {
		t.Fatalf("snapshots after forget: %+v, want the held one and the newest", s)
	}

	// Lift every hold, then forget removes it.
	out = c.ok(r.writer("tag", "--remove", "hold", "--tag", "hold")...).stdout
	if !strings.Contains(out, "tags [daily,hold] -> [daily]") || !strings.Contains(out, "1 of 1 snapshot retagged") {
		t.Errorf("tag --remove hold --tag hold:\n%s", out)
	}
	c.ok(r.writer("forget", "--keep-last", "1", "--keep-tag", "hold")...)
	if s := list(); len(s) != 1 {
		t.Fatalf("%d snapshots once the hold is lifted, want 1", len(s))
	}
	out = c.ok(r.writer("tag", "--set", "daily", "latest")...).stdout
	if !strings.Contains(out, "tags unchanged [daily]") {
		t.Errorf("tag --set to the same tags:\n%s", out)
	}

	for _, e := range []struct {
		args []string
		want string
	}{
		{r.writer("tag", "latest"), "nothing to do"},
		{r.writer("tag", "--add", "a", "--set", "b", "latest"), "cannot be combined"},
		{r.writer("tag", "--set", "a", "--clear", "latest"), "exclude each other"},
		{r.writer("tag", "--add", "hold"), "name the snapshots"},
		{r.writer("tag", "--add", "a,b", "latest"), "is not a tag"},
		{r.writer("forget", "--keep-last", "1", "--keep-tag", ""), "--keep-tag: empty tag"},
		{r.writer("forget", "--keep-tag", "hold"), "nothing to do"},
	} {
		c.fails(2, e.args, e.want)
	}
}

// TestTagWhitespaceRefused: a tag with a space around it (a script's
// "--add \"$TAG \"") or a control character is refused by tag and
// backup. ' hold' was saved and shown as "hold" by 'snapshots', but
// 'forget --keep-tag hold' did not protect it: a legal hold that does
// not hold. --remove still takes one, to lift such a tag.
func TestTagWhitespaceRefused(t *testing.T) {
	c, r, src, _ := backedUpSmallTree(t)
	for _, args := range [][]string{
		r.writer("tag", "--add", " hold", "latest"),
		r.writer("tag", "--add", "hold ", "latest"),
		r.writer("tag", "--set", "ho\nld", "latest"),
		r.writer("backup", "--tag", "hold\t", src),
		r.writer("backup", "--tag", "", src),
	} {
		c.fails(2, args, "is not a tag")
	}
	if s := decodeJSON[[]struct{ Tags []string }](t, c.ok(r.writer("snapshots", "--json")...).stdout); len(s) != 1 || len(s[0].Tags) != 0 {
		t.Fatalf("snapshots after refused tags: %+v", s)
	}
	c.ok(r.writer("tag", "--remove", " hold", "latest")...)
}
