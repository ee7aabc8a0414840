package restore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// xattrsOf lists path's extended attributes (not following a symlink),
// leaving out security.selinux, which the system sets by itself.
func xattrsOf(t *testing.T, path string) map[string][]byte {
	t.Helper()
	sz, err := unix.Llistxattr(path, nil)
	if err != nil {
		t.Fatalf("list extended attributes of %s: %v", path, err)
	}
	buf := make([]byte, sz)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for name := range bytes.SplitSeq(buf[:n], []byte{0}) {
		if len(name) == 0 || string(name) == "security.selinux" {
			continue
		}
		vsz, err := unix.Lgetxattr(path, string(name), nil)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]byte, vsz)
		if _, err := unix.Lgetxattr(path, string(name), v); err != nil {
			t.Fatal(err)
		}
		out[string(name)] = v
	}
	return out
}

// capNetRaw is a file capability (struct vfs_cap_data, revision 2):
// cap_net_raw in the permitted and effective sets.
func capNetRaw() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(b[4:], 1<<13)        // permitted: CAP_NET_RAW
	return b
}

// aclReadForUser is an access ACL: owner rw, user 4321 r, group r, mask
// r, other r.
func aclReadForUser() []byte { return fixture.ACLReadForUser(4321) }

// TestRestoreXAttrs: extended attributes come back on files, directories
// and symlinks — user attributes with any bytes or none, an ACL, and as
// root a file capability on a file restored with another owner (chown
// clears capabilities, so they must be set after it) and a trusted
// attribute on a symlink. They are set again on a file the target
// already holds identical; --no-xattrs leaves them out.
func TestRestoreXAttrs(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	file := filepath.Join(src, "file")
	dir := filepath.Join(src, "dir")
	link := filepath.Join(src, "link")
	capFile := filepath.Join(src, "ping")
	if err := os.WriteFile(file, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(capFile, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !fixture.SetXAttr(t, file, "user.origin", []byte("lifeboat test \xff\x00 bytes")) {
		t.Skip("the filesystem of the test's temporary directory has no user extended attributes")
	}
	fixture.SetXAttr(t, file, "user.empty", []byte{})
	fixture.SetXAttr(t, file, "user.caf\xe9", []byte("a name that is not UTF-8"))
	fixture.SetXAttr(t, dir, "user.dir", []byte("d"))
	acl := fixture.SetXAttr(t, file, "system.posix_acl_access", aclReadForUser())
	root := os.Geteuid() == 0
	if root {
		if err := os.Lchown(capFile, 1234, 5678); err != nil {
			t.Fatal(err)
		}
		fixture.SetXAttr(t, capFile, "security.capability", capNetRaw())
		fixture.SetXAttr(t, link, "trusted.origin", []byte("symlink"))
	}
	snap := r.backup(t, src)
	paths := []string{file, dir, link, capFile}
	want := map[string]map[string][]byte{}
	for _, p := range paths {
		want[p] = xattrsOf(t, p)
	}
	if len(want[file]) != 3+map[bool]int{true: 1}[acl] {
		t.Fatalf("source file's attributes: %v", want[file])
	}

	dst := t.TempDir()
	check := func(what string, none bool) {
		t.Helper()
		for _, p := range paths {
			got := xattrsOf(t, restoredAt(dst, p))
			w := want[p]
			if none {
				w = map[string][]byte{}
			}
			names := func(m map[string][]byte) []string {
				var out []string
				for k := range m {
					out = append(out, k)
				}
				sort.Strings(out)
				return out
			}
			if len(got) != len(w) {
				t.Errorf("%s: %s has attributes %v, want %v", what, p, names(got), names(w))
				continue
			}
			for k, v := range w {
				if !bytes.Equal(got[k], v) {
					t.Errorf("%s: %s: %s = %q, want %q", what, p, k, got[k], v)
				}
			}
		}
	}
	res := r.restore(t, snap, restore.Options{Target: dst})
	if res.MetadataErrors != 0 {
		t.Fatalf("metadata errors: %v", res.MetadataSamples)
	}
	check("restore", false)
	if root {
		var st unix.Stat_t
		if err := unix.Lstat(restoredAt(dst, capFile), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("owner of the restored %s: %d:%d (%v), want 1234:5678", capFile, st.Uid, st.Gid, err)
		}
	}

	// The target's copy is identical: only its metadata is set again,
	// user.* attributes the snapshot lacks removed.
	if err := unix.Removexattr(restoredAt(dst, file), "user.origin"); err != nil {
		t.Fatal(err)
	}
	fixture.SetXAttr(t, restoredAt(dst, file), "user.stray", []byte("set in the target"))
	fixture.SetXAttr(t, restoredAt(dst, file), "user.empty", []byte("changed"))
	fixture.SetXAttr(t, restoredAt(dst, dir), "user.stray", nil)
	if res := r.restore(t, snap, restore.Options{Target: dst}); res.FilesSkipped == 0 || res.MetadataErrors != 0 {
		t.Fatalf("the second restore rewrote identical files or failed on metadata: %+v", res)
	}
	check("restore over an identical copy", false)

	// --no-xattrs leaves the target's attributes alone.
	fixture.SetXAttr(t, restoredAt(dst, file), "user.stray", []byte("kept"))
	r.restore(t, snap, restore.Options{Target: dst, NoXAttrs: true})
	if got := xattrsOf(t, restoredAt(dst, file)); string(got["user.stray"]) != "kept" || len(got) != len(want[file])+1 {
		t.Errorf("restore --no-xattrs over the target: %s has %v, want what it had", file, got)
	}

	bare := t.TempDir()
	r.restore(t, snap, restore.Options{Target: bare, NoXAttrs: true})
	dst = bare
	check("restore --no-xattrs", true)
}

// TestStrayXAttrsAsUser: a restore as a user other than root removes the
// user.* attributes the snapshot lacks from files it keeps as identical
// and from a directory, whose modes deny writing, which removing needs
// (and one that denies reading too, which is written again); all end with
// the snapshot's modes.
func TestStrayXAttrsAsUser(t *testing.T) {
	r := anyUserRepo(t)
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"ro": {Dir: true, Mode: 0o555}, "ro/f": {Content: []byte("read-only content\n"), Mode: 0o444},
		"ro/bare": {Content: []byte("no attributes\n"), Mode: 0o444}, "ro/shut": {Content: []byte("mode 000\n"), Mode: 0o000}})
	dir, file, bare, shut := filepath.Join(src, "ro"), filepath.Join(src, "ro", "f"), filepath.Join(src, "ro", "bare"), filepath.Join(src, "ro", "shut")
	if !fixture.SetXAttr(t, file, "user.keep", []byte("k")) {
		t.Skip("the filesystem of the test's temporary directory has no user extended attributes")
	}
	if err := os.Chmod(shut, 0); err != nil { // the fixture takes mode 0 for its default
		t.Fatal(err)
	}
	snap := r.backup(t, src)
	dst := userTarget(t, nobody)
	restoreAsNobody := func() *restore.Result { t.Helper(); return restoreAs(t, nobody, r, snap, dst) }
	if res := restoreAsNobody(); res.MetadataErrors != 0 {
		t.Fatalf("first restore: metadata errors: %v", res.MetadataSamples)
	}
	for _, p := range []string{dir, file, bare, shut} {
		fixture.SetXAttr(t, restoredAt(dst, p), "user.stray", []byte("s"))
	}
	// shut cannot be read to be compared: it is written again.
	if res := restoreAsNobody(); res.MetadataErrors != 0 || res.FilesSkipped != 2 {
		t.Fatalf("second restore: %d metadata errors (%v), %d files skipped; want 0 and 2", res.MetadataErrors, res.MetadataSamples, res.FilesSkipped)
	}
	for p, want := range map[string]string{dir: "", file: "user.keep", bare: "", shut: ""} {
		rp := restoredAt(dst, p)
		var names []string
		for name := range xattrsOf(t, rp) {
			names = append(names, name)
		}
		if strings.Join(names, ",") != want {
			t.Errorf("%s: attributes %v, want %q", rp, names, want)
		}
		wantMode := map[string]os.FileMode{dir: 0o555, shut: 0}[p]
		if p == file || p == bare {
			wantMode = 0o444
		}
		if fi, err := os.Stat(rp); err != nil || fi.Mode().Perm() != wantMode {
			t.Errorf("%s: %v, %v; want mode %v", rp, fi.Mode(), err, wantMode)
		}
	}
}

