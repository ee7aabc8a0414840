package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/drill"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

type drillJSON struct {
	ID         string  `json:"id"`
	Passed     bool    `json:"passed"`
	SnapshotID string  `json:"snapshot_id"`
	RTOSeconds float64 `json:"rto_seconds"`
	RPOSeconds float64 `json:"rpo_seconds"`
	Files      int64   `json:"files"`
	Bytes      int64   `json:"bytes"`
	RTOMet     *bool   `json:"rto_met"`
	Checks     []struct {
		Command  string `json:"command"`
		ExitCode int    `json:"exit_code"`
		Passed   bool   `json:"passed"`
		Skipped  bool   `json:"skipped"`
	} `json:"checks"`
	Failures []struct {
		Reason, Path, Message string
	} `json:"failures"`
}

// largestPack returns the biggest pack file of a local repository: the
// one holding big.bin's data.
func largestPack(t *testing.T, repoDir string) string {
	t.Helper()
	var best string
	var size int64
	filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() > size {
				best, size = p, fi.Size()
			}
		}
		return nil
	})
	if best == "" {
		t.Fatal("no pack files")
	}
	return best
}

func TestDrillLocal(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	src := filepath.Join(c.dir, "src")
	tree := smallTree()
	fixture.Create(t, src, tree)
	r := initRepo(t, c, "repo")
	snap := decodeJSON[backupJSON](t, c.ok(r.writer("backup", "--json", src)...).stdout)
	scratch := filepath.Join(c.dir, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}

	// A passing drill, with a verify command that reads a restored file.
	verify := `grep -q "hello, lifeboat" "$LIFEBOAT_DRILL_DIR` + src + `/hello.txt" && test "$LIFEBOAT_SNAPSHOT_ID" = ` + snap.SnapshotID
	out := c.ok(r.reader("drill", "local", "--json", "--scratch", scratch, "--verify", verify, "--rto", "1h", "--rpo", "30d", "--id", "cli-pass")...)
	d := decodeJSON[drillJSON](t, out.stdout)
	if !d.Passed || d.ID != "cli-pass" || d.SnapshotID != snap.SnapshotID || d.RTOSeconds <= 0 || d.RPOSeconds < 0 ||
		d.Files != 5 || d.Bytes != 3<<20+17+16+12+6 || len(d.Failures) != 0 || d.RTOMet == nil || !*d.RTOMet ||
		len(d.Checks) != 1 || !d.Checks[0].Passed {
		t.Errorf("passing drill: %+v\n%s", d, out.stdout)
	}
	if !strings.Contains(out.stdout, `"failures":[]`) {
		t.Errorf("failures is not [] in %s", out.stdout)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("scratch not cleaned up: %v", ents)
	}
	human := c.ok(r.reader("drill", "local", "--sample", "50%")...)
	if !strings.Contains(human.stdout, ": passed: ") || !strings.Contains(human.stdout, "(a 50% sample of 5 files)") {
		t.Errorf("human output:\n%s", human.stdout)
	}

	// Usage errors exit 2 before anything runs.
	c.fails(2, r.reader("drill", "local", "--sample", "150%"), "--sample", "150%")
	c.fails(2, r.reader("drill", "local", "--rto", "soon"), "--rto")
	c.fails(2, r.reader("drill", "local", "--snapshot", "random-within:x"), "random-within")
	c.fails(2, []string{"drill", "local", "--repo", r.path}, "identity")

	// A verify command that fails: exit 1, its exit code recorded.
	res := c.fails(1, r.reader("drill", "local", "--verify", "echo broken >&2; exit 3", "--id", "cli-check"), "drill cli-check FAILED (check)")
	if !strings.Contains(res.stdout, "FAILED with exit code 3") || !strings.Contains(res.stdout, "| broken") {
		t.Errorf("failing check output:\n%s", res.stdout)
	}

	// A flipped byte in a data pack: exit 1, a restore failure naming the file.
	pack := largestPack(t, r.path)
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	os.Chmod(pack, 0o600)
	if err := os.WriteFile(pack, b, 0o600); err != nil {
		t.Fatal(err)
	}
	res = c.fails(1, r.reader("drill", "local", "--json", "--no-cache", "--keep-on-failure", "--scratch", scratch, "--id", "cli-flip"), "FAILED (corrupt)", "kept at")
	d = decodeJSON[drillJSON](t, res.stdout)
	if d.Passed || len(d.Failures) == 0 || d.Failures[0].Reason != "corrupt" || !strings.HasSuffix(d.Failures[0].Path, "/big.bin") ||
		!strings.Contains(d.Failures[0].Message, filepath.Base(pack)) {
		t.Errorf("flipped byte: %+v", d)
	}
	if _, err := os.Stat(filepath.Join(scratch, "lifeboat-drill-cli-flip", src, "hello.txt")); err != nil {
		t.Errorf("--keep-on-failure did not keep the tree: %v", err)
	}
}

// A 'drill local' killed with SIGKILL cannot remove its restored tree
// (plaintext copies of backed-up secrets). Without --scratch, a later
// drill must still find and bound such leftovers (at most KeptTrees stay),
// not leave one more in a fresh temporary directory each time.
func TestDrillLocalKilledLeftoversDoNotPileUp(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	src := filepath.Join(c.dir, "src")
	fixture.Create(t, src, smallTree())
	r := initRepo(t, c, "repo")
	c.ok(r.writer("backup", src)...)
	tmp := filepath.Join(c.dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	ct := c.with("TMPDIR=" + tmp)
	marker := filepath.Join(c.dir, "pgid")
	for i := range 3 {
		os.Remove(marker)
		cmd := ct.command(r.reader("drill", "local", "--id", fmt.Sprintf("killed-%d", i), "--verify", `echo $$ > `+marker+`; exec sleep 60`)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var pgid int
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if b, err := os.ReadFile(marker); err == nil && strings.HasSuffix(string(b), "\n") {
				pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				break
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		if pgid > 0 {
			syscall.Kill(-pgid, syscall.SIGKILL)
		} else {
			t.Fatal("the verify command did not start")
		}
		time.Sleep(50 * time.Millisecond) // distinct modification times
	}
	ct.ok(r.reader("drill", "local", "--id", "after")...)
	var trees []string
	filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "lifeboat-drill-") {
			if _, err := os.Stat(filepath.Join(p, src, "hello.txt")); err == nil {
				trees = append(trees, p)
			}
		}
		return nil
	})
	if len(trees) > drill.KeptTrees {
		t.Errorf("%d restored trees of killed drills left in TMPDIR, want at most %d: %v", len(trees), drill.KeptTrees, trees)
	}
}
