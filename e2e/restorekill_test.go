package e2e

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// restoreKillSpec: ~45 MB, ~12 packs of crashPackSize, so a restore
// makes a dozen or more ranged reads to kill it at.
var restoreKillSpec = datasetSpec{
	Seed: 0x7e570a11, Dirs: 9, SmallFiles: 1200, SmallMax: 24 << 10,
	LargeFiles: 4, LargeSize: 8 << 20, Extras: true,
}

// TestRestoreKilled kills restores with SIGKILL while pack data is
// downloaded, the k-th read of pack data being the moment, and runs
// them again.
//   - Into a new directory: the run that finally finishes keeps what
//     the killed runs wrote completely, rewrites what they left half
//     done, removes and counts the temporary files they left (the later
//     runs replace what the earlier ones wrote), and the tree is the
//     snapshot's.
//   - Over an older restore whose files have since changed: after every
//     kill each file of the target is whole, either the old version or
//     the new one (a replacement is renamed in only once complete); the
//     run that finishes removes the partly written temporary files the
//     kills left, says how many, and the tree is the new snapshot's.
func TestRestoreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills restores of ~45 MB; skipped in -short mode")
	}
	work := t.TempDir()
	src := filepath.Join(work, "src")
	ds := genDataset(t, src, restoreKillSpec)
	repo, viaProxy, px := proxiedMinIORepo(t, crashPackSize)
	sumA, _ := repo.writer(t).backup(src)
	before := scanTree(t, src)

	// Change a third of the small files and all the large ones.
	for i, rel := range ds.Small {
		if i%3 == 0 {
			ds.write(t, rel, ds.smallContent(i%2 == 0, 16<<10))
		}
	}
	for _, rel := range ds.Large {
		data := make([]byte, restoreKillSpec.LargeSize)
		ds.fill(data)
		ds.write(t, rel, data)
	}
	sumB, _ := repo.writer(t).backup(src)
	after := scanTree(t, src)
	r := viaProxy.reader(t)

	// The killed restores read two ranges at a time (--parallelism 2),
	// so when read k arrives, reads 1..k-2 are done. An uninterrupted
	// restore tells how many reads one makes. The first kill lands at
	// the first read, the second a third of the way, the third a third
	// into what the second left.
	n := countPackReads(t, r, px, sumB.SnapshotID, filepath.Join(work, "whole"))
	older := filepath.Join(work, "whole-over-older")
	repo.reader(t).ok("restore", sumA.SnapshotID, "--target", older)
	m := countPackReads(t, r, px, sumB.SnapshotID, older)
	t.Logf("an uninterrupted restore reads pack data %d times into a new directory, %d times over the older restore", n, m)
	if n < 6 || m < 6 {
		t.Fatalf("a restore reads pack data only %d and %d times: too few to kill it at", n, m)
	}

	t.Run("new-target", func(t *testing.T) {
		target := filepath.Join(work, "new")
		for _, k := range []int64{1, n / 3, n / 3} {
			gets := killRestore(t, r, px, sumB.SnapshotID, target, k)
			t.Logf("killed at read %d of pack data: %d regular files in the target, %d temporary", gets, len(regularFiles(t, target)), len(leftoverPaths(t, target)))
			// A large file is written under a temporary name: under its
			// own it is complete or absent, never partly written (which
			// a later --overwrite never would keep).
			files := regularFiles(t, restoredRoot(target, src))
			for _, rel := range ds.Large {
				if sum, ok := files[rel]; ok && sum != after[rel].hash {
					t.Errorf("after a kill at read %d of pack data, %s is under its own name but not complete", gets, rel)
				}
			}
		}
		left := leftoverPaths(t, target)
		res := finishRestore(t, r, sumB.SnapshotID, target)
		if res.Leftovers != int64(len(left)) {
			t.Errorf("the finishing restore reports %d leftovers removed; the kills left %d: %v", res.Leftovers, len(left), left)
		}
		if res.FilesSkipped == 0 {
			t.Errorf("the finishing restore found nothing complete in the target: the killed ones wrote nothing it could keep (%+v)", res)
		}
		compareTrees(t, src, restoredRoot(target, src), nil)
	})

	t.Run("over-an-older-restore", func(t *testing.T) {
		target := filepath.Join(work, "older")
		repo.reader(t).ok("restore", sumA.SnapshotID, "--target", target)
		for _, k := range []int64{1, m / 3, m / 3} {
			gets := killRestore(t, r, px, sumB.SnapshotID, target, k)
			root := restoredRoot(target, src)
			files := regularFiles(t, root)
			var oldOnes, newOnes int
			for rel, e := range after {
				if e.kind != 0 {
					continue
				}
				sum, ok := files[rel]
				switch {
				case !ok:
					t.Errorf("after a kill at read %d of pack data, %s is missing from the target, which held it", gets, rel)
				case sum == after[rel].hash && sum == before[rel].hash:
				case sum == after[rel].hash:
					newOnes++
				case sum == before[rel].hash:
					oldOnes++
				default:
					t.Errorf("after a kill at read %d of pack data, %s is neither the old version nor the new one: a replacement was not atomic", gets, rel)
				}
			}
			for rel := range files {
				if _, ok := after[rel]; !ok {
					t.Errorf("after a kill at read %d of pack data, the target holds %s, which neither snapshot has", gets, rel)
				}
			}
			t.Logf("killed at read %d of pack data: %d changed files replaced, %d still old, %d temporary", gets, newOnes, oldOnes, len(leftoverPaths(t, target)))
		}
		left := leftoverPaths(t, target)
		if len(left) == 0 {
			t.Fatal("the killed restores left no temporary files: the kills did not land while changed files were written")
		}
		res := finishRestore(t, r, sumB.SnapshotID, target)
		if res.Leftovers != int64(len(left)) {
			t.Errorf("the finishing restore reports %d leftovers removed; the kills left %d: %v", res.Leftovers, len(left), left)
		}
		if got := leftoverPaths(t, target); len(got) > 0 {
			t.Errorf("temporary files left after the finishing restore: %v", got)
		}
		compareTrees(t, src, restoredRoot(target, src), nil)
	})
}