// TestStraysListedOnlyOnHeldDirs: a restore into a target that is not
// empty lists the extended attributes of the directories the target
// held, to remove the user.* ones the snapshot lacks, and not those of
// the directories it creates, which have none; these get the snapshot's.
// With --no-xattrs none is listed and the stray is left.
func TestStraysListedOnlyOnHeldDirs(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"held": {Dir: true, Mode: 0o755}, "held/new": {Dir: true, Mode: 0o755},
		"new": {Dir: true, Mode: 0o755}, "new/sub": {Dir: true, Mode: 0o750}, "new/sub/f": {Content: []byte("f\n"), Mode: 0o644}})
	if !fixture.SetXAttr(t, filepath.Join(src, "new", "sub"), "user.dir", []byte("d")) {
		t.Skip("the filesystem of the test's temporary directory has no user extended attributes")
	}
	snap := r.backup(t, src)
	rel := func(p string) string { return strings.TrimPrefix(p, "/") }

	for _, noXAttrs := range []bool{false, true} {
		dst := t.TempDir()
		held := restoredAt(dst, filepath.Join(src, "held"))
		if err := os.MkdirAll(held, 0o755); err != nil {
			t.Fatal(err)
		}
		fixture.SetXAttr(t, held, "user.stray", []byte("s"))
		// The directories the target holds: held and those above it.
		var want []string
		for p := filepath.Join(src, "held"); p != "/"; p = filepath.Dir(p) {
			want = append(want, rel(p))
		}
		sort.Strings(want)
		if noXAttrs {
			want = nil
		}

		listed := restore.DirsListedForStrays(t)
		res := r.restore(t, snap, restore.Options{Target: dst, NoXAttrs: noXAttrs})
		if res.MetadataErrors != 0 {
			t.Fatalf("no-xattrs %v: metadata errors: %v", noXAttrs, res.MetadataSamples)
		}
		if got := listed(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("no-xattrs %v: directories listed for stray attributes:\n%q\nwant those the target held:\n%q", noXAttrs, got, want)
		}
		_, stray := xattrsOf(t, held)["user.stray"]
		if stray != noXAttrs {
			t.Errorf("no-xattrs %v: %s still has user.stray: %v", noXAttrs, held, stray)
		}
		wantSub := map[string][]byte{"user.dir": []byte("d")}
		if noXAttrs {
			wantSub = map[string][]byte{}
		}
		if got := xattrsOf(t, restoredAt(dst, filepath.Join(src, "new", "sub"))); !reflect.DeepEqual(got, wantSub) {
			t.Errorf("no-xattrs %v: created directory new/sub has attributes %q, want %q", noXAttrs, got, wantSub)
		}
	}
}

