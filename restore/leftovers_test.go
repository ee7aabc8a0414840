package restore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// TestRestoreRemovesLeftovers: what killed restores left under their
// temporary names in the target's directories — partly written files,
// an empty directory a file was taking the place of — is removed by the next
// restore into it and counted; a name of a process that still runs, and
// a name that merely looks alike, are left.
func TestRestoreRemovesLeftovers(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)

	dead := deadPID(t)
	running := exec.Command("sleep", "600")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = running.Process.Kill(); _ = running.Wait() }()
	write := func(p string, n int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fixture.Random(uint64(n), n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed := []string{
		filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-1", dead)),                            // a partly written file
		filepath.Join(out, "times", fmt.Sprintf(".lifeboat-restore-%d-2-old", dead)),               // a directory moved aside
		filepath.Join(dst, fmt.Sprintf(".lifeboat-restore-%d-7", os.Getpid())),                     // our PID, an earlier process's
		filepath.Join(out, "times", "olddir", fmt.Sprintf(".lifeboat-restore-%d-12", os.Getpid())), // a directory exchanged out
	}
	write(removed[0], 1<<20)
	write(removed[2], 10)
	// Empty: one holding entries is left without --delete
	// (TestLeftoverDirectoriesWithEntries).
	for _, d := range []string{removed[1], removed[3]} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kept := []string{
		filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-3", running.Process.Pid)), // that process runs
		filepath.Join(out, ".lifeboat-restore-notes"),
		filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-0", dead)),
		filepath.Join(out, fmt.Sprintf("lifeboat-restore-%d-1", dead)),
	}
	for _, p := range kept {
		write(p, 10)
	}

	res := r.restore(t, snap, restore.Options{Target: dst})
	if res.Leftovers != int64(len(removed)) {
		t.Errorf("Leftovers = %d, want %d", res.Leftovers, len(removed))
	}
	for _, p := range removed {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: a killed restore's leftover is still there (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: not a leftover, yet %v", p, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	fixture.Compare(t, tree, out)
	if res.FilesSkipped != int64(len(tree.Regular())) || res.BytesWritten != 0 {
		t.Errorf("restore over an intact tree skipped %d of %d files and wrote %d bytes", res.FilesSkipped, len(tree.Regular()), res.BytesWritten)
	}

	// A dry run counts what a restore would remove, and removes nothing.
	write(removed[0], 10)
	if dry, err := restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst, DryRun: true}); err != nil || dry.Leftovers != 1 {
		t.Fatalf("dry run: %v, Leftovers %d, want 1", err, dry.Leftovers)
	}
	if _, err := os.Lstat(removed[0]); err != nil {
		t.Fatalf("a dry run removed %s: %v", removed[0], err)
	}
	if res := r.restore(t, snap, restore.Options{Target: dst}); res.Leftovers != 1 {
		t.Errorf("Leftovers = %d, want 1", res.Leftovers)
	}

	// --delete removes what the snapshot lacks, but not the temporary
	// file of a restore still running into the target (a killed one's
	// is the sweep's, counted as a leftover, not as a deletion).
	write(kept[0], 10)
	write(removed[0], 10)
	extra := filepath.Join(out, "not-in-the-snapshot")
	write(extra, 10)
	res = r.restore(t, snap, restore.Options{Target: dst, Delete: true})
	if _, err := os.Lstat(kept[0]); err != nil {
		t.Errorf("--delete removed a running restore's temporary file: %v", err)
	}
	if _, err := os.Lstat(extra); !os.IsNotExist(err) {
		t.Errorf("--delete left %s: %v", extra, err)
	}
	if res.Leftovers != 1 || len(res.Changes) != 1 || !strings.HasSuffix(res.Changes[0].Path, "not-in-the-snapshot") {
		t.Errorf("--delete: leftovers %d, changes %+v; want 1 leftover and only not-in-the-snapshot deleted", res.Leftovers, res.Changes)
	}
}

