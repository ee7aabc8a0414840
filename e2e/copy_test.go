package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestCopyKilled copies a snapshot from MinIO into a local repository
// and kills the copy with SIGKILL three times, after one, two and three
// packs reached the destination. After each kill the destination holds
// no snapshot; the copy that finally runs to the end reuses what the
// killed ones uploaded, and the copy passes check --read-data and
// restores byte for byte with the destination's own identity.
func TestCopyKilled(t *testing.T) {
	work := t.TempDir()
	srcDir := filepath.Join(work, "data")
	tree := fixture.Tree{}
	for i, name := range []string{"a.bin", "b.bin", "c.bin", "d.bin", "e.bin", "f.bin", "g.bin", "h.bin"} {
		tree[name] = fixture.Entry{Content: fixture.Random(uint64(100+i), 10<<20), Mode: 0o644}
	}
	fixture.Create(t, srcDir, tree)
	src := initCLI(t, storetest.MinIORepoURL(t))
	src.writer(t).ok("backup", srcDir)

	dstDir := filepath.Join(work, "dst")
	dst := testRepo{url: dstDir, dir: dstDir, identity: filepath.Join(work, "dst-identity.txt"), key: filepath.Join(work, "dst-writer.key")}
	newCLI(t, dstDir).ok("init", "--identity-out", dst.identity, "--key-out", dst.key,
		"--from-repo", src.url, "--from-key", src.key)
	copyArgs := []string{"copy", "--json", "--from-repo", src.url, "--from-identity", src.identity}
	w := dst.writer(t)

	for kill := 1; kill <= 3; kill++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := w.command(ctx, copyArgs...)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for packFiles(t, dstDir) < kill && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		_ = cmd.Process.Kill() // SIGKILL
		err := cmd.Wait()
		cancel()
		if err == nil {
			t.Fatalf("kill %d: the copy finished before it could be killed (%d packs)", kill, packFiles(t, dstDir))
		}
		if n := len(dst.objects(t, chunkstore.SnapshotsPrefix)); n != 0 {
			t.Fatalf("kill %d: the destination holds %d snapshots after a killed copy", kill, n)
		}
	}
	uploaded := packFiles(t, dstDir)
	if uploaded < 3 {
		t.Fatalf("only %d packs reached the destination before the kills", uploaded)
	}

	var res []struct {
		Existing bool   `json:"existing"`
		Bytes    int64  `json:"bytes_read"`
		Error    string `json:"error"`
	}
	out := w.ok(copyArgs...)
	if err := json.Unmarshal([]byte(out.Stdout), &res); err != nil {
		t.Fatalf("copy --json: %v\n%s", err, out)
	}
	total := int64(len(tree)) * 10 << 20
	if len(res) != 1 || res[0].Existing || res[0].Error != "" || res[0].Bytes >= total {
		t.Fatalf("final copy %+v: want the snapshot copied, reading less than its %s (%d packs were uploaded before)", res, mib(total), uploaded)
	}
	t.Logf("%d packs uploaded by killed copies; the final copy read %s of %s", uploaded, mib(res[0].Bytes), mib(total))

	rd := dst.reader(t)
	rd.ok("check", "--read-data")
	target := filepath.Join(work, "restored")
	rd.ok("restore", "--target", target, "latest")
	fixture.Compare(t, tree, filepath.Join(target, srcDir))
	// Once more: nothing to do.
	again := w.ok(copyArgs...)
	if err := json.Unmarshal([]byte(again.Stdout), &res); err != nil || len(res) != 1 || !res[0].Existing {
		t.Fatalf("copy after the copy: %v %s", err, again)
	}
}

// packFiles counts the packs in a local repository's data directory
// (not the temporary files of uploads under way).
func packFiles(t *testing.T, repo string) int {
	t.Helper()
	n := 0
	dirs, _ := os.ReadDir(filepath.Join(repo, "data"))
	for _, d := range dirs {
		files, _ := os.ReadDir(filepath.Join(repo, "data", d.Name()))
		for _, f := range files {
			if _, ok := chunkstore.ParsePackName("data/" + d.Name() + "/" + f.Name()); ok {
				n++
			}
		}
	}
	return n
}
