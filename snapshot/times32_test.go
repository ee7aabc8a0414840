package snapshot_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestTimesPast2038: a file and a directory dated after January 2038
// are saved with their times, on every platform: where stat holds 32-bit
// seconds (386, arm) it would give 2100 back as 1963 (run this test with
// GOARCH=386 to see).
func TestTimesPast2038(t *testing.T) {
	src := t.TempDir()
	dir := filepath.Join(src, "d")
	file := filepath.Join(dir, "f")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("from the future\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2100, 1, 2, 3, 4, 5, 600000000, time.UTC)
	atime := time.Date(2101, 6, 7, 8, 9, 10, 0, time.UTC)
	// With touch: a 32-bit test binary's utimensat takes 32-bit seconds.
	for _, p := range []string{file, dir} {
		for flag, tm := range map[string]time.Time{"-m": mtime, "-a": atime} {
			if out, err := exec.Command("touch", flag, "-d", tm.Format(time.RFC3339Nano), p).CombinedOutput(); err != nil {
				t.Fatalf("touch %s: %v\n%s", p, err, out)
			}
		}
	}
	repos := storetest.InitRepos(t, mem.New())
	res, nodes := backupOf(t, repos, nil, snapshot.BackupOptions{Paths: []string{src}}, "d/f", "d")
	if len(res.Warnings) > 0 {
		t.Fatalf("warnings: %v", res.Warnings)
	}
	for i, n := range nodes {
		if n == nil {
			t.Fatalf("entry %d missing from the snapshot", i)
		}
		if !n.ModTime.Equal(mtime) {
			t.Errorf("%s: modification time %v, want %v", n.Name, n.ModTime, mtime)
		}
	}
	if !nodes[0].AccessTime.Equal(atime) {
		t.Errorf("f: access time %v, want %v", nodes[0].AccessTime, atime)
	}
	if nodes[0].ChangeTime.Year() < 2026 {
		t.Errorf("f: change time %v, want now", nodes[0].ChangeTime)
	}
}
