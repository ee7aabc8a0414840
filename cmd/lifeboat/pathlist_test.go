package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestBackupFilesFrom: paths listed in --files-from (comments and empty
// lines skipped, relative paths from the working directory) and
// --files-from-raw (NUL-separated, so a name may hold a newline) are
// backed up with those given as arguments; a list naming nothing, an
// unreadable list, a NUL in a text list and two lists on standard
// input are refused.
func TestBackupFilesFrom(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	fixture.Create(t, filepath.Join(c.dir, "src"), fixture.Tree{
		"a":          {Content: []byte("a\n")},
		"b":          {Content: []byte("b\n")},
		"line\nbrk":  {Content: []byte("newline\n")},
		"c":          {Content: []byte("c\n")},
		"not listed": {Content: []byte("left out\n")},
		"arg":        {Content: []byte("given as an argument\n")},
	})
	src := filepath.Join(c.dir, "src")
	list := filepath.Join(c.dir, "list")
	raw := filepath.Join(c.dir, "raw")
	if err := os.WriteFile(list, []byte("# what to back up\n"+filepath.Join(src, "a")+"\n\nsrc/b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raw, []byte(filepath.Join(src, "line\nbrk")+"\x00"+filepath.Join(src, "c")+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", "--files-from", list, "--files-from-raw", raw, filepath.Join(src, "arg"))...)
	out := c.ok(r.reader("ls", "latest", src)...).stdout
	var got []string
	for l := range strings.Lines(out) {
		l = strings.TrimSuffix(l, "\n")
		if q, err := strconv.Unquote(l); err == nil {
			l = q // ls quotes a name with a newline
		}
		if p, ok := strings.CutPrefix(l, src+"/"); ok {
			got = append(got, p)
		}
	}
	if want := []string{"a", "arg", "b", "c", "line\nbrk"}; !slices.Equal(got, want) {
		t.Errorf("backed up %q, want %q", got, want)
	}

	// From standard input.
	c.input([]byte(filepath.Join(src, "not listed") + "\n")).ok(r.writer("backup", "--files-from", "-")...)
	if out := c.ok(r.reader("ls", "latest", src)...).stdout; !strings.Contains(out, "not listed") || strings.Contains(out, src+"/a\n") {
		t.Errorf("--files-from -: ls:\n%s", out)
	}

	empty := filepath.Join(c.dir, "empty")
	if err := os.WriteFile(empty, []byte("# nothing\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.fails(2, r.writer("backup", "--files-from", empty), "listed no path")
	c.fails(1, r.writer("backup", "--files-from", filepath.Join(c.dir, "missing")), "--files-from "+filepath.Join(c.dir, "missing"))
	c.fails(2, r.writer("backup", "--files-from", raw), "--files-from-raw")
	c.input([]byte("x\n")).fails(2, r.writer("backup", "--files-from", "-", "--files-from-raw", "-"), "standard input")
}

// TestReadPathListsCRLF: a list with CRLF line endings names the paths
// without the CR; a list without a final newline keeps its last path.
func TestReadPathListsCRLF(t *testing.T) {
	list := filepath.Join(t.TempDir(), "list")
	if err := os.WriteFile(list, []byte("# paths\r\n/srv/a\r\n\r\n/srv/b c \r\n/srv/d"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readPathLists([]string{list}, nil)
	if want := []string{"/srv/a", "/srv/b c ", "/srv/d"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("readPathLists: %q, %v; want %q", got, err, want)
	}
}

// TestBackupSkipFlags: -x, --exclude-caches, --exclude-if-present and
// --exclude-larger-than reach the backup; bad values are usage errors.
func TestBackupSkipFlags(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, fixture.Tree{
		"cache/CACHEDIR.TAG": {Content: []byte("Signature: 8a477f597d28d172789f06886806bc55")},
		"cache/junk":         {Content: []byte("junk\n")},
		"nb/.nobackup":       {Content: nil},
		"nb/y":               {Content: []byte("y\n")},
		"big":                {Content: fixture.Random(3, 2<<20+1)},
		"small":              {Content: []byte("small\n")},
	})
	c.ok(r.writer("backup", "-x", "--exclude-caches", "--exclude-if-present", ".nobackup", "--exclude-larger-than", "2M", src)...)
	out := c.ok(r.reader("ls", "latest", src, "--recursive")...).stdout
	for _, p := range []string{"cache/CACHEDIR.TAG", "nb/.nobackup", "small"} {
		if !strings.Contains(out, src+"/"+p+"\n") {
			t.Errorf("%s not saved:\n%s", p, out)
		}
	}
	for _, p := range []string{"cache/junk", "nb/y", "big"} {
		if strings.Contains(out, src+"/"+p+"\n") {
			t.Errorf("%s saved:\n%s", p, out)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--exclude-larger-than", "2Q"}, `size "2Q": unknown unit`},
		{[]string{"--exclude-larger-than", "-1"}, `size "-1"`},
		{[]string{"--exclude-larger-than", "0"}, `size "0": 0 would leave out every file`},
		{[]string{"--exclude-if-present", "a/b"}, `--exclude-if-present "a/b"`},
		{[]string{"--exclude-if-present", ":x"}, "give a file name"},
	} {
		c.fails(2, r.writer(append(append([]string{"backup"}, tc.args...), src)...), tc.want)
	}
	c.fails(2, r.writer("backup", "--stdin", "-x", "--files-from", "l"), "--one-file-system, --files-from do not apply to a stream")
}

// TestBackupDryRun: backup --dry-run says what a backup would read and
// saves no snapshot and no files cache (the next real backup still reads
// everything); --json has dry_run and an empty snapshot_id; with a
// stream it is a usage error.
func TestBackupDryRun(t *testing.T) {
	t.Parallel()
	c, r, src, _ := smallTreeRepo(t)
	out := c.ok(r.writer("backup", "--dry-run", src)...).stdout
	if !strings.Contains(out, "Dry run") || !strings.Contains(out, "Would read:") {
		t.Errorf("dry run output:\n%s", out)
	}
	js := decodeJSON[struct {
		ID     string `json:"snapshot_id"`
		DryRun bool   `json:"dry_run"`
		New    int    `json:"files_new"`
		ToRead int64  `json:"bytes_to_read"`
	}](t, c.ok(r.writer("backup", "-n", "--json", src)...).stdout)
	if js.ID != "" || !js.DryRun || js.New == 0 || js.ToRead == 0 {
		t.Errorf("dry run --json: %+v", js)
	}
	if list := c.ok(r.writer("snapshots", "--json")...).stdout; strings.TrimSpace(list) != "[]" {
		t.Errorf("a dry run saved a snapshot: %s", list)
	}
	real := decodeJSON[struct {
		New int `json:"files_new"`
	}](t, c.ok(r.writer("backup", "--json", src)...).stdout)
	if real.New != js.New {
		t.Errorf("the backup after dry runs read %d files as new, the dry run counted %d: did it save a files cache?", real.New, js.New)
	}
	c.fails(2, r.writer("backup", "--stdin", "--dry-run"), "--dry-run does not apply to a stream")
}
