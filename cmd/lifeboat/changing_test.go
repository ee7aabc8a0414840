package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupChangingLog: a log appended to during the backup makes it
// partial (exit 3) unless --changing names it, by pattern or through its
// directory; then the backup exits 0, says the file changed as
// expected, and counts it in files_changed_while_read. Malformed patterns
// and --changing on a stream are usage errors.
func TestBackupChangingLog(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	logs := filepath.Join(src, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(logs, "app.log")
	// Large enough that reading it takes many appends' time.
	if err := os.WriteFile(log, bytes.Repeat([]byte("an old line of the log\n"), 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "calm"), []byte("left alone\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// appending runs fn while another goroutine appends to the log.
	appending := func(fn func() result) result {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			for ctx.Err() == nil {
				if _, err := f.WriteString("a new line of the log\n"); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(50 * time.Microsecond)
			}
		}()
		defer func() { cancel(); <-done }()
		return fn()
	}
	type out struct {
		FilesChangedWhileRead  uint64 `json:"files_changed_while_read"`
		FilesChangedAsExpected uint64 `json:"files_changed_as_expected"`
		Partial                bool   `json:"partial"`
		Errors                 []struct {
			Path string `json:"path"`
		} `json:"errors"`
	}
	// Each backup reads the log again (it changed, so the files cache
	// does not vouch for it), while it keeps changing.
	res := appending(func() result { return c.run(r.writer("backup", "--json", src)...) })
	o := decodeJSON[out](t, res.stdout)
	if res.code != 3 || !o.Partial || o.FilesChangedWhileRead != 1 || o.FilesChangedAsExpected != 0 || len(o.Errors) != 1 || o.Errors[0].Path != log || !strings.Contains(res.stderr, "changed while it was read") {
		t.Fatalf("backup of a log written to, without --changing: exit %d, %+v; want exit 3 naming the log\n%s", res.code, o, res.stderr)
	}
	for _, pattern := range []string{"*.log", logs + "/"} {
		res = appending(func() result { return c.run(r.writer("backup", "--json", "--changing", pattern, src)...) })
		o = decodeJSON[out](t, res.stdout)
		if res.code != 0 || o.Partial || o.FilesChangedWhileRead != 1 || o.FilesChangedAsExpected != 1 || len(o.Errors) != 0 {
			t.Errorf("--changing %s: exit %d, %+v; want exit 0, the log counted as changed\n%s", pattern, res.code, o, res.stderr)
		}
	}
	res = appending(func() result { return c.run(r.writer("backup", "--changing", "*.log", src)...) })
	if res.code != 0 || !strings.Contains(res.stdout, "1 file saved as read while it changed, as expected (--changing)") {
		t.Errorf("--changing, text output: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}

	c.fails(2, r.writer("backup", "--changing", "[unclosed", src), "--changing", "[unclosed", "syntax of --exclude")
	c.fails(2, r.writer("backup", "--changing", "", src), "--changing", "empty")
	res = c.run(r.writer("backup", "--changing", "var/log/", filepath.Join(src, "calm"))...)
	if res.code != 0 || !strings.Contains(res.stderr, `pattern "var/log/" has a slash`) {
		t.Errorf("--changing with a relative path: exit %d, want a warning that it matches nothing:\n%s", res.code, res.stderr)
	}
	c.input([]byte("data")).fails(2, r.writer("backup", "--stdin", "--changing", "*.log"), "--changing does not apply to a stream")
}

// TestBackupIgnoreInode: with --ignore-inode the files cache still
// vouches for unchanged files (the comparison itself is
// snapshot.TestFilesCacheCompares: a test cannot change a file's inode
// and keep its change time).
func TestBackupIgnoreInode(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r, src := initRepo(t, c, "repo"), emptyDir(t, c, "src")
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3100 * time.Millisecond) // files changed within three seconds before a backup are read again
	type out struct {
		New        int `json:"files_new"`
		Unmodified int `json:"files_unmodified"`
	}
	if o := decodeJSON[out](t, c.ok(r.writer("backup", "--json", "--ignore-inode", src)...).stdout); o.New != 2 {
		t.Fatalf("first backup: %+v", o)
	}
	if o := decodeJSON[out](t, c.ok(r.writer("backup", "--json", "--ignore-inode", src)...).stdout); o.Unmodified != 2 {
		t.Errorf("second backup with --ignore-inode: %+v, want both files unmodified", o)
	}
}

// TestBackupReadAll: --read-all reads every file even when the files
// cache vouches for it, and saves the cache anew (what the content
// comparison does with it is snapshot.TestBackupReadAll).
func TestBackupReadAll(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r, src := initRepo(t, c, "repo"), emptyDir(t, c, "src")
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(name+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3100 * time.Millisecond) // files changed within three seconds before a backup are read again
	for i, tc := range []struct {
		args        []string
		files, read string
	}{
		{nil, "2 new, 0 changed, 0 unmodified", "(4 B read)"},
		{[]string{"--read-all"}, "0 new, 0 changed, 2 unmodified", "(4 B read)"},
		{nil, "0 new, 0 changed, 2 unmodified", "(0 B read)"}, // the cache --read-all saved
	} {
		args := append(append([]string{"backup"}, tc.args...), src)
		if o := c.ok(r.writer(args...)...).stdout; !strings.Contains(o, "Files:       "+tc.files+"\n") || !strings.Contains(o, tc.read) {
			t.Errorf("backup %d %v:\n%s\nwant files %s, %s", i+1, tc.args, o, tc.files, tc.read)
		}
	}
}

// TestBackupTime: --time dates the snapshot (as snapshots, forget and
// "latest" see it), in local time or RFC 3339; a time that is not one, or
// that is in the future, is a usage error and nothing is saved.
func TestBackupTime(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r, src := initRepo(t, c, "repo"), emptyDir(t, c, "src")
	c.ok(r.writer("backup", "--time", "2026-03-01T04:05:06Z", src)...)
	c.ok(r.writer("backup", "--time", "2025-12-31 23:59:58", src)...)
	type snap struct {
		Time time.Time `json:"time"`
	}
	got := decodeJSON[[]snap](t, c.ok(r.writer("snapshots", "--json")...).stdout)
	want := []time.Time{time.Date(2025, 12, 31, 23, 59, 58, 0, time.Local), time.Date(2026, 3, 1, 4, 5, 6, 0, time.UTC)}
	if len(got) != 2 || !got[0].Time.Equal(want[0]) || !got[1].Time.Equal(want[1]) {
		t.Errorf("snapshots at %+v, want %v (oldest first)", got, want)
	}
	c.fails(2, r.writer("backup", "--time", "yesterday", src), "--time", `"yesterday" is not a time`)
	c.fails(2, r.writer("backup", "--time", time.Now().Add(time.Hour).Format(time.RFC3339), src), "--time", "is in the future")
	if n := len(decodeJSON[[]snap](t, c.ok(r.writer("snapshots", "--json")...).stdout)); n != 2 {
		t.Errorf("%d snapshots after the refused backups, want 2", n)
	}
}

// emptyDir makes the directory name in c's directory.
func emptyDir(t *testing.T, c *cli, name string) string {
	t.Helper()
	d := filepath.Join(c.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
