package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// crashPackSize makes the ~150 MB crash dataset into ~40 packs, so kills
// land between many uploads and the writer's periodic index files (one
// every 16 packs) are exercised too.
const crashPackSize = 4 << 20

// crashSpec is the crash-test dataset: ~2500 small files (~30 MB, half
// compressible text) in nested directories and 6 pseudo-random files of
// 20 MiB, ~150 MB in all.
var crashSpec = datasetSpec{
	Seed: 0x11feb0a7, Dirs: 15, SmallFiles: 2500, SmallMax: 24 << 10,
	LargeFiles: 6, LargeSize: 20 << 20, Extras: true,
}

// TestCrashSafety kills backups with SIGKILL at random moments and checks
// after each kill that the repository holds no snapshot referencing
// missing data; then a clean backup must reuse what the killed ones
// uploaded and restore byte-identically.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test backs up ~150 MB 30 times; skipped in -short mode")
	}
	work := t.TempDir()
	src := filepath.Join(work, "src")
	start := time.Now()
	ds := genDataset(t, src, crashSpec)
	t.Logf("dataset: %d small + %d large files, %s, generated in %v", len(ds.Small), len(ds.Large), mib(ds.Bytes), time.Since(start).Round(time.Millisecond))

	// A clean backup into a scratch repository tells how long a full
	// backup takes here and how many packs one copy of the data fills.
	base := initAPI(t, filepath.Join(work, "baseline"), crashPackSize, "")
	bsum, br := base.writer(t).backup(src)
	basePacks, baseBytes := base.packStats(t)
	t.Logf("baseline: clean backup in %v (reported %.2fs): %d packs, %s stored, bytes_added %s",
		br.Dur.Round(time.Millisecond), bsum.DurationSeconds, basePacks, mib(baseBytes), mib(bsum.BytesAdded))
	if basePacks < 30 {
		t.Fatalf("baseline has only %d packs; the crash test needs many", basePacks)
	}
	full := br.Dur

	t.Run("local", func(t *testing.T) {
		repo := initAPI(t, filepath.Join(work, "repo"), crashPackSize, "")
		cs := &crashState{t: t, repo: repo, w: repo.writer(t), r: repo.reader(t), ds: ds, src: src, baseBytes: baseBytes}
		rng := rand.New(rand.NewPCG(42, 7))
		// Kill moments, as fractions of the expected duration of the
		// attempt (see estimate): right
		// at the start, a few ms in, very late (at and past the expected
		// end) and seeded random points in between. The last kill comes
		// half-way through a backup of freshly modified data, so the
		// final backup has uploads of a killed run to reuse.
		fixed := []float64{0, 0.002, 0.97, 1.0, 1.15}
		var fracs []float64
		for range 16 {
			fracs = append(fracs, rng.Float64())
		}
		fracs = append(fracs, fixed...)
		rng.Shuffle(len(fracs), func(i, j int) { fracs[i], fracs[j] = fracs[j], fracs[i] })
		fracs = append(fracs, 0.5)
		for i, f := range fracs {
			if i > 0 && (i%5 == 0 || i == len(fracs)-1) {
				cs.modBytes += ds.modify(t, i)
			}
			cs.killAt(i, time.Duration(f*float64(cs.estimate(full))), nil)
		}
		cs.finish(work)
	})

	t.Run("s3", func(t *testing.T) {
		repo, viaProxy, px := proxiedMinIORepo(t, crashPackSize)
		cs := &crashState{t: t, repo: repo, w: viaProxy.writer(t), r: repo.reader(t), ds: ds, src: src, baseBytes: baseBytes, proxy: px}
		// Two kills at moments in time, two while the k-th pack upload is
		// in flight (k spread over what is left to upload).
		cs.killAt(0, full/3, nil)
		for i, frac := range []float64{0.3, 0.8} {
			n, _ := repo.packStats(t)
			k := max(1, int(frac*float64(basePacks-n)))
			var puts atomic.Int64
			cs.killAt(1+i, 5*time.Minute, func(r *http.Request) proxyAction {
				if isPut(r, "/data/") && puts.Add(1) == int64(k) {
					return killNow
				}
				return forward
			})
		}
		cs.modBytes += ds.modify(t, 100)
		cs.killAt(3, full*2/3, nil)

		// The window between index and manifest: the proxy kills the
		// backup when its manifest PUT arrives, i.e. after every pack and
		// index upload has been acknowledged.
		snapsBefore := len(repo.objects(t, chunkstore.SnapshotsPrefix))
		killed := cs.killAt(4, 5*time.Minute, func(r *http.Request) proxyAction {
			if isPut(r, "/snapshots/") {
				return killNow
			}
			return forward
		})
		if !killed {
			t.Fatal("the backup finished although the proxy should have killed it at the manifest upload")
		}
		if n := len(repo.objects(t, chunkstore.SnapshotsPrefix)); n != snapsBefore {
			t.Fatalf("killed before the manifest, yet the repository has %d snapshots (had %d)", n, snapsBefore)
		}
		// Everything was uploaded and indexed: the index lists every pack.
		rd := repo.open(t)
		for name := range repo.objects(t, chunkstore.DataPrefix) {
			id, _ := chunkstore.ParsePackName(name)
			if !rd.Index().HasPack(id) {
				t.Errorf("pack %s uploaded before the manifest is in no index file", name)
			}
		}
		_, before := repo.packStats(t)
		sum, _ := repo.writer(t).backup(src)
		_, after := repo.packStats(t)
		t.Logf("backup after the index/manifest kill: bytes_added %s, files new/changed/unmodified %d/%d/%d, storage grew by %s",
			mib(sum.BytesAdded), sum.FilesNew, sum.FilesChanged, sum.FilesUnmodified, mib(after-before))
		if sum.BytesAdded > 1<<20 {
			t.Errorf("backup after a kill between index and manifest added %s; want ~0 (everything was uploaded and indexed)", mib(sum.BytesAdded))
		}
		if n := len(repo.objects(t, chunkstore.SnapshotsPrefix)); n != snapsBefore+1 {
			t.Errorf("%d snapshots after the backup, want %d", n, snapsBefore+1)
		}
		cs.r.ok("check", "--read-data")
		target := filepath.Join(work, "restore-s3")
		cs.r.ok("restore", sum.SnapshotID, "--target", target)
		compareTrees(t, src, restoredRoot(target, src), nil)
	})
}

