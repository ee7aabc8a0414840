package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/internal/testnet"
)

func TestWriterKeyCannotRead(t *testing.T) {
	t.Parallel()
	c, r, _, _ := backedUpSmallTree(t)
	c.fails(1, r.writer("ls", "latest"), "ls needs the identity", "writer key")
	c.fails(1, r.writer("restore", "latest", "--target", filepath.Join(c.dir, "t")), "restore needs the identity", "writer key")
	// A writer key passed as an identity is recognised as such.
	c.fails(1, []string{"ls", "latest", "--repo", r.path, "--identity", r.key}, "writer key")
}

func TestWrongIdentity(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	other := initRepo(t, c, "other")
	// Each names the file passed.
	c.fails(1, []string{"snapshots", "--repo", r.path, "--identity", other.identity}, "identity "+other.identity+": wrong key", "not a recipient")
	c.fails(1, []string{"snapshots", "--repo", r.path, "--key", other.key}, "writer key "+other.key+": wrong key", "key belongs to repository")
}

func TestPassphraseProtectedIdentity(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	right := c.with("LIFEBOAT_PASSPHRASE=correct horse")
	r := initRepo(t, right, "repo", "--passphrase-protect")
	b, err := os.ReadFile(r.identity)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "AGE-SECRET-KEY") {
		t.Fatal("--passphrase-protect wrote the identity in the clear")
	}
	right.ok(r.reader("snapshots")...)
	c.with("LIFEBOAT_PASSPHRASE=battery staple").fails(1, r.reader("snapshots"), "identity "+r.identity+": wrong passphrase", "the one LIFEBOAT_PASSPHRASE holds")
	// No passphrase and no terminal (tests run the binary in a new
	// session): a clear error rather than a hang.
	c.fails(1, r.reader("snapshots"), "LIFEBOAT_PASSPHRASE")
}

func TestInitRefusesExisting(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	// Same repository, new output files: the repository is refused and no
	// stray credential files are left behind.
	id2, key2 := filepath.Join(c.dir, "id2"), filepath.Join(c.dir, "key2")
	c.fails(1, []string{"init", "--repo", r.path, "--identity-out", id2, "--key-out", key2}, "already initialized")
	for _, p := range []string{id2, key2} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("failed init left %s behind", p)
		}
	}
	// New repository, existing output files: refused before anything is created.
	newRepo := filepath.Join(c.dir, "repo2")
	c.fails(1, []string{"init", "--repo", newRepo, "--identity-out", r.identity, "--key-out", key2}, "already exists", r.identity)
	if _, err := os.Lstat(newRepo); err == nil {
		t.Error("init created the repository although it refused to write the identity")
	}
	// A location inside a repository: refused, nothing created.
	inner := filepath.Join(r.path, "data", "nested")
	c.fails(2, []string{"init", "--repo", inner, "--identity-out", id2, "--key-out", key2}, "inside the lifeboat repository at "+r.path)
	if _, err := os.Lstat(inner); err == nil {
		t.Error("init created a repository inside another")
	}
	// A location holding a repository below it: refused, naming it.
	parent := filepath.Join(c.dir, "parent")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	below := initRepo(t, c, filepath.Join("parent", "prod"))
	c.fails(2, []string{"init", "--repo", parent, "--identity-out", id2, "--key-out", key2}, "holds the lifeboat repository at "+below.path, "outside it")
	if _, err := os.Lstat(filepath.Join(parent, "config")); err == nil {
		t.Error("init created a repository above another")
	}
	// Default file names in the working directory.
	c.ok("init", "--repo", filepath.Join(c.dir, "repo3"))
	for _, p := range []string{"lifeboat-identity.txt", "lifeboat-writer.key"} {
		if _, err := os.Stat(filepath.Join(c.dir, p)); err != nil {
			t.Errorf("default output: %v", err)
		}
	}
}

func TestInitWithRecipient(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	owner := initRepo(t, c, "owner") // only to get an identity and its recipient
	b, err := os.ReadFile(owner.identity)
	if err != nil {
		t.Fatal(err)
	}
	var recipient string
	for _, line := range strings.Split(string(b), "\n") {
		if after, ok := strings.CutPrefix(line, "# public key: "); ok {
			recipient = after
		}
	}
	if recipient == "" {
		t.Fatalf("no public key in %s", owner.identity)
	}
	key := filepath.Join(c.dir, "shared.key")
	repoPath := filepath.Join(c.dir, "shared")
	out := c.ok("init", "--repo", repoPath, "--recipient", recipient, "--key-out", key)
	if !strings.Contains(out.stdout, recipient) {
		t.Errorf("init does not print the recipient:\n%s", out.stdout)
	}
	r := repo{path: repoPath, identity: owner.identity, key: key}
	c.ok(r.reader("snapshots")...)
	c.fails(2, []string{"init", "--repo", filepath.Join(c.dir, "x"), "--recipient", recipient, "--pq"}, "--pq")
}