// TestLeftoverDirectoriesWithEntries: a directory a killed restore left
// under a temporary name (moved aside, or exchanged out, to put a file in
// its place) that holds entries was the user's, and they are left,
// named, by a restore without --delete, as the restore that moved it
// would have left them (it removes only an empty one), in a dry run too;
// a restore with --delete removes it, as it would have. Before, any
// restore removed it with all it held.
func TestLeftoverDirectoriesWithEntries(t *testing.T) {
	r, src, _, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	dead := deadPID(t)
	dirs := []string{
		filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-4-old", dead)),      // moved aside
		filepath.Join(out, "times", fmt.Sprintf(".lifeboat-restore-%d-5", dead)), // exchanged out
	}
	for _, d := range dirs {
		userDir(t, filepath.Join(d, "sub"))
	}
	kept := func(res *restore.Result) {
		t.Helper()
		if res.Leftovers != 0 || len(res.LeftoversKept) != len(dirs) {
			t.Fatalf("Leftovers %d, kept %v; want none removed, both kept", res.Leftovers, res.LeftoversKept)
		}
		for _, k := range res.LeftoversKept {
			if msg := k.Err.Error(); !strings.Contains(msg, "holds entries") || !strings.Contains(msg, "--delete") {
				t.Errorf("%s: %s; want it to say it holds entries, naming --delete", k.Path, msg)
			}
		}
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, "sub", "mine.txt")); err != nil || string(b) != userFile {
				t.Errorf("%s/sub/mine.txt: %q, %v; want it kept", d, b, err)
			}
		}
	}
	dry, err := restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	kept(dry)
	kept(r.restore(t, snap, restore.Options{Target: dst}))

	dry, err = restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst, DryRun: true, Delete: true})
	if err != nil || dry.Leftovers != int64(len(dirs)) {
		t.Fatalf("dry run with --delete: %v, Leftovers %d, want %d", err, dry.Leftovers, len(dirs))
	}
	res := r.restore(t, snap, restore.Options{Target: dst, Delete: true})
	if res.Leftovers != int64(len(dirs)) || len(res.LeftoversKept) != 0 {
		t.Errorf("--delete: Leftovers %d, kept %v; want both removed", res.Leftovers, res.LeftoversKept)
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("--delete left %s: %v", d, err)
		}
	}
}

// TestLeftoversTheSnapshotHolds: entries of the snapshot whose names look
// like a restore's temporary ones (a backup of a target that held
// leftovers) are the snapshot's, not leftovers: restoring it again into
// the same target keeps them and succeeds.
func TestLeftoversTheSnapshotHolds(t *testing.T) {
	dead := deadPID(t)
	tree := fixture.Tree{
		"plain": {Content: []byte("plain"), Mode: 0o644},
		fmt.Sprintf(".lifeboat-restore-%d-1", dead):     {Content: fixture.Random(1, 3<<20), Mode: 0o644},
		fmt.Sprintf(".lifeboat-restore-%d-2", dead):     {Dir: true, Mode: 0o755},
		fmt.Sprintf(".lifeboat-restore-%d-2/a", dead):   {Content: []byte("a"), Mode: 0o644},
		fmt.Sprintf(".lifeboat-restore-%d-3-old", dead): {Symlink: "plain"},
	}
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	dst := t.TempDir()
	for i := range 2 {
		res := r.restore(t, snap, restore.Options{Target: dst})
		if res.Leftovers != 0 {
			t.Errorf("restore %d removed %d entries of the snapshot as leftovers", i+1, res.Leftovers)
		}
		fixture.Compare(t, tree, restoredAt(dst, src))
	}
}