// defaultACL is a default ACL: owner rwx, user 4321 rwx, group r-x, mask
// rwx, other none.
func defaultACL() []byte {
	return fixture.ACL(fixture.ACLEntry{Tag: fixture.ACLOwner, Perm: 7, ID: fixture.NoACLID}, fixture.ACLEntry{Tag: fixture.ACLUser, Perm: 7, ID: 4321},
		fixture.ACLEntry{Tag: fixture.ACLGroup, Perm: 5, ID: fixture.NoACLID}, fixture.ACLEntry{Tag: fixture.ACLMask, Perm: 7, ID: fixture.NoACLID}, fixture.ACLEntry{Tag: fixture.ACLOther, Perm: 0, ID: fixture.NoACLID})
}

// TestRestoreDoesNotInheritACLs: what a restore creates below a directory
// with a default ACL would inherit it (an access ACL granting another
// user, modes no longer cut by the umask). The snapshot's entries that
// have no ACL get none, and their modes: in a target whose own directory
// has a default ACL, and in a directory an earlier restore gave one.
func TestRestoreDoesNotInheritACLs(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	d := filepath.Join(src, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if !fixture.SetXAttr(t, d, "system.posix_acl_default", defaultACL()) {
		t.Skip("no ACLs on the filesystem of the test's temporary directory")
	}
	f := filepath.Join(d, "f")
	sub := filepath.Join(d, "sub")
	if err := os.WriteFile(f, []byte("plain"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// Made with the default ACL in place: drop what they inherited, so
	// the snapshot has them without ACLs.
	for _, p := range []string{f, sub} {
		for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
			_ = unix.Removexattr(p, name)
		}
	}
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	snap := r.backup(t, src)
	plain := func(what, dst string) {
		t.Helper()
		for p, mode := range map[string]os.FileMode{f: 0o644, sub: 0o755 | os.ModeDir} {
			got := restoredAt(dst, p)
			if xs := xattrsOf(t, got); len(xs) != 0 {
				t.Errorf("%s: %s has %d attributes (%v), the snapshot none", what, got, len(xs), xs)
			}
			if fi, err := os.Lstat(got); err != nil || fi.Mode() != mode {
				t.Errorf("%s: %s has mode %v (%v), want %v", what, got, fi.Mode(), err, mode)
			}
		}
		if xs := xattrsOf(t, restoredAt(dst, d)); len(xs) != 1 {
			t.Errorf("%s: %s has attributes %v, want its default ACL", what, restoredAt(dst, d), xs)
		}
	}

	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	plain("first restore", dst)
	for _, p := range []string{f, sub} {
		if err := os.RemoveAll(restoredAt(dst, p)); err != nil {
			t.Fatal(err)
		}
	}
	r.restore(t, snap, restore.Options{Target: dst})
	plain("restore into the directory the first gave a default ACL", dst)

	inherits := t.TempDir()
	if err := unix.Setxattr(inherits, "system.posix_acl_default", defaultACL(), 0); err != nil {
		t.Fatal(err)
	}
	r.restore(t, snap, restore.Options{Target: inherits})
	plain("restore into a directory with a default ACL", inherits)

	// With --no-xattrs the inherited ACLs stay (attributes are left
	// alone), but the modes are the snapshot's: the default ACL, not the
	// umask, made the mode the file was created with.
	noX := t.TempDir()
	if err := unix.Setxattr(noX, "system.posix_acl_default", defaultACL(), 0); err != nil {
		t.Fatal(err)
	}
	r.restore(t, snap, restore.Options{Target: noX, NoXAttrs: true})
	for p, mode := range map[string]os.FileMode{f: 0o644, sub: 0o755 | os.ModeDir} {
		if fi, err := os.Lstat(restoredAt(noX, p)); err != nil || fi.Mode() != mode {
			t.Errorf("--no-xattrs under a default ACL: %s has mode %v (%v), want %v", p, fi.Mode(), err, mode)
		}
	}
}

// TestImmutableFileNoStaleACLWarning: an immutable file the target holds
// refuses every change, the removal of ACLs it does not have included;
// the metadata error names what failed (its mode and times), not an ACL
// "which the snapshot does not have" that the file never had.
func TestImmutableFileNoStaleACLWarning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chattr +i needs root")
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("kept as it is\n"), Mode: 0o640}})
	snap := r.backup(t, src)
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	f := filepath.Join(restoredAt(dst, src), "f")
	if err := os.Chmod(f, 0o600); err != nil { // so that the restore must set it
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", f).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", f).Run() })
	res := r.restore(t, snap, restore.Options{Target: dst})
	if res.MetadataErrors == 0 {
		t.Fatal("an immutable file took the snapshot's metadata")
	}
	for _, s := range res.MetadataSamples {
		if strings.Contains(s.Err.Error(), "posix_acl") {
			t.Errorf("%s: %v; names an ACL the file does not have", s.Path, s.Err)
		}
	}
}