func TestPartialBackup(t *testing.T) {
	t.Parallel()
	// Reading /proc/self/mem from offset 0 fails with EIO for every user,
	// root included (chmod 000 does not stop root), so it is a reliable
	// unreadable file.
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("no /proc/self/mem on this system")
	}
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, smallTree())
	paths := []string{src, "/proc/self/mem"}
	if syscall.Geteuid() != 0 {
		locked := filepath.Join(src, "locked.txt")
		if err := os.WriteFile(locked, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	res := c.fails(3, append(r.writer("backup", "--json"), paths...), "/proc/self/mem", "partial")
	b := decodeJSON[backupJSON](t, res.stdout)
	if b.Partial == nil || !*b.Partial || len(b.SnapshotID) != 64 {
		t.Errorf("backup --json: %+v", b)
	}
	found := false
	for _, e := range b.Errors {
		found = found || e.Path == "/proc/self/mem" && e.Error != ""
	}
	if !found {
		t.Errorf("errors do not name /proc/self/mem: %+v", b.Errors)
	}
	if syscall.Geteuid() != 0 && !strings.Contains(res.stderr, "locked.txt") {
		t.Errorf("unreadable locked.txt not reported:\n%s", res.stderr)
	}
	// The partial snapshot was saved and is listed.
	if !strings.Contains(c.ok(r.writer("snapshots")...).stdout, b.SnapshotID[:8]) {
		t.Error("partial snapshot not listed")
	}
}

func TestRepositoryErrors(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	missing := filepath.Join(c.dir, "missing")
	c.fails(1, []string{"snapshots", "--repo", missing, "--key", r.key}, missing, "lifeboat init")
	empty := filepath.Join(c.dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	c.fails(1, []string{"snapshots", "--repo", empty, "--key", r.key}, "not a lifeboat repository")
	// A directory that merely has a data/ of its own is no repository.
	fixture.Create(t, empty, fixture.Tree{"data/readme.txt": {Content: []byte("mine\n")}})
	c.fails(1, []string{"snapshots", "--repo", empty, "--key", r.key}, "not a lifeboat repository", "lifeboat init")
	c.fails(1, []string{"snapshots", "--repo", r.path, "--key", filepath.Join(c.dir, "nokey")}, "nokey")

	// Restore target that is a regular file.
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, smallTree())
	c.ok(r.writer("backup", src)...)
	file := filepath.Join(c.dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.fails(1, r.reader("restore", "latest", "--target", file), file, "not a directory")
	c.fails(1, r.reader("restore", "ffffffff", "--target", filepath.Join(c.dir, "t")), "no snapshot", "lifeboat snapshots")

	// A repository whose config was lost or damaged is not "not a
	// repository" (whose advice, init, would refuse): put the config back.
	cfg := filepath.Join(r.path, "config")
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range []struct {
		what    string
		content []byte // nil: removed
	}{{"is missing", nil}, {"is damaged", good[:len(good)/2]}} {
		os.Remove(cfg)
		if damage.content != nil {
			if err := os.WriteFile(cfg, damage.content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		res := c.fails(1, r.reader("snapshots"), "config object of "+r.path+" "+damage.what, "lost its config", "put config back", "will not overwrite")
		if strings.Contains(res.stderr, "create one with") {
			t.Errorf("config %s: advice to run init:\n%s", damage.what, res.stderr)
		}
		c.fails(1, r.writer("backup", src), "lost its config")
	}
	if err := os.WriteFile(cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok(r.reader("snapshots")...)
}

// TestS3SchemeMismatch: an s3:https:// location for a plain HTTP server
// fails at once (no retries) and says which scheme to use.
func TestS3SchemeMismatch(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c := newCLI(t).with("AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b", "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true")
	repo := "s3:https://" + srv.Listener.Addr().String() + "/lifeboat"
	r := c.fails(1, []string{"init", "--repo", repo, "--identity-out", filepath.Join(c.dir, "id"), "--key-out", filepath.Join(c.dir, "key")},
		"answered in plain HTTP", "use an s3:http:// location")
	if strings.Contains(r.stderr, "retrying") {
		t.Errorf("%s was retried:\n%s", repo, r.stderr)
	}
}

// An S3 repository URL that S3 cannot accept (bucket name, port) is a
// usage error naming the culprit, not six retries reported as an
// unreachable server.
func TestInvalidS3Location(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	addr := testnet.FreeAddr(t) // nothing listens: a retry would show as "unreachable"
	for _, tc := range []struct{ repo, want string }{
		{"s3:http://" + addr + "/lb", `invalid bucket name "lb"`},
		{"s3:http://" + addr + "/has..dots/prefix", `invalid bucket name "has..dots"`},
		{"s3:http://127.0.0.1:99999/bucket", `invalid port "99999"`},
	} {
		r := c.fails(2, []string{"init", "--repo", tc.repo, "--identity-out", filepath.Join(c.dir, "id"), "--key-out", filepath.Join(c.dir, "key")}, tc.want)
		if strings.Contains(r.stderr, "retrying") || strings.Contains(r.stderr, "unreachable") {
			t.Errorf("%s was retried:\n%s", tc.repo, r.stderr)
		}
	}
}

// TestUnusableCache: a cache directory that cannot be created costs
// speed, not the command: it is named in one warning, every file is read
// again, and the backup succeeds. A files cache that cannot be saved
// (its directory is a file) is named too, not dropped in silence.
func TestUnusableCache(t *testing.T) {
	t.Parallel()
	c, r, src, _ := backedUpSmallTree(t)
	blocker := filepath.Join(c.dir, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res := c.ok(r.writer("backup", "--json", "--cache-dir", filepath.Join(blocker, "cache"), src)...)
		if n := strings.Count(res.stderr, "no local cache"); n != 1 || !strings.Contains(res.stderr, blocker) {
			t.Errorf("want one warning naming %s, got %d:\n%s", blocker, n, res.stderr)
		}
		if !strings.Contains(res.stderr, "every file is read again") {
			t.Errorf("the backup's warning does not say it reads every file again:\n%s", res.stderr)
		}
		if b := decodeJSON[backupJSON](t, res.stdout); b.FilesUnmodified != 0 {
			t.Errorf("without a cache, %d files were taken as unmodified", b.FilesUnmodified)
		}
	}
	// Other commands are told what they lose, not what a backup does;
	// with an identity, that the repository is not compared with the
	// one seen before (the record of it is in the cache).
	for _, tc := range []struct {
		args        []string
		backupWords bool
		pinWords    bool
	}{
		{r.writer("snapshots", "--cache-dir", filepath.Join(blocker, "cache")), false, false},
		{r.reader("snapshots", "--cache-dir", filepath.Join(blocker, "cache")), false, true},
	} {
		res := c.ok(tc.args...)
		if strings.Count(res.stderr, "no local cache") != 1 ||
			strings.Contains(res.stderr, "every file is read again") != tc.backupWords ||
			strings.Contains(res.stderr, "not compared with the one this machine saw") != tc.pinWords {
			t.Errorf("%v: want one warning, about reading files %v, about the repository seen before %v:\n%s", tc.args, tc.backupWords, tc.pinWords, res.stderr)
		}
	}

	// The metadata cache works, the files cache's directory cannot be
	// made: the warning says the next backup reads everything again.
	cache := filepath.Join(c.dir, "cache2")
	c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	files, err := filepath.Glob(filepath.Join(cache, "*", "files"))
	if err != nil || len(files) != 1 {
		t.Fatalf("files cache directory: %v, %v", files, err)
	}
	if err := os.RemoveAll(files[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	if !strings.Contains(res.stderr, "save files cache") || !strings.Contains(res.stderr, files[0]) {
		t.Errorf("no warning that the files cache could not be saved:\n%s", res.stderr)
	}

	// The cache file cannot be replaced (a directory is in its place):
	// the warning says "files cache" once, with the reason.
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	saved, err := filepath.Glob(filepath.Join(files[0], "*"))
	if err != nil || len(saved) != 1 {
		t.Fatalf("files cache: %v, %v", saved, err)
	}
	if err := os.Remove(saved[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(saved[0], "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	res = c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	var line string
	for l := range strings.Lines(res.stderr) {
		if strings.Contains(l, "save files cache") {
			line = l
		}
	}
	if strings.Count(line, "files cache") != 1 || !strings.Contains(line, saved[0]) || !strings.Contains(line, "rename") {
		t.Errorf("want one warning naming the files cache once, with the failed rename:\n%s", res.stderr)
	}

	// A cache a newer lifeboat wrote is ignored, its version named.
	if err := os.RemoveAll(saved[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saved[0], []byte("LBFC9\nfrom the future"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	if strings.Count(res.stderr, "files cache") != 1 || !strings.Contains(res.stderr, "format version 9, written by a newer lifeboat") {
		t.Errorf("want one warning naming the files cache once, and the newer version:\n%s", res.stderr)
	}
}

// TestDamagedFilesCacheBlock: a flipped byte in one directory's block of
// the files cache is named in a warning (the cache file and the
// directory), the backup succeeds, and the cache it saves is whole again.
func TestDamagedFilesCacheBlock(t *testing.T) {
	t.Parallel()
	c, r, src, _ := backedUpSmallTree(t)
	cache := filepath.Join(c.dir, "cache")
	c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	files, err := filepath.Glob(filepath.Join(cache, "*", "files", "*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("files cache: %v, %v", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// The first block starts after the magic (6 bytes) and the
	// repository ID (a length byte and 64 hex digits); a byte of the
	// directory name it begins with is flipped.
	const firstBlock = 6 + 1 + 64
	if len(b) < firstBlock+8 || string(b[:6]) != "LBFC3\n" {
		t.Fatalf("unexpected files cache layout (%d bytes, %q)", len(b), b[:min(len(b), 6)])
	}
	b[firstBlock+3] ^= 0x20
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	res := c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	if !strings.Contains(res.stderr, "were damaged") || !strings.Contains(res.stderr, files[0]) || !strings.Contains(res.stderr, src) {
		t.Errorf("no warning naming the cache and the damaged directory:\n%s", res.stderr)
	}
	res = c.ok(r.writer("backup", "--cache-dir", cache, src)...)
	if strings.Contains(res.stderr, "damaged") {
		t.Errorf("the saved cache is still damaged:\n%s", res.stderr)
	}
}
