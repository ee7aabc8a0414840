package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"golang.org/x/sys/unix"
)

func smallTree() fixture.Tree {
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	return fixture.Tree{
		"hello.txt":         {Content: []byte("hello, lifeboat\n"), MTime: mtime},
		"secret.txt":        {Content: []byte("only for me\n"), Mode: 0o600, MTime: mtime},
		"empty.txt":         {Content: nil},
		"big.bin":           {Content: fixture.Random(1, 3<<20+17)},
		"sub":               {Dir: true, MTime: mtime},
		"sub/deeper":        {Dir: true},
		"sub/deeper/x.conf": {Content: []byte("x = 1\n")},
		"link":              {Symlink: "hello.txt"},
	}
}

type backupJSON struct {
	SnapshotID      string `json:"snapshot_id"`
	FilesNew        uint64 `json:"files_new"`
	FilesChanged    uint64 `json:"files_changed"`
	FilesUnmodified uint64 `json:"files_unmodified"`
	Dirs            uint64 `json:"dirs"`
	BytesProcessed  uint64 `json:"bytes_processed"`
	BytesAdded      uint64 `json:"bytes_added"`
	Errors          []struct {
		Path, Error string
	} `json:"errors"`
	Partial *bool `json:"partial"`
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	src := filepath.Join(c.dir, "src")
	tree := smallTree()
	fixture.Create(t, src, tree)

	// init: files written with mode 0600, JSON names them.
	r := repo{path: filepath.Join(c.dir, "repo"), identity: filepath.Join(c.dir, "id.txt"), key: filepath.Join(c.dir, "w.key")}
	out := c.ok("init", "--repo", r.path, "--identity-out", r.identity, "--key-out", r.key, "--json")
	in := decodeJSON[struct {
		RepoID       string   `json:"repo_id"`
		Recipients   []string `json:"recipients"`
		IdentityFile string   `json:"identity_file"`
		WriterKey    string   `json:"writer_key_file"`
	}](t, out.stdout)
	if len(in.RepoID) != 64 || len(in.Recipients) != 1 || !strings.HasPrefix(in.Recipients[0], "age1") ||
		in.IdentityFile != r.identity || in.WriterKey != r.key {
		t.Fatalf("init --json: %+v", in)
	}
	for _, p := range []string{r.identity, r.key} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}

	// cat config needs no credentials.
	if cfg := decodeJSON[struct{ ID string }](t, c.ok("cat", "config", "--repo", r.path).stdout); cfg.ID != in.RepoID {
		t.Errorf("cat config: id %q, want %q", cfg.ID, in.RepoID)
	}

	// snapshots on an empty repository: an empty JSON array.
	if s := strings.TrimSpace(c.ok(r.writer("snapshots", "--json")...).stdout); s != "[]" {
		t.Errorf("snapshots --json on an empty repository = %q, want []", s)
	}

	// backup with the writer key, twice: the second one reads nothing.
	// Files changed within three seconds before a backup are read again
	// by the next one, and the tree was just made.
	time.Sleep(3100 * time.Millisecond)
	b1 := decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", "--host", "h1", "--tag", "daily", src)...).stdout)
	if b1.FilesNew != 5 || b1.FilesUnmodified != 0 || b1.Partial == nil || *b1.Partial || b1.Errors == nil || len(b1.Errors) != 0 || len(b1.SnapshotID) != 64 {
		t.Errorf("first backup: %+v", b1)
	}
	b2 := decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", "--host", "h1", src)...).stdout)
	if b2.FilesNew != 0 || b2.FilesUnmodified != 5 || b2.BytesProcessed != b1.BytesProcessed {
		t.Errorf("second backup did not use the files cache: %+v", b2)
	}
	// Human output names the snapshot.
	// Another host has no files cache here: everything is read again, by
	// one reader, one sealer and one uploader.
	human := c.ok(r.writer("backup", "--host", "h2", "--parallelism", "1", src)...)
	if !strings.Contains(human.stdout, "snapshot ") || !strings.Contains(human.stdout, "unmodified") {
		t.Errorf("backup human output:\n%s", human.stdout)
	}

	// snapshots --json with the writer key.
	snaps := decodeJSON[[]struct {
		ID      string    `json:"id"`
		ShortID string    `json:"short_id"`
		Time    time.Time `json:"time"`
		Host    string    `json:"host"`
		Paths   []string  `json:"paths"`
		Tags    []string  `json:"tags"`
		Tree    string    `json:"tree"`
		Summary struct {
			FilesNew uint64 `json:"files_new"`
		} `json:"summary"`
	}](t, c.ok(r.writer("snapshots", "--json")...).stdout)
	if len(snaps) != 3 {
		t.Fatalf("snapshots: %d, want 3", len(snaps))
	}
	s0 := snaps[0]
	if s0.ID != b1.SnapshotID || s0.ShortID != s0.ID[:8] || s0.Host != "h1" || !slices.Equal(s0.Tags, []string{"daily"}) ||
		!slices.Equal(s0.Paths, []string{src}) || len(s0.Tree) != 64 || s0.Summary.FilesNew != 5 || s0.Time.IsZero() {
		t.Errorf("snapshots[0] = %+v", s0)
	}
	if snaps[1].Tags == nil {
		t.Error("snapshots --json: tags is null, want []")
	}
	filtered := decodeJSON[[]struct{ ID string }](t, c.ok(r.writer("snapshots", "--json", "--host", "h2")...).stdout)
	if len(filtered) != 1 || filtered[0].ID != snaps[2].ID {
		t.Errorf("snapshots --host h2: %+v", filtered)
	}
	table := c.ok(r.writer("snapshots")...).stdout
	if !strings.Contains(table, s0.ShortID) || !strings.Contains(table, "daily") || !strings.Contains(table, src) {
		t.Errorf("snapshots table:\n%s", table)
	}

	// ls: everything, absolute paths, by ID prefix and by latest with a filter.
	lsOut := c.ok(r.reader("ls", b1.SnapshotID[:10])...).stdout
	for _, p := range []string{src, src + "/hello.txt", src + "/sub/deeper/x.conf", src + "/link"} {
		if !slices.Contains(strings.Split(lsOut, "\n"), p) {
			t.Errorf("ls does not list %s:\n%s", p, lsOut)
		}
	}
	sub := strings.Fields(c.ok(r.reader("ls", "latest", "--host", "h1", src+"/sub")...).stdout)
	if want := []string{src + "/sub", src + "/sub/deeper", src + "/sub/deeper/x.conf"}; !slices.Equal(sub, want) {
		t.Errorf("ls latest %s/sub = %q, want %q", src, sub, want)
	}
	rel := strings.Fields(c.ok(r.reader("ls", "latest", strings.TrimPrefix(src, "/")+"/sub", "--recursive=false")...).stdout)
	if want := []string{src + "/sub", src + "/sub/deeper"}; !slices.Equal(rel, want) {
		t.Errorf("ls --recursive=false = %q, want %q", rel, want)
	}
	long := c.ok(r.reader("ls", "-l", "latest", src+"/link")...).stdout
	if !strings.Contains(long, "lrwxrwxrwx") || !strings.Contains(long, "-> hello.txt") {
		t.Errorf("ls -l of a symlink: %q", long)
	}
	sc := bufio.NewScanner(strings.NewReader(c.ok(r.reader("ls", "--json", "latest", src)...).stdout))
	nodes := map[string]map[string]any{}
	for sc.Scan() {
		n := decodeJSON[map[string]any](t, sc.Text())
		nodes[n["path"].(string)] = n
	}
	if n := nodes[src+"/secret.txt"]; n == nil || n["type"] != "file" || n["name"] != "secret.txt" ||
		n["mode"] != float64(0o600) || n["size"] != float64(12) || n["mtime"] == nil || n["uid"] == nil {
		t.Errorf("ls --json secret.txt: %v", n)
	}
	if n := nodes[src+"/link"]; n == nil || n["link_target"] != "hello.txt" {
		t.Errorf("ls --json link: %v", n)
	}
	c.fails(1, r.reader("ls", "latest", "/no/such/path"), "not in snapshot")

	// restore everything, then compare with the source tree.
	target := filepath.Join(c.dir, "restored")
	res := decodeJSON[struct {
		Files        int64 `json:"files"`
		Bytes        int64 `json:"bytes"`
		BytesWritten int64 `json:"bytes_written"`
		BytesDirect  int64 `json:"bytes_direct"`
		FilesSkipped int64 `json:"files_skipped"`
		Failures     []any `json:"failures"`
	}](t, c.ok(r.reader("restore", "latest", "--target", target, "--json")...).stdout)
	if res.Files != 5 || res.Bytes != int64(b1.BytesProcessed) || res.Failures == nil || len(res.Failures) != 0 {
		t.Errorf("restore --json: %+v", res)
	}
	// Direct I/O writes whole pages of big.bin, if the target's
	// filesystem allows it at all.
	if res.BytesDirect < 0 || res.BytesDirect > res.BytesWritten || res.BytesDirect%4096 != 0 {
		t.Errorf("restore --json: bytes_direct %d of %d written, want whole pages and no more than was written", res.BytesDirect, res.BytesWritten)
	}
	t.Logf("restore --json: %d of %d bytes written with direct I/O", res.BytesDirect, res.BytesWritten)
	fixture.Compare(t, tree, filepath.Join(target, src))
	// Restoring again skips identical files.
	again := c.ok(r.reader("restore", "latest", "--target", target)...)
	if !strings.Contains(again.stdout, "5 already identical") {
		t.Errorf("second restore:\n%s", again.stdout)
	}
	// --include restores a subset (here one range at a time).
	partial := filepath.Join(c.dir, "partial")
	typo := c.ok(r.reader("restore", b1.SnapshotID, "--target", partial, "--include", src+"/sub", "--include", src+"/sbu", "--parallelism", "1")...)
	if rel := strings.TrimPrefix(src, "/"); !strings.Contains(typo.stderr, `warning: --include "`+rel+`/sbu" matches nothing`) || strings.Contains(typo.stderr, `/sub" matches`) {
		t.Errorf("--include matching nothing: stderr\n%s", typo.stderr)
	}
	if _, err := os.Stat(filepath.Join(partial, src, "sub/deeper/x.conf")); err != nil {
		t.Errorf("--include: %v", err)
	}
	shadowed := c.ok(r.reader("restore", b1.SnapshotID, "--target", filepath.Join(c.dir, "shadowed"), "--include", src+"/hello.txt", "--exclude", "hello.txt", "--json")...)
	if rel := strings.TrimPrefix(src, "/"); !strings.Contains(shadowed.stdout, `"excluded_includes":["`+rel+`/hello.txt"]`) {
		t.Errorf("--include whose match --exclude left out: --json\n%s", shadowed.stdout)
	}
	if _, err := os.Lstat(filepath.Join(partial, src, "hello.txt")); err == nil {
		t.Error("--include restored hello.txt")
	}
	// --keep-cache (write-behind off) restores the same tree.
	kept := filepath.Join(c.dir, "kept")
	keptRes := decodeJSON[struct {
		BytesWritten int64 `json:"bytes_written"`
		BytesDirect  int64 `json:"bytes_direct"`
	}](t, c.ok(r.reader("restore", "latest", "--target", kept, "--keep-cache", "--json")...).stdout)
	if keptRes.BytesDirect != 0 || keptRes.BytesWritten != res.BytesWritten {
		t.Errorf("restore --keep-cache --json: %+v, want everything written and none of it direct", keptRes)
	}
	fixture.Compare(t, tree, filepath.Join(kept, src))
	// --direct-io writes large files' data direct (the tree has one of
	// several MiB), where the filesystem allows; --sync flushes it all.
	direct := filepath.Join(c.dir, "direct")
	directRes := decodeJSON[struct {
		BytesWritten int64 `json:"bytes_written"`
		BytesDirect  int64 `json:"bytes_direct"`
	}](t, c.ok(r.reader("restore", "latest", "--target", direct, "--direct-io", "--sync", "--json")...).stdout)
	if directRes.BytesWritten != res.BytesWritten || directRes.BytesDirect > directRes.BytesWritten ||
		(directRes.BytesDirect == 0 && acceptsDirectIO(t, direct)) {
		t.Errorf("restore --direct-io --sync --json: %+v, want everything written, part of it direct", directRes)
	}
	fixture.Compare(t, tree, filepath.Join(direct, src))

	// check, with the identity (deep) and with the writer key (with a note).
	c.ok(r.reader("check", "--read-data")...)
	chk := c.ok(r.writer("check", "--read-data-subset", "50%")...)
	if !strings.Contains(chk.stdout, "not decrypted") {
		t.Errorf("check with a writer key does not say what it could not verify:\n%s", chk.stdout)
	}
	rep := decodeJSON[struct {
		Packs    int   `json:"packs"`
		Problems []any `json:"problems"`
	}](t, c.ok(r.reader("check", "--json", "--read-data-subset", "0.5")...).stdout)
	if rep.Packs == 0 || rep.Problems == nil || len(rep.Problems) != 0 {
		t.Errorf("check --json: %+v", rep)
	}
	// n/t: two checks of half the packs each read them all.
	read := 0
	for _, g := range []string{"1/2", "2/2"} {
		half := decodeJSON[struct {
			PacksRead int `json:"packs_read"`
		}](t, c.ok(r.reader("check", "--json", "--read-data-subset", g)...).stdout)
		read += half.PacksRead
	}
	if read != rep.Packs {
		t.Errorf("check --read-data-subset 1/2 and 2/2 read %d packs of %d", read, rep.Packs)
	}

	// The same through the environment instead of flags.
	env := c.with("LIFEBOAT_REPO="+r.path, "LIFEBOAT_IDENTITY="+r.identity)
	if got := strings.Fields(env.ok("ls", "latest", src+"/sub/deeper/x.conf").stdout); !slices.Equal(got, []string{src + "/sub/deeper/x.conf"}) {
		t.Errorf("ls via LIFEBOAT_REPO/LIFEBOAT_IDENTITY: %q", got)
	}
	// --identity wins over --key.
	c.ok(append(r.reader("ls", "latest"), "--key", r.key)...)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "unknown flag"},
		{[]string{"snapshots", "--no-such-flag"}, "unknown flag"},
		{[]string{"no-such-command"}, "unknown command"},
		{[]string{"snapshots", "--key", "k"}, "LIFEBOAT_REPO"},
		{[]string{"backup", "--repo", "/r", "--key", "k"}, "missing PATH"},
		{[]string{"backup", "--repo", "/r", "--key", "k", "--parallelism", "-1", "/tmp"}, "--parallelism must not be negative"},
		{[]string{"ls", "--repo", "/r", "--identity", "i"}, "missing SNAPSHOT"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i"}, "--target"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i", "--target", "/t", "--parallelism", "-2"}, "--parallelism must not be negative"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i", "--target", "/t", "--keep-cache", "--direct-io"}, "contradict"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i", "--target", "/t", "--dry-run", "--verify"}, "nothing to read back"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i", "--target", "/t", "--exclude", "["}, "--exclude"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i", "--target", "/t", "--overwrite", "sometimes"}, "if-changed, if-newer or never"},
		{[]string{"restore", "latest", "--repo", "/r", "--identity", "i", "--target", "/t", "--exclude-file", "/nonexistent/excludes"}, "--exclude-file"},
		{[]string{"agent", "--server", "127.0.0.1:1", "--data-dir", "/nonexistent/agent", "--parallelism", "-3"}, "--parallelism must not be negative"},
		{[]string{"agent", "--server", "127.0.0.1:1", "--data-dir", "/nonexistent/agent", "--max-jobs", "-1"}, "--max-jobs must be at least 1 (got -1)"},
		{[]string{"agent", "--server", "127.0.0.1:1", "--data-dir", "/nonexistent/agent", "--max-jobs", "0"}, "--max-jobs must be at least 1 (got 0)"},
		{[]string{"snapshots", "--repo", "relative/path", "--key", "k"}, "relative"},
		{[]string{"snapshots", "--repo", "/r"}, "--identity FILE"},
		{[]string{"ls", "latest", "--repo", "/r"}, "--identity"},
		{[]string{"check", "--repo", "/r", "--key", "k", "--read-data-subset", "150%"}, "100%"},
		{[]string{"check", "--repo", "/r", "--key", "k", "--read-data-subset", "5"}, "5%"},
		{[]string{"check", "--repo", "/r", "--key", "k", "--read-data-subset", "8/7"}, "1 <= n <= t"},
		{[]string{"check", "--repo", "/r", "--key", "k", "--read-data-subset", "0/7"}, "1 <= n <= t"},
		{[]string{"snapshots", "--repo", "/r", "--key", "k", "--log-format", "xml"}, "log-format"},
		{[]string{"init", "--repo", "/r", "--recipient", "not-a-key"}, "recipient"},
		{[]string{"snapshots", "extra-arg", "--repo", "/r", "--key", "k"}, "no arguments"},
		{[]string{"key", "clenaup", "--repo", "/r", "--identity", "i"}, `unknown command "clenaup" for "lifeboat key": did you mean "cleanup"?`},
		{[]string{"key", "lst", "--json"}, `did you mean "list"?`},
		{[]string{"repair", "idnex"}, `unknown command "idnex" for "lifeboat repair"`},
		{[]string{"policy", "aply"}, `did you mean "apply"?`},
		{[]string{"policy", "aply", "-f", "p.yaml"}, "unknown shorthand flag"},
		{[]string{"agent", "token", "lsit"}, `unknown command "lsit" for "lifeboat agent token"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c.fails(2, tc.args, tc.want)
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	help := c.ok("--help").stdout
	for _, w := range []string{"Exit codes", "LIFEBOAT_REPO", "backup", "restore"} {
		if !strings.Contains(help, w) {
			t.Errorf("--help does not mention %q", w)
		}
	}
	if v := c.ok("--version").stdout; !strings.HasPrefix(v, "lifeboat ") {
		t.Errorf("--version = %q", v)
	}
	if v := c.ok("version").stdout; !strings.HasPrefix(v, "lifeboat ") {
		t.Errorf("version = %q", v)
	}
	// A command group without a subcommand, or with "help", shows its help.
	for _, args := range [][]string{{"key"}, {"key", "help"}, {"agent", "token"}} {
		if out := c.ok(args...).stdout; !strings.Contains(out, "Available Commands") {
			t.Errorf("lifeboat %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// acceptsDirectIO reports whether dir's filesystem lets a file be opened
// with O_DIRECT.
func acceptsDirectIO(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, ".direct-probe")
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_DIRECT, 0o600)
	if err != nil {
		return false
	}
	unix.Close(fd)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestLatestOfSeveralHosts: 'latest' chosen among the snapshots of several
// hosts (or sets of paths) is the newest of them all, whichever machine
// that is; ls, dump and restore then say which one it is on stderr, so
// that an operator who meant another host sees it. Narrowed to one host
// and path, or with --quiet, nothing is said.
func TestLatestOfSeveralHosts(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "etc")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "passwd"), []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", "--host", "db1", src)...)
	c.ok(r.writer("backup", "--host", "web1", src)...)
	file := filepath.Join(src, "passwd")
	for _, args := range [][]string{{"ls", "latest"}, {"dump", "latest", file}, {"restore", "latest", "--target", filepath.Join(c.dir, "t")}} {
		res := c.ok(r.reader(args...)...)
		if !strings.Contains(res.stderr, "warning: 'latest' is snapshot") || !strings.Contains(res.stderr, "of host web1") || !strings.Contains(res.stderr, "2 hosts or sets of paths") {
			t.Errorf("%s: stderr %q, want a warning that latest is web1's", strings.Join(args, " "), res.stderr)
		}
	}
	for _, args := range [][]string{{"ls", "--host", "db1", "latest"}, {"dump", "-q", "latest", file}} {
		if res := c.ok(r.reader(args...)...); strings.Contains(res.stderr, "'latest'") {
			t.Errorf("%s: stderr %q, want no warning", strings.Join(args, " "), res.stderr)
		}
	}
}