// TestMetadataErrorsNamed: the metadata error of an entry that refuses
// every change (an immutable file) names each call that failed, on one
// line, after the warning that names the entry; it was the bare errno
// once per call, the second and later on lines of their own.
func TestMetadataErrorsNamed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chattr +i needs root")
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"f": {Content: []byte("kept as it is\n"), Mode: 0o640}})
	snap := r.backup(t, src)
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	f := filepath.Join(restoredAt(dst, src), "f")
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", f).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", f).Run() })
	res := r.restore(t, snap, restore.Options{Target: dst})
	if len(res.MetadataSamples) != 1 {
		t.Fatalf("metadata errors %+v, want one, of f", res.MetadataSamples)
	}
	msg := res.MetadataSamples[0].Err.Error()
	for _, op := range []string{"chown: ", "chmod: ", "set times: "} {
		if !strings.Contains(msg, op) {
			t.Errorf("%q does not name %q", msg, op)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("%q spans lines", msg)
	}
	if !errors.Is(res.MetadataSamples[0].Err, unix.EPERM) {
		t.Errorf("%v is not EPERM", res.MetadataSamples[0].Err)
	}
}

// TestClearFailureNamed: a symlink or hard link whose place the target
// holds something else in, which cannot be removed (its directory is
// append-only), fails saying what could not be done, not with the bare
// errno.
func TestClearFailureNamed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chattr +a needs root")
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"d": {Dir: true}, "d/l": {Symlink: "x"},
		"d/f": {Content: []byte("f\n")}, "d/g": {HardlinkTo: "d/f"},
	})
	snap := r.backup(t, src)
	dst := t.TempDir()
	d := filepath.Join(restoredAt(dst, src), "d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"l", "g"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte("the target's\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chattr", "+a", d).CombinedOutput(); err != nil {
		t.Skipf("chattr +a: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-a", d).Run() })
	res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
	if err != nil && res == nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, f := range res.Failures {
		failed[path.Base(f.Path)] = f.Err.Error()
	}
	for _, name := range []string{"l", "g"} {
		if msg, ok := failed[name]; !ok || !strings.Contains(msg, "remove what the target holds there") {
			t.Errorf("d/%s: failure %q, want one naming the removal", name, msg)
		}
	}
}
