package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nobody is the user TestUnprivileged runs the binary as.
const nobody = 65534

// TestUnprivileged runs lifeboat as an ordinary user (nobody), where the
// kernel's permission checks apply — run as root, as CI is, they do not,
// and the paths that handle EACCES go untested:
//   - a backup that cannot read a file or list a directory saves the
//     rest, names both and exits 3;
//   - a repository directory shared with a group (mode 2770) lets that
//     group read what root's backups write; a user not in that group is
//     told so instead of writing what the group cannot read;
//   - a restore --verify reads back files whose restored mode denies
//     their owner reading (0200, 0000) and gives them their mode back;
//   - a restore into a directory the user cannot write exits 1 and says so;
//   - a restore that cannot remove all of a directory the snapshot has a
//     file in place of, or with --delete an entry the snapshot lacks,
//     names it and exits 1.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run lifeboat as another user")
	}
	t.Parallel()
	cred := &syscall.Credential{Uid: nobody, Gid: nobody}
	// Everything nobody uses lives below base, which it owns; t.TempDir's
	// parents are private to root.
	base, err := os.MkdirTemp("", "lifeboat-e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	mkdir := func(rel string, mode os.FileMode, owner int) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		chown(t, p, owner)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(p string, data string, mode os.FileMode, owner int) {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		chown(t, p, owner)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, base, nobody)
	home := mkdir("home", 0o755, nobody)
	keys := mkdir("keys", 0o755, nobody)
	// The repository is shared with nobody's group (mode 2770), so that
	// what root's backups write there is nobody's to read.
	repoDir := mkdir("repo", 0o770|os.ModeSetgid, nobody)

	tr := testRepo{url: repoDir, dir: repoDir, identity: filepath.Join(keys, "identity.txt"), key: filepath.Join(keys, "writer.key")}
	// user runs the binary as nobody, failing t.
	user := func(t *testing.T) *cli {
		return &cli{t: t, repo: repoDir, home: home, timeout: newCLI(t, "").timeout, cred: cred}
	}
	writer := func(t *testing.T) *cli { return user(t).with(func(c *cli) { c.key = tr.key }) }
	reader := func(t *testing.T) *cli { return user(t).with(func(c *cli) { c.identity = tr.identity }) }
	user(t).ok("init", "--identity-out", tr.identity, "--key-out", tr.key)

	t.Run("a shared repository whose group it is not in", func(t *testing.T) {
		// nobody owns it, but its group is root's: the directories
		// nobody made there would lose the setgid bit, and what it
		// wrote would not be the group's.
		dir := mkdir("not-my-group", 0o700, nobody)
		if err := os.Lchown(dir, nobody, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o770|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		r := user(t).run("init", "--repo", dir, "--identity-out", filepath.Join(dir, "..", "ng-id.txt"), "--key-out", filepath.Join(dir, "..", "ng-writer.key"))
		wantFail(t, r, dir, "not in its group", "add the user to the group")
	})

	t.Run("backup of what it cannot read", func(t *testing.T) {
		src := mkdir("src", 0o755, nobody)
		write(filepath.Join(src, "readable.txt"), "for everyone", 0o644, nobody)
		write(filepath.Join(src, "locked.txt"), "not for nobody", 0o000, nobody)
		write(filepath.Join(src, "roots.txt"), "root's alone", 0o600, 0)
		secret := mkdir("src/private", 0o700, 0)
		write(filepath.Join(secret, "inside.txt"), "unseen", 0o644, 0)

		r := writer(t).run("backup", "--json", src)
		if r.Code != 3 {
			t.Fatalf("want exit 3 (partial): %s", r)
		}
		var out struct {
			SnapshotID string `json:"snapshot_id"`
			Partial    *bool  `json:"partial"`
			Errors     []struct {
				Path  string `json:"path"`
				Error string `json:"error"`
			} `json:"errors"`
		}
		if err := json.Unmarshal([]byte(r.Stdout[strings.Index(r.Stdout, "{"):]), &out); err != nil {
			t.Fatalf("decode: %v: %s", err, r)
		}
		named := map[string]bool{}
		for _, e := range out.Errors {
			if !strings.Contains(strings.ToLower(e.Error), "permission denied") {
				t.Errorf("%s: %q, want it to say permission denied", e.Path, e.Error)
			}
			named[e.Path] = true
		}
		for _, p := range []string{"locked.txt", "roots.txt", "private"} {
			if !named[filepath.Join(src, p)] {
				t.Errorf("%s not among the errors %+v", p, out.Errors)
			}
			if !strings.Contains(r.Stderr, filepath.Join(src, p)) {
				t.Errorf("%s not named on stderr:\n%s", p, r.Stderr)
			}
		}
		if out.Partial == nil || !*out.Partial {
			t.Errorf("snapshot not marked partial: %s", r.Stdout)
		}
		// What it could read is in the snapshot, and only that.
		ls := reader(t).ok("ls", out.SnapshotID).Stdout
		if !strings.Contains(ls, "readable.txt") || strings.Contains(ls, "inside.txt") {
			t.Errorf("ls of the partial snapshot:\n%s", ls)
		}
	})

	// A tree with modes that deny their owner reading, backed up by root
	// (who can read it) for nobody to restore.
	modes := mkdir("modes", 0o755, nobody)
	write(filepath.Join(modes, "write-only.txt"), "its owner may write, not read", 0o200, nobody)
	write(filepath.Join(modes, "no-access.txt"), "mode 0000", 0o000, nobody)
	write(filepath.Join(modes, "plain.txt"), "plain", 0o644, nobody)
	sealed := mkdir("modes/sealed", 0o755, nobody)
	write(filepath.Join(sealed, "in-a-read-only-dir.txt"), "the directory is 0555", 0o444, nobody)
	if err := os.Chmod(sealed, 0o555); err != nil {
		t.Fatal(err)
	}
	rootCLI := newCLI(t, repoDir)
	rootCLI.key = tr.key
	snap, _ := rootCLI.backup(modes)

	t.Run("restore --verify of files their owner cannot read", func(t *testing.T) {
		target := mkdir("restored", 0o755, nobody)
		r := reader(t).ok("restore", snap.SnapshotID, "--target", target, "--verify", "--json")
		var out struct {
			Files         int64 `json:"files"`
			FilesVerified int64 `json:"files_verified"`
		}
		if err := json.Unmarshal([]byte(r.Stdout[strings.Index(r.Stdout, "{"):]), &out); err != nil {
			t.Fatalf("decode: %v: %s", err, r)
		}
		if out.Files != 4 || out.FilesVerified != 4 {
			t.Errorf("restored %d files, verified %d; want 4 and 4: %s", out.Files, out.FilesVerified, r)
		}
		compareTrees(t, modes, restoredRoot(target, modes), nil)
		for _, p := range []string{"write-only.txt", "no-access.txt"} {
			fi, err := os.Stat(filepath.Join(restoredRoot(target, modes), p))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
				t.Errorf("%s owned by %d, want nobody's", p, st.Uid)
			}
		}
	})

	t.Run("restore of extended attributes only root may set", func(t *testing.T) {
		// root's backup saves a user attribute and a file capability of
		// a read-only file; nobody's restore sets the first (which needs
		// write permission) and does not try the second (no metadata
		// error for it), also over an identical copy.
		src := mkdir("xattr-src", 0o755, nobody)
		f := filepath.Join(src, "tool")
		write(f, "#!/bin/true\n", 0o555, nobody)
		if err := unix.Lsetxattr(f, "user.note", []byte("kept"), 0); err != nil {
			t.Skipf("no user extended attributes here: %v", err)
		}
		capNetRaw := make([]byte, 20) // struct vfs_cap_data, revision 2, effective: cap_net_raw
		binary.LittleEndian.PutUint32(capNetRaw[0:], 0x02000001)
		binary.LittleEndian.PutUint32(capNetRaw[4:], 1<<13)
		if err := unix.Lsetxattr(f, "security.capability", capNetRaw, 0); err != nil {
			t.Fatal(err)
		}
		xs, _ := rootCLI.backup(src)
		target := mkdir("xattr-restored", 0o755, nobody)
		got := filepath.Join(restoredRoot(target, src), "tool")
		for _, run := range []string{"first restore", "restore over an identical copy"} {
			r := reader(t).ok("restore", xs.SnapshotID, "--target", target, "--json")
			var out struct {
				MetadataErrors int64 `json:"metadata_errors"`
				FilesSkipped   int64 `json:"files_skipped"`
			}
			if err := json.Unmarshal([]byte(r.Stdout[strings.Index(r.Stdout, "{"):]), &out); err != nil {
				t.Fatalf("decode: %v: %s", err, r)
			}
			if out.MetadataErrors != 0 {
				t.Errorf("%s: %d metadata errors: %s", run, out.MetadataErrors, r)
			}
			v := make([]byte, 64)
			if n, err := unix.Lgetxattr(got, "user.note", v); err != nil || string(v[:n]) != "kept" {
				t.Errorf("%s: user.note of the restored file: %q, %v", run, v[:max(n, 0)], err)
			}
			if _, err := unix.Lgetxattr(got, "security.capability", v); !errors.Is(err, unix.ENODATA) {
				t.Errorf("%s: security.capability on a file nobody restored: %v, want none", run, err)
			}
			if fi, err := os.Lstat(got); err != nil || fi.Mode().Perm() != 0o555 {
				t.Errorf("%s: mode of the restored file %v (%v), want 0555", run, fi.Mode(), err)
			}
			if err := unix.Lremovexattr(got, "user.note"); err != nil { // for the next run to set again
				t.Fatal(err)
			}
		}
	})

	t.Run("restore into a directory it cannot write", func(t *testing.T) {
		target := mkdir("roots-dir", 0o755, 0)
		r := reader(t).run("restore", snap.SnapshotID, "--target", target)
		wantFail(t, r, target, "not writable|permission denied")
		if r.Code != 1 {
			t.Errorf("exit %d, want 1", r.Code)
		}
		if ents, _ := os.ReadDir(target); len(ents) != 0 {
			t.Errorf("the target holds %d entries, want none", len(ents))
		}
	})

	t.Run("restore of a file where a directory it cannot remove is", func(t *testing.T) {
		target := mkdir("replacing", 0o755, nobody)
		reader(t).ok("restore", snap.SnapshotID, "--target", target)
		out := restoredRoot(target, modes)
		// plain.txt is now nobody's directory, holding one of root's.
		plain := filepath.Join(out, "plain.txt")
		if err := os.Remove(plain); err != nil {
			t.Fatal(err)
		}
		mkdir(strings.TrimPrefix(plain, base+"/"), 0o755, nobody)
		roots := mkdir(strings.TrimPrefix(plain, base+"/")+"/roots", 0o755, 0)
		write(filepath.Join(roots, "f"), "root's", 0o644, 0)

		// Without --delete a directory with entries is left (a conflict,
		// restore's own tests); with it, the restore tries to remove it.
		r := reader(t).run("restore", snap.SnapshotID, "--target", target, "--delete")
		wantFail(t, r, "could not remove the directory that was at "+strings.TrimPrefix(plain, target+"/"), "permission denied", "could not be removed")
		if r.Code != 1 {
			t.Errorf("exit %d, want 1", r.Code)
		}
		// The file is the snapshot's; what is left of the directory is
		// named, under its temporary name.
		if b, err := os.ReadFile(plain); err != nil || string(b) != "plain" {
			t.Errorf("plain.txt: %q, %v", b, err)
		}
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".lifeboat-restore-") && !strings.Contains(r.Stderr, e.Name()) {
				t.Errorf("%s left in the target and not named:\n%s", e.Name(), r.Stderr)
			}
		}
	})

	t.Run("restore --delete of an entry it cannot remove", func(t *testing.T) {
		target := mkdir("deleting", 0o755, nobody)
		reader(t).ok("restore", snap.SnapshotID, "--target", target)
		out := restoredRoot(target, modes)
		// root's directory in nobody's restored tree, holding an extra.
		fixed := filepath.Join(out, "roots")
		if err := os.Mkdir(fixed, 0o755); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(fixed, "extra.txt"), "root's", 0o644, 0)
		r := reader(t).run("restore", snap.SnapshotID, "--target", target, "--delete")
		wantFail(t, r, fixed+": could not remove it (--delete", "permission denied", "could not be removed")
		if r.Code != 1 {
			t.Errorf("exit %d, want 1", r.Code)
		}
		if strings.Contains(r.Stderr, "could not restore") || strings.Contains(r.Stderr, "could not be restored") {
			t.Errorf("a removal that failed is reported as a restore that failed:\n%s", r.Stderr)
		}
		// --json marks the failure as a removal's.
		r = reader(t).run("restore", snap.SnapshotID, "--target", target, "--delete", "--json")
		var js struct {
			Failures []struct {
				Path    string `json:"path"`
				Removal bool   `json:"removal"`
			} `json:"failures"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &js); err != nil {
			t.Fatalf("decode: %v: %s", err, r)
		}
		if len(js.Failures) != 1 || !js.Failures[0].Removal || js.Failures[0].Path != filepath.Join(modes, "roots") {
			t.Errorf("failures %+v, want one for %s marked removal", js.Failures, filepath.Join(modes, "roots"))
		}
		if _, err := os.Stat(filepath.Join(fixed, "extra.txt")); err != nil {
			t.Errorf("root's file: %v", err)
		}
		// Everything else is the snapshot's.
		if err := os.RemoveAll(fixed); err != nil {
			t.Fatal(err)
		}
		compareTrees(t, modes, out, nil)
	})
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}
