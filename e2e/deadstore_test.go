package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// deadStoreSpec: ~30 MB, about eight packs of crashPackSize, so that
// most of them are still to be read when the store dies.
var deadStoreSpec = datasetSpec{
	Seed: 0xdead5707, Dirs: 3, SmallFiles: 400, SmallMax: 16 << 10,
	LargeFiles: 5, LargeSize: 6 << 20,
}

// TestRestoreStoreDies: the S3 endpoint a restore reads from dies while
// pack data is downloaded (its port closed, as when the server is
// killed). The restore must give up after one round of retries, not one
// per pack left: it exits 1 with an error that names the endpoint, the
// object and what to do, --json says so on stdout, and running it again
// once the store answers keeps what the first run restored.
func TestRestoreStoreDies(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up and restores ~30 MB; skipped in -short mode")
	}
	work, src, repo, viaProxy, px, sum := backedUpBehindProxy(t)
	target := filepath.Join(work, "target")
	r := viaProxy.reader(t)

	// The store dies halfway through the pack reads, when files are
	// complete and more are to come.
	n := countPackReads(t, r, px, sum.SnapshotID, filepath.Join(work, "whole"))
	if n < 6 {
		t.Fatalf("a restore reads pack data only %d times: too few for the store to die halfway", n)
	}
	var reads atomic.Int64
	px.setHook(func(r *http.Request) proxyAction {
		if isPackRead(r) && reads.Add(1) == n/2 {
			return dieNow
		}
		return forward
	})
	const parallelism = 2
	res := r.run("restore", sum.SnapshotID, "--target", target, "--parallelism", "2", "--json")
	t.Logf("restore from a store that died at its read %d of %d of pack data: exit %d after %v", n/2, n, res.Code, res.Dur)
	if res.Code != 1 {
		t.Fatalf("exit code %d, want 1: %s", res.Code, res)
	}
	storeDied(t, res, px, parallelism, "run the same restore again")

	// The store answers again (here: read without the dead proxy).
	fin := finishRestore(t, repo.reader(t), sum.SnapshotID, target)
	if fin.FilesSkipped == 0 {
		t.Errorf("the second restore found nothing the first had restored: %+v", fin)
	}
	compareTrees(t, src, restoredRoot(target, src), nil)
}

// TestCheckStoreDies: check --read-data against an S3 endpoint that
// dies part-way stops after one round of retries, and says the store
// stopped answering instead of listing every pack left as a problem.
func TestCheckStoreDies(t *testing.T) {
	if testing.Short() {
		t.Skip("backs up and reads ~30 MB; skipped in -short mode")
	}
	_, _, _, viaProxy, px, _ := backedUpBehindProxy(t)

	var reads atomic.Int64
	px.setHook(func(r *http.Request) proxyAction {
		if isPackRead(r) && reads.Add(1) == 2 {
			return dieNow
		}
		return forward
	})
	res := viaProxy.reader(t).run("check", "--read-data", "--json")
	t.Logf("check --read-data against a store that died at its second pack read: exit %d after %v", res.Code, res.Dur)
	if res.Code != 1 {
		t.Fatalf("exit code %d, want 1: %s", res.Code, res)
	}
	const readers = 4 // packs check reads at a time
	storeDied(t, res, px, readers, "run the check again")
}

// backedUpBehindProxy backs deadStoreSpec up into a MinIO repository
// and returns the work directory, the dataset, the repository, the same
// repository through an S3 proxy the test can kill (px), and the
// backup's summary.
func backedUpBehindProxy(t *testing.T) (work, src string, repo, viaProxy testRepo, px *s3Proxy, sum backupSummary) {
	t.Helper()
	work = t.TempDir()
	src = filepath.Join(work, "src")
	genDataset(t, src, deadStoreSpec)
	repo, viaProxy, px = proxiedMinIORepo(t, crashPackSize)
	sum, _ = repo.writer(t).backup(src)
	return work, src, repo, viaProxy, px, sum
}

// storeDied checks what a command that reads packs, readers at a time,
// said when the store behind px died: each retry is logged once, and the
// reads under way then may use up their attempts (5 retries each, at the
// same time), but every later one stops at its first refused connection;
// stderr names the endpoint, a pack and the connection refused, and says
// what to do (rerun); --json says store_unreachable, with the error.
func storeDied(t *testing.T, res result, px *s3Proxy, readers int, rerun string) {
	t.Helper()
	if retries := strings.Count(res.Stderr, "storage operation failed, retrying"); retries > 5*readers {
		t.Errorf("%d retries logged, want at most %d (one round per read under way): %s", retries, 5*readers, res)
	}
	for _, want := range []string{"storage unreachable", px.addr(), "/data/", "connection refused", rerun} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("stderr does not say %q: %s", want, res)
		}
	}
	var out struct {
		Error            string `json:"error"`
		StoreUnreachable bool   `json:"store_unreachable"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil || !out.StoreUnreachable || !strings.Contains(out.Error, "storage unreachable") {
		t.Errorf("--json output %q (%v): want store_unreachable and the error", res.Stdout, err)
	}
}
