package restore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/restore"
)

// TestRestoreRemovesLeftovers: what killed restores left under their
// temporary names in the target's directories — partly written files,
// a directory a file was taking the place of — is removed by the next
// restore into it and counted; a name of a process that still runs, and
// a name that merely looks alike, are left.
func TestRestoreRemovesLeftovers(t *testing.T) {
	r, src, tree, snap := standardSnapshot(t, "local")
	dst := t.TempDir()
	r.restore(t, snap, restore.Options{Target: dst})
	out := restoredAt(dst, src)

	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := gone.Process.Pid
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
	write(filepath.Join(removed[1], "held", "file"), 4096)
	write(removed[2], 10)
	write(filepath.Join(removed[3], "x"), 10)
	kept := []string{
		filepath.Join(out, ".lifeboat-restore-1-3"), // PID 1 runs
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

	// Nothing is left the next time, and a dry run removes nothing.
	write(removed[0], 10)
	if dry, err := restore.Restore(t.Context(), r.reader, snap, restore.Options{Target: dst, DryRun: true}); err != nil || dry.Leftovers != 0 {
		t.Fatalf("dry run: %v, Leftovers %d", err, dry.Leftovers)
	}
	if _, err := os.Lstat(removed[0]); err != nil {
		t.Fatalf("a dry run removed %s: %v", removed[0], err)
	}
	if res := r.restore(t, snap, restore.Options{Target: dst}); res.Leftovers != 1 {
		t.Errorf("Leftovers = %d, want 1", res.Leftovers)
	}
}
