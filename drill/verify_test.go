package drill

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestVerifierFindsTampering restores a snapshot, changes the restored
// tree behind the restore's back and checks that the verifier names
// every difference.
func TestVerifierFindsTampering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tree := smallTree()
	tree["hard/a"] = fixture.Entry{Content: []byte("linked\n")}
	tree["hard/b"] = fixture.Entry{HardlinkTo: "hard/a"}
	e := newEnv(t, "local", tree)
	snap := e.backup(t, base)
	dir := t.TempDir()
	rres, err := restore.Restore(ctx, e.repos.Reader, snap, restore.Options{Target: dir})
	if err != nil || len(rres.Failures) > 0 {
		t.Fatalf("restore: %v %v", err, rres.Failures)
	}
	pl, err := buildPlan(ctx, e.repos.Reader, snap)
	if err != nil {
		t.Fatal(err)
	}
	verify := func() verified {
		t.Helper()
		v, err := verifyTree(ctx, e.repos.Reader, dir, pl.entries, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// Untouched: everything verifies.
	if v := verify(); len(v.failures) != 0 || v.files != pl.files || v.bytes != treeBytes(tree) {
		t.Fatalf("clean tree: %d files %d bytes, failures %v; want %d files %d bytes", v.files, v.bytes, v.failures, pl.files, treeBytes(tree))
	}

	at := func(p string) string { return filepath.Join(dir, e.src, p) }
	// One flipped byte in the last chunk of the two-chunk file.
	f, err := os.OpenFile(at("big.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	f.ReadAt(one[:], 3<<20+90)
	one[0] ^= 1
	f.WriteAt(one[:], 3<<20+90)
	f.Close()
	os.WriteFile(at("hello.txt"), []byte("hello, drill!\n"), 0o644) // one byte longer
	os.Remove(at("sub/conf"))
	os.Chmod(at("sub/run.sh"), 0o644)
	os.Remove(at("sub/link"))
	os.Symlink("/etc/passwd", at("sub/link"))
	os.Remove(at("empty"))
	os.Symlink("hello.txt", at("empty")) // a symlink planted where a file was
	os.Remove(at("hard/b"))
	os.WriteFile(at("hard/b"), []byte("linked\n"), 0o644) // a copy, not a link: still the right content

	v := verify()
	got := map[string]string{}
	for _, f := range v.failures {
		if f.Reason != ReasonContent {
			t.Errorf("failure %+v: want reason content", f)
		}
		got[strings.TrimPrefix(f.Path, e.rel("")+"/")] = f.Message
	}
	want := map[string]string{
		"big.bin":    "content differs in chunk ",
		"hello.txt":  "size 14 bytes, the snapshot records 13 bytes",
		"sub/conf":   "missing: the snapshot records a regular file here",
		"sub/run.sh": "mode 0644, the snapshot records 0755",
		"sub/link":   `symlink points to "/etc/passwd", the snapshot records "../hello.txt"`,
		"empty":      "wrong type: the snapshot records a regular file, the restored tree has a symlink",
	}
	for p, msg := range want {
		if !strings.Contains(got[p], msg) {
			t.Errorf("%s: message %q, want it to contain %q", p, got[p], msg)
		}
	}
	if len(got) != len(want) {
		t.Errorf("failures %v, want exactly %v", got, want)
	}
	if m := got["big.bin"]; !strings.Contains(m, "its keyed ID is") || !strings.Contains(m, "the snapshot records") {
		t.Errorf("big.bin message names no IDs: %q", m)
	}
	// Skipped paths (already reported by restore) are not checked again.
	v, err = verifyTree(ctx, e.repos.Reader, dir, pl.entries, map[string]bool{e.rel("sub"): true, e.rel("big.bin"): true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range v.failures {
		if strings.Contains(f.Path, "/sub/") || strings.HasSuffix(f.Path, "big.bin") {
			t.Errorf("skipped path verified: %+v", f)
		}
	}
}

func manyFiles(n int) fixture.Tree {
	tr := fixture.Tree{}
	for i := range n {
		tr[fmt.Sprintf("d%d/f%03d [*?].txt", i%7, i)] = fixture.Entry{Content: fmt.Appendf(nil, "file %d\n", i)}
	}
	tr["d0/link"] = fixture.Entry{Symlink: "f000 [*?].txt"}
	return tr
}

// restoredFiles runs a drill that records the regular files it finds
// in the restored tree.
func restoredFiles(t *testing.T, e *env, id string, pct float64) (*Result, []string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "files")
	o := e.opts(t, id)
	o.SamplePercent = pct
	o.Targets.RTO = time.Hour
	o.Verify = []Command{{Command: "find . -type f | sort > " + out}}
	r := e.run(t, o)
	if !r.Passed {
		t.Fatalf("drill %s: %s", id, r.Summary())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return r, strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

func TestSample(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "local", manyFiles(200))
	e.backup(t, base)
	r1, a := restoredFiles(t, e, "sample-a", 10)
	_, a2 := restoredFiles(t, e, "sample-a", 10)
	_, b := restoredFiles(t, e, "sample-b", 10)
	if r1.Files != 20 || len(a) != 20 || r1.SnapshotFiles != 200 || r1.SamplePercent != 10 {
		t.Errorf("10%% of 200: verified %d files, restored %d, snapshot %d", r1.Files, len(a), r1.SnapshotFiles)
	}
	if !slices.Equal(a, a2) {
		t.Errorf("the same drill ID sampled different files:\n%v\n%v", a, a2)
	}
	if slices.Equal(a, b) {
		t.Errorf("different drill IDs sampled the same files: %v", a)
	}
	if !strings.Contains(r1.Summary(), "(a 10% sample of 200 files)") {
		t.Errorf("summary %q", r1.Summary())
	}
	// A sample restored within the RTO target does not show the whole
	// snapshot would be: the target is not judged met.
	if r1.TargetRTOSeconds == 0 || r1.RTOMet != nil || !strings.Contains(r1.Summary(), "not judged by a sample") {
		t.Errorf("a 10%% sample judged against RTO target %vs: met %v, summary %q", r1.TargetRTOSeconds, r1.RTOMet, r1.Summary())
	}
	full, all := restoredFiles(t, e, "sample-full", 100)
	if full.Files != 200 || len(all) != 200 || full.SamplePercent != 0 {
		t.Errorf("100%%: %d files verified, %d restored", full.Files, len(all))
	}
	if full.RTOMet == nil || !*full.RTOMet {
		t.Errorf("the whole snapshot within its RTO target: met %v", full.RTOMet)
	}
}

func TestRandomWithin(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	var list []*snapshot.Snapshot
	for i, age := range []time.Duration{40 * day, 31 * day, 20 * day, 10 * day, day} {
		s := &snapshot.Snapshot{Manifest: snapshot.Manifest{Time: base.Add(-age), Host: "h"}}
		s.ID[0] = byte(i + 1)
		list = append(list, s)
	}
	seen := map[byte]int{}
	for i := range 200 {
		id := fmt.Sprintf("drill-%d", i)
		s, err := pickWithin(list, snapshot.Filter{}, base, 30*day, id)
		if err != nil {
			t.Fatal(err)
		}
		if base.Sub(s.Time) >= 30*day {
			t.Fatalf("%s picked a snapshot %v old, outside the 30d window", id, base.Sub(s.Time))
		}
		again, _ := pickWithin(list, snapshot.Filter{}, base, 30*day, id)
		if again != s {
			t.Fatalf("%s is not reproducible", id)
		}
		seen[s.ID[0]]++
	}
	if len(seen) != 3 || seen[3] < 40 || seen[4] < 40 || seen[5] < 40 {
		t.Errorf("choices over 200 drills %v: want the three snapshots in the window, roughly evenly", seen)
	}
	if _, err := pickWithin(list, snapshot.Filter{Hosts: []string{"other"}}, base, 30*day, "x"); err == nil || !strings.Contains(err.Error(), "random-within 30d") {
		t.Errorf("no candidate: err %v", err)
	}
	for in, want := range map[string]time.Duration{"random-within:30d": 30 * day, "random-within 2w": 14 * day, "random-within:36h": 36 * time.Hour} {
		if _, got, err := parseSnapshotRef(in); err != nil || got != want {
			t.Errorf("parseSnapshotRef(%q) = %v, %v; want %v", in, got, err, want)
		}
	}

	// Through Run, against a real repository.
	e := newEnv(t, "local", smallTree())
	old := e.backup(t, base.Add(-40*day))
	recent := map[string]bool{}
	for _, age := range []time.Duration{20 * day, 2 * day} {
		recent[e.backup(t, base.Add(-age)).ID.String()] = true
	}
	o := e.opts(t, "rw")
	o.Snapshot = "random-within:30d"
	r := e.run(t, o)
	if !r.Passed || !recent[r.SnapshotID] || r.SnapshotID == old.ID.String() {
		t.Errorf("random-within drill: passed %v, snapshot %s (recent: %v)", r.Passed, r.SnapshotID, recent)
	}
	o.Scratch = t.TempDir()
	o.Now = clock(base)
	if r2 := e.run(t, o); r2.SnapshotID != r.SnapshotID {
		t.Errorf("rerun of the same drill picked %s, first run %s", r2.SnapshotID, r.SnapshotID)
	}
}

// TestVerifierChecksXAttrs: a drill checks the extended attributes the
// restore sets — user attributes, an ACL, and as root a trusted
// attribute on a symlink — and names each one that is missing or
// differs in the restored tree; attributes the snapshot lacks are not
// its business, and entries whose metadata the restore reported it
// could not set are not checked again.
func TestVerifierChecksXAttrs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "local", smallTree())
	src := func(p string) string { return filepath.Join(e.src, p) }
	if !fixture.SetXAttr(t, src("hello.txt"), "user.origin", []byte("drill \xff\x00 bytes")) {
		t.Skip("the filesystem of the test's temporary directory has no user extended attributes")
	}
	fixture.SetXAttr(t, src("hello.txt"), "user.empty", []byte{})
	fixture.SetXAttr(t, src("sub"), "user.dir", []byte("d"))
	fixture.SetXAttr(t, src("deep/a/b/c/d.txt"), "user.kept", []byte("k"))
	acl := fixture.SetXAttr(t, src("sub/conf"), "system.posix_acl_access", fixture.ACLReadForUser(4321))
	root := os.Geteuid() == 0
	if root {
		fixture.SetXAttr(t, src("sub/link"), "trusted.origin", []byte("symlink"))
	}
	snap := e.backup(t, base)

	// A whole drill restores and verifies them.
	if r := e.run(t, e.opts(t, "xattrs")); !r.Passed || r.MetadataErrors != 0 {
		t.Fatalf("drill of a tree with extended attributes: %s, metadata errors %d", r.Summary(), r.MetadataErrors)
	}

	dir := t.TempDir()
	rres, err := restore.Restore(ctx, e.repos.Reader, snap, restore.Options{Target: dir})
	if err != nil || len(rres.Failures) > 0 || rres.MetadataErrors > 0 {
		t.Fatalf("restore: %v %v, %d metadata errors", err, rres.Failures, rres.MetadataErrors)
	}
	pl, err := buildPlan(ctx, e.repos.Reader, snap)
	if err != nil {
		t.Fatal(err)
	}
	at := func(p string) string { return filepath.Join(dir, e.src, p) }
	// Attributes the snapshot does not record are not failures.
	fixture.SetXAttr(t, at("big.bin"), "user.added", []byte("by the scratch filesystem"))
	fixture.SetXAttr(t, at("hello.txt"), "user.added", []byte("x"))
	verify := func(metaFailed map[string]bool) map[string]string {
		t.Helper()
		v, err := verifyTree(ctx, e.repos.Reader, dir, pl.entries, nil, metaFailed, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, f := range v.failures {
			if f.Reason != ReasonContent {
				t.Errorf("failure %+v: want reason content", f)
			}
			got[strings.TrimPrefix(f.Path, e.rel("")+"/")] = f.Message
		}
		return got
	}
	if got := verify(nil); len(got) != 0 {
		t.Fatalf("restored tree: failures %v, want none", got)
	}

	if err := unix.Lremovexattr(at("hello.txt"), "user.empty"); err != nil {
		t.Fatal(err)
	}
	fixture.SetXAttr(t, at("sub"), "user.dir", []byte("e"))
	want := map[string]string{
		"hello.txt": `extended attribute "user.empty" missing: the snapshot records it (0 bytes)`,
		"sub":       `extended attribute "user.dir" differs: 1 bytes restored, the snapshot records 1 bytes that differ`,
	}
	if acl {
		if err := unix.Lremovexattr(at("sub/conf"), "system.posix_acl_access"); err != nil {
			t.Fatal(err)
		}
		want["sub/conf"] = `extended attribute "system.posix_acl_access" missing`
	}
	if root {
		if err := unix.Lremovexattr(at("sub/link"), "trusted.origin"); err != nil {
			t.Fatal(err)
		}
		want["sub/link"] = `extended attribute "trusted.origin" missing`
	}
	got := verify(nil)
	for p, msg := range want {
		if !strings.Contains(got[p], msg) {
			t.Errorf("%s: message %q, want it to contain %q", p, got[p], msg)
		}
	}
	if len(got) != len(want) {
		t.Errorf("failures %v, want exactly %v", got, want)
	}

	// An entry whose metadata the restore could not set was reported as
	// a warning already: its attributes are not compared.
	got = verify(map[string]bool{e.rel("hello.txt"): true, e.rel("sub"): true})
	if _, ok := got["hello.txt"]; ok {
		t.Errorf("hello.txt checked although its metadata failed: %q", got["hello.txt"])
	}
	if _, ok := got["sub"]; ok {
		t.Errorf("sub checked although its metadata failed: %q", got["sub"])
	}
	if len(got) != len(want)-2 {
		t.Errorf("failures %v, want those of %v but hello.txt and sub", got, want)
	}
}

// TestDrillLeavesAttributesRestoreCouldNotSet: an attribute the restore
// reported it could not set (a user attribute on a symlink, which the
// kernel refuses, in a hand-made snapshot) is a metadata warning, and
// the verification does not fail the drill for it again; the entry's
// other checks still run, and a file's attribute beside it is checked.
func TestDrillLeavesAttributesRestoreCouldNotSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	repos := storetest.NewRepos(t, "local")
	w, err := repos.Writer.NewWriter(ctx, chunkstore.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	id, _, err := w.SaveBlob(ctx, chunkstore.DataBlob, []byte("content\n"))
	if err != nil {
		t.Fatal(err)
	}
	saveTree := func(nodes ...snapshot.Node) chunkstore.ID {
		t.Helper()
		b, err := (&snapshot.Tree{Nodes: nodes}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		id, _, err := w.SaveBlob(ctx, chunkstore.TreeBlob, b)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	sub := saveTree(
		snapshot.Node{Name: "file", Type: snapshot.TypeFile, Mode: 0o644, Size: 8, Content: []chunkstore.ID{id}, ModTime: mtime,
			XAttrs: []snapshot.XAttr{{Name: "user.ok", Value: []byte("1")}}},
		snapshot.Node{Name: "link", Type: snapshot.TypeSymlink, Mode: 0o777, LinkTarget: "file", ModTime: mtime,
			XAttrs: []snapshot.XAttr{{Name: "user.refused", Value: []byte("x")}}})
	root := saveTree(snapshot.Node{Name: "data", Type: snapshot.TypeDir, Mode: 0o755, Subtree: &sub, ModTime: mtime})
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Save(ctx, repos.Writer, snapshot.Manifest{Time: base, Host: "fixture", Paths: []string{"/data"}, Tree: root}); err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	if !fixture.SetXAttr(t, scratch, "user.probe", []byte("1")) {
		t.Skip("the filesystem of the test's temporary directory has no user extended attributes")
	}
	r, err := Run(ctx, repos.Reader, Options{ID: "refused", Scratch: scratch, Now: clock(base)})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed || r.Files != 1 {
		t.Fatalf("drill: %s (files %d), want passed with 1 file verified", r.Summary(), r.Files)
	}
	if r.MetadataErrors != 1 || len(r.MetadataSamples) != 1 || r.MetadataSamples[0].Path != "data/link" ||
		!strings.Contains(r.MetadataSamples[0].Message, "user.refused") {
		t.Fatalf("metadata warnings %d %+v, want one for data/link naming user.refused", r.MetadataErrors, r.MetadataSamples)
	}
}