// crashState tracks one repository through a series of killed backups.
type crashState struct {
	t         *testing.T
	repo      testRepo
	w, r      *cli // writer (maybe through the proxy) and reader
	ds        *dataset
	src       string
	proxy     *s3Proxy
	baseBytes int64 // stored bytes of one clean copy of the dataset

	snaps    int   // snapshots stored so far
	modBytes int64 // new content written by ds.modify
	maxPacks int
	noop     time.Duration // last attempt that finished with (almost) nothing to upload
}

// estimate predicts how long the next backup runs: a backup that finds
// everything stored still reads and chunks every file (noop), and the
// rest scales with what is left to upload. Kill moments are spread over
// this, so they land in real work rather than after the end.
func (cs *crashState) estimate(full time.Duration) time.Duration {
	noop := cs.noop
	if noop == 0 {
		noop = full / 4
	}
	_, present := cs.repo.packStats(cs.t)
	left := float64(cs.baseBytes+cs.modBytes-present) / float64(cs.baseBytes)
	left = min(max(left, 0), 1)
	return noop + time.Duration(left*float64(max(full-noop, 0)))
}

// killAt starts a backup and kills it with SIGKILL after d, or when hook
// (installed on the proxy) says so. It then checks the repository and
// reports whether the process was killed (rather than finishing).
func (cs *crashState) killAt(i int, d time.Duration, hook func(*http.Request) proxyAction) bool {
	t := cs.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// --no-cache: every attempt reads all files again, as after a crash
	// that lost the files cache, so kills land in real work.
	cmd := cs.w.command(ctx, "backup", "--json", "--no-cache", cs.src)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if cs.proxy != nil {
		cs.proxy.setKill(nil)
		cs.proxy.setHook(hook)
		defer cs.proxy.setHook(nil)
	}
	_, bytesBefore := cs.repo.packStats(t)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if cs.proxy != nil {
		cs.proxy.setKill(func() { _ = cmd.Process.Kill() })
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		_ = cmd.Process.Kill() // SIGKILL
		err = <-done
	}
	ran := time.Since(start)
	r := result{Args: cmd.Args[1:], Stdout: stdout.String(), Stderr: stderr.String(), Dur: ran, Code: exitCode(cmd, err)}
	killed := r.Code == -1
	if !killed && r.Code != 0 {
		t.Fatalf("iteration %d: backup failed on its own: %s", i, r)
	}

	chk := cs.r.run("check", "--read-data")
	if chk.Code != 0 {
		t.Fatalf("iteration %d: check --read-data after a backup killed at %v fails: %s", i, ran.Round(time.Millisecond), chk)
	}
	packs, bytes := cs.repo.packStats(t)
	if !killed && bytes-bytesBefore < 4<<20 {
		cs.noop = ran
	}
	snaps := len(cs.repo.objects(t, chunkstore.SnapshotsPrefix))
	idx := len(cs.repo.objects(t, chunkstore.IndexPrefix))
	// A backup that finished stored exactly one snapshot. A killed one
	// stored none, or one if the kill came after its snapshot was stored
	// but before the process exited; check --read-data above has
	// verified that snapshot like the others.
	added := snaps - cs.snaps
	if added != 1 && (!killed || added != 0) {
		t.Fatalf("iteration %d: %d snapshots in the repository after %d, by a backup that was killed: %v", i, snaps, cs.snaps, killed)
	}
	cs.snaps = snaps
	if packs < cs.maxPacks {
		t.Fatalf("iteration %d: %d packs, fewer than the %d seen before: something deleted packs", i, packs, cs.maxPacks)
	}
	cs.maxPacks = packs
	outcome := "killed"
	switch {
	case !killed:
		outcome = "finished first"
	case added == 1:
		outcome = "killed at exit" // after its snapshot was stored
	}
	tmp := ""
	if cs.repo.dir != "" {
		tmp = fmt.Sprintf(", %d temp files", tmpFiles(cs.repo.dir))
	}
	t.Logf("iteration %2d: %-14s after %6v (planned %6v): %3d packs (%s = %3.0f%% of a full copy), %d index files, %d snapshots%s; check --read-data %v",
		i, outcome, ran.Round(time.Millisecond), d.Round(time.Millisecond), packs, mib(bytes), 100*float64(bytes)/float64(cs.baseBytes), idx, snaps, tmp, chk.Dur.Round(time.Millisecond))
	return killed
}