// restoreSummary is what the tests read of "restore --json".
type restoreSummary struct {
	Files        int64 `json:"files"`
	FilesSkipped int64 `json:"files_skipped"`
	BytesWritten int64 `json:"bytes_written"`
	Leftovers    int64 `json:"leftovers_removed"`
}

// killRestore starts "restore snap --target target --parallelism 2"
// through proxy px and kills it with SIGKILL when its k-th read of pack
// data arrives. The restore must not finish first. It returns k.
func killRestore(t *testing.T, c *cli, px *s3Proxy, snap, target string, k int64) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, "restore", snap, "--target", target, "--parallelism", "2")
	var gets atomic.Int64
	px.setHook(func(r *http.Request) proxyAction {
		if isPackRead(r) && gets.Add(1) == k {
			return killNow
		}
		return forward
	})
	defer px.setHook(nil)
	// Installed before Start (read k may come at once); it waits until
	// Start has handed over the process.
	started := make(chan *os.Process, 1)
	px.setKill(func() {
		p := <-started
		started <- p
		_ = p.Kill()
	})
	defer px.setKill(nil)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started <- cmd.Process
	err := cmd.Wait()
	if code := exitCode(cmd, err); code != -1 {
		t.Fatalf("the restore was to be killed at its read %d of pack data, but exited with %d after %d reads", k, code, gets.Load())
	}
	return k
}

// countPackReads runs "restore snap --target target --parallelism 2"
// through proxy px
// to its end and returns how many times it read pack data.
func countPackReads(t *testing.T, c *cli, px *s3Proxy, snap, target string) int64 {
	t.Helper()
	var reads atomic.Int64
	px.setHook(func(r *http.Request) proxyAction {
		if isPackRead(r) {
			reads.Add(1)
		}
		return forward
	})
	defer px.setHook(nil)
	c.ok("restore", snap, "--target", target, "--parallelism", "2")
	return reads.Load()
}

// isPackRead reports whether r reads pack data.
func isPackRead(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/data/")
}

// finishRestore runs the restore to its end and returns its summary.
func finishRestore(t *testing.T, c *cli, snap, target string) restoreSummary {
	t.Helper()
	out := c.ok("restore", snap, "--target", target, "--json")
	var res restoreSummary
	if err := json.Unmarshal([]byte(out.Stdout), &res); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	t.Logf("finishing restore: %d files, %d found complete, %s written, %d leftovers removed", res.Files, res.FilesSkipped, mib(res.BytesWritten), res.Leftovers)
	return res
}

// regularFiles returns the SHA-256 of every regular file below root,
// by path relative to root, leaving out a restore's temporary files.
func regularFiles(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	for rel, e := range scanTree(t, root) {
		if e.kind == 0 && !strings.HasPrefix(filepath.Base(rel), ".lifeboat-restore-") {
			out[rel] = e.hash
		}
	}
	return out
}

// leftoverPaths lists the temporary files and directories of restores
// below root.
func leftoverPaths(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".lifeboat-restore-") {
			out = append(out, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}