// TestLeftoversOfARunningRestore: while another restore holds the
// target (its lock, whatever its PID namespace), the temporary names in
// it are left alone; once it is done, the next restore removes them.
func TestLeftoversOfARunningRestore(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	// Our own PID: only the lock tells the file is not an earlier
	// process's (as for a restore in another container, PID 1 too).
	tmp := filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-9", os.Getpid()))
	if err := os.WriteFile(tmp, []byte("being written"), 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	res := r.restore(t, snap, restore.Options{Target: dst})
	if _, err := os.Lstat(tmp); err != nil || res.Leftovers != 0 {
		t.Fatalf("a restore removed another's temporary file while that one held the target: %v, Leftovers %d", err, res.Leftovers)
	}
	unix.Close(fd) // that restore is done
	if res := r.restore(t, snap, restore.Options{Target: dst}); res.Leftovers != 1 {
		t.Errorf("Leftovers = %d once the other restore was done, want 1", res.Leftovers)
	}
	fixture.Compare(t, tree, out)
}

// TestSnapshotHoldsTemporaryNames: a snapshot may hold entries named as
// this restore's temporary files (".lifeboat-restore-PID-N" with this
// process's PID: a backup of a target a killed restore left them in,
// restored in a container where the restore is PID 1 again). The
// restore's own temporary names avoid them, so those entries are
// restored like any other (found by review: the temporary file of a
// large file took the place of such an entry — an empty directory, a
// file already identical — which was then missing, without a word).
func TestSnapshotHoldsTemporaryNames(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	name := func(n int) string { return fmt.Sprintf("d/.lifeboat-restore-%d-%d", os.Getpid(), n) }
	tree := fixture.Tree{
		name(1):  {Dir: true},
		name(2):  {Content: []byte("a file the snapshot holds\n")},
		"d/big":  {Content: fixture.Random(8, 3<<20)}, // several chunks: a temporary name
		"d/big2": {Content: fixture.Random(9, 3<<20)},
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	dst := t.TempDir()
	out := restoredAt(dst, src)
	check := func(run string) {
		t.Helper()
		if fi, err := os.Lstat(filepath.Join(out, name(1))); err != nil || !fi.IsDir() {
			t.Errorf("%s: %s: %v, %v; want the snapshot's directory", run, name(1), fi, err)
		}
		for _, p := range []string{name(2), "d/big", "d/big2"} {
			if got, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(got) != string(tree[p].Content) {
				t.Errorf("%s: %s: %d bytes, %v; want the snapshot's %d", run, p, len(got), err, len(tree[p].Content))
			}
		}
	}
	run := func(run string) {
		t.Helper()
		res, err := restore.Restore(context.Background(), r.reader, snap, restore.Options{Target: dst})
		if err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		if len(res.Failures) > 0 {
			t.Errorf("%s: %v", run, res.Failures)
		}
		check(run)
	}
	run("into an empty target")
	// Again, with the large files changed since: each is written under a
	// temporary name again, and the rest is already identical.
	for _, p := range []string{"d/big", "d/big2"} {
		if err := os.WriteFile(filepath.Join(out, p), []byte("changed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("again")
}

// TestKeptLeftoverNamesNotReused: a leftover the sweep keeps (here a
// directory that holds entries, without --delete) named with this
// process's PID (a container's restores all run as PID 1) is not handed
// out again as a temporary name: the directory moved aside to make room
// for a file is, and it is left as it was. Before, the file that drew its
// number failed ("move the directory there aside: directory not empty");
// and before the file's own name was passed over when taken
// (TestTemporaryNameTaken), the files that drew a kept name's number
// failed and their cleanup removed it.
func TestKeptLeftoverNamesNotReused(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := fixture.Tree{
		"small":     {Content: []byte("the snapshot's small file\n")},
		"big":       {Content: fixture.Random(7, 3<<20)},
		"was-a-dir": {Content: []byte("a file where the target has an empty directory\n")},
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)
	must := fatalIf(t)
	must(os.WriteFile(filepath.Join(out, "small"), []byte("changed in the target\n"), 0o644))
	must(os.WriteFile(filepath.Join(out, "big"), []byte("changed in the target\n"), 0o644))
	must(os.Remove(filepath.Join(out, "was-a-dir")))
	must(os.Mkdir(filepath.Join(out, "was-a-dir"), 0o755))
	// The restore hands out numbers 1, 2 and 3: each is taken in its
	// moved-aside form (a file's own temporary name that the target
	// holds is passed over when created: TestTemporaryNameTaken).
	var kept []string
	for n := 1; n <= 3; n++ {
		kept = append(kept, userDir(t, filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-%d-old", os.Getpid(), n))))
	}
	restore.RefuseExchange(t) // so that was-a-dir's directory is moved aside
	res, err := restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Errorf("failures: %v", res.Failures)
	}
	if len(res.LeftoversKept) != len(kept) {
		t.Errorf("leftovers kept: %v, want the %d directories", res.LeftoversKept, len(kept))
	}
	keptUserDirs(t, kept)
	fixture.Compare(t, tree, out)
}

// TestTemporaryNameTaken: a temporary name a file draws that the target
// holds already (here a directory with entries that an earlier process
// of the same PID left, which the sweep left because another restore
// held the target) is not the restore's to remove: the file draws
// another, is restored, and what held the name is left as it was.
// Before, the file failed ("the target holds a directory with entries
// here", of the file's own path), and its cleanup removed the directory
// with all it held; with --delete, creating the file removed it.
func TestTemporaryNameTaken(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	tree := fixture.Tree{
		"big":   {Content: fixture.Random(8, 3<<20)},
		"small": {Content: []byte("the snapshot's\n")},
	}
	fixture.Create(t, src, tree)
	snap := r.backup(t, src)
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete=%v", del), func(t *testing.T) {
			dst := t.TempDir()
			r.restore(t, snap, restore.Options{Target: dst})
			out := restoredAt(dst, src)
			must := fatalIf(t)
			must(os.WriteFile(filepath.Join(out, "big"), []byte("changed in the target\n"), 0o644))
			must(os.WriteFile(filepath.Join(out, "small"), []byte("changed in the target\n"), 0o644))
			// The numbers the restore draws first.
			var taken []string
			for n := 1; n <= 2; n++ {
				taken = append(taken, userDir(t, filepath.Join(out, fmt.Sprintf(".lifeboat-restore-%d-%d", os.Getpid(), n))))
			}
			// Another restore running into the target, as its shared
			// lock says: leftovers are left for a later one.
			lock, err := os.Open(dst)
			must(err)
			defer lock.Close()
			must(unix.Flock(int(lock.Fd()), unix.LOCK_SH))
			res, err := restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst, Delete: del})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Failures) > 0 {
				t.Errorf("failures: %v", res.Failures)
			}
			keptUserDirs(t, taken)
			fixture.Compare(t, tree, out)
		})
	}
}