// finish runs the final, uninterrupted backup and checks that it reused
// what the killed runs uploaded, that the repository checks clean and that
// the restore is byte-identical.
func (cs *crashState) finish(work string) {
	t := cs.t
	packsBefore, bytesBefore := cs.repo.packStats(t)
	sum, _ := cs.w.backup(cs.src, "--no-cache")
	packsAfter, bytesAfter := cs.repo.packStats(t)
	t.Logf("final backup: bytes_added %s (dataset %s, one clean copy stores %s), packs %d → %d, reused %s uploaded by killed runs",
		mib(sum.BytesAdded), mib(cs.ds.Bytes), mib(cs.baseBytes), packsBefore, packsAfter, mib(bytesBefore))

	// Every pack on storage, including those killed runs uploaded and
	// never indexed themselves, is now in the index: nothing was wasted.
	rd := cs.repo.open(t)
	for name := range cs.repo.objects(t, chunkstore.DataPrefix) {
		id, ok := chunkstore.ParsePackName(name)
		if !ok || !rd.Index().HasPack(id) {
			t.Errorf("pack %s is not referenced by the index after the final backup", name)
		}
	}
	// The final backup uploads only what was missing, so the repository
	// holds about one copy of the data, not one per attempt.
	// Modified content is pseudo-random, so it stores about 1:1.
	oneCopy := cs.baseBytes + cs.modBytes
	slack := cs.baseBytes/10 + 8<<20
	if missing := max(0, oneCopy-bytesBefore); sum.BytesAdded > missing+slack {
		t.Errorf("final backup added %s although only ~%s was missing", mib(sum.BytesAdded), mib(missing))
	}
	if bytesBefore > cs.baseBytes/2 && sum.BytesAdded > cs.ds.Bytes/2 {
		t.Errorf("killed runs had uploaded %s, yet the final backup added %s of a %s dataset", mib(bytesBefore), mib(sum.BytesAdded), mib(cs.ds.Bytes))
	}
	if bytesAfter > oneCopy+slack {
		t.Errorf("repository stores %s of packs, one copy of everything backed up is %s: uploads of killed runs were not reused", mib(bytesAfter), mib(oneCopy))
	}
	if sum.BytesProcessed < cs.ds.Bytes*9/10 {
		t.Errorf("bytes_processed %d, the dataset has ~%d", sum.BytesProcessed, cs.ds.Bytes)
	}
	cs.r.ok("check", "--read-data")
	target := filepath.Join(work, "restore-"+filepath.Base(cs.repo.url))
	cs.r.ok("restore", sum.SnapshotID, "--target", target)
	compareTrees(t, cs.src, restoredRoot(target, cs.src), nil)
}