// TestFailedFileLeavesDirectoryAtItsTemporaryName: a directory with
// entries that takes the temporary name of a file being written (another
// process moved the file away and made it) fails that file, and is left
// as it is: the failed file's cleanup removes only a file under its
// temporary name, the restore's own. Before, it removed the directory
// with all it held.
func TestFailedFileLeavesDirectoryAtItsTemporaryName(t *testing.T) {
	r := newRepo(t, "local")
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{"big": {Content: fixture.Random(8, 3<<20)}})
	snap := r.backup(t, src)
	dst := t.TempDir()
	out := restoredAt(dst, src)
	var dirs []string
	restore.BeforeFetch(t, func(string) {
		tmps, err := filepath.Glob(filepath.Join(out, ".lifeboat-restore-*"))
		if err != nil || len(tmps) != 1 {
			t.Errorf("temporary files %q, %v; want big's", tmps, err)
			return
		}
		for _, err := range []error{
			os.Rename(tmps[0], filepath.Join(out, "moved away")),
			os.Mkdir(tmps[0], 0o755),
			os.WriteFile(filepath.Join(tmps[0], "mine.txt"), []byte("the user's\n"), 0o644),
		} {
			if err != nil {
				t.Error(err)
			}
		}
		dirs = tmps
	})
	res, err := restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || !strings.HasSuffix(res.Failures[0].Path, "/big") {
		t.Errorf("failures %v, want big's", res.Failures)
	}
	if len(dirs) == 0 {
		t.Fatal("no temporary file to take the name of")
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "mine.txt")); err != nil || string(b) != "the user's\n" {
		t.Errorf("%s/mine.txt: %q, %v; want it kept", dirs[0], b, err)
	}
}

// deadPID is the PID of a process that has ended: a killed restore's,
// whose temporary names the next restore may remove.
func deadPID(t *testing.T) int {
	t.Helper()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	return gone.Process.Pid
}

// userFile is what the user's file in a userDir holds.
const userFile = "the user's\n"

// userDir makes directory d holding the user's file mine.txt.
func userDir(t *testing.T, d string) string {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "mine.txt"), []byte(userFile), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// keptUserDirs checks that each of dirs (made by userDir) still holds
// the user's file, then removes it.
func keptUserDirs(t *testing.T, dirs []string) {
	t.Helper()
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "mine.txt")); err != nil || string(b) != userFile {
			t.Errorf("%s/mine.txt: %q, %v; want it kept", d, b, err)
		}
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
}
