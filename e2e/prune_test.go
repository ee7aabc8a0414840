package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// pruneSpec is small: the test is about prune's steps, not volume. Three
// versions of it leave ~25 packs of 4 MiB, two thirds of them garbage
// once the first two snapshots are forgotten.
var pruneSpec = datasetSpec{
	Seed: 0x9a4e, Dirs: 6, SmallFiles: 400, SmallMax: 16 << 10,
	LargeFiles: 4, LargeSize: 8 << 20, Extras: true,
}

type pruneJSON struct {
	Marked       int   `json:"marked_packs"`
	Deleted      int   `json:"deleted_packs"`
	DeletedBytes int64 `json:"deleted_bytes"`
	Pending      int   `json:"pending_marks"`
	Reused       int   `json:"reused_packs"`
	Waiting      []struct {
		Host string `json:"host"`
		PID  int    `json:"pid"`
	} `json:"waiting_for"`
}

// TestPruneCrashSafety kills prune with SIGKILL at each of its steps —
// storing the mark, writing the new index, deleting packs, deleting the
// old index files, deleting the mark — and checks after every kill that
// the repository checks clean with --read-data. A final prune finishes
// the work: only about one copy of the newest data is left, and the
// newest snapshot restores byte-identically. Then a backup killed with
// SIGKILL leaves a session that prune waits for rather than deleting under
// it.
func TestPruneCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("prune crash test backs up ~40 MB three times; skipped in -short mode")
	}
	work := t.TempDir()
	src := filepath.Join(work, "src")
	ds := genDataset(t, src, pruneSpec)

	repo, viaProxy, px := proxiedMinIORepo(t, crashPackSize)
	w, r, pr := repo.writer(t), repo.reader(t), viaProxy.reader(t)

	var ids []string
	for i := range 3 {
		if i > 0 {
			ds.modify(t, i)
		}
		sum, _ := w.backup(src)
		ids = append(ids, sum.SnapshotID)
	}
	onePacks, oneBytes := repo.packStats(t)
	out := r.ok("forget", ids[0], ids[1], "--json")
	var fo struct {
		Removed int `json:"removed"`
	}
	if err := json.Unmarshal([]byte(out.Stdout), &fo); err != nil || fo.Removed != 2 {
		t.Fatalf("forget: %v %s", err, out)
	}
	t.Logf("three versions: %d packs, %s; first two snapshots forgotten", onePacks, mib(oneBytes))

	isDelete := func(req *http.Request, part string) bool {
		return req.Method == http.MethodDelete && strings.Contains(req.URL.Path, part)
	}
	var deletes atomic.Int64
	steps := []struct {
		name string
		hook func(*http.Request) proxyAction
	}{
		{"storing the mark", func(req *http.Request) proxyAction {
			if isPut(req, "/gc/") && !strings.Contains(req.URL.Path, "/gc/clock-") {
				return killNow
			}
			return forward
		}},
		{"writing the new index", func(req *http.Request) proxyAction {
			if isPut(req, "/index/") {
				return killNow
			}
			return forward
		}},
		{"removing the old index files", func(req *http.Request) proxyAction {
			if isDelete(req, "/index/") {
				return killNow
			}
			return forward
		}},
		{"deleting the third pack", func(req *http.Request) proxyAction {
			if isDelete(req, "/data/") && deletes.Add(1) == 3 {
				return killNow
			}
			return forward
		}},
		{"deleting the mark", func(req *http.Request) proxyAction {
			if isDelete(req, "/gc/") && !strings.Contains(req.URL.Path, "/gc/clock-") {
				return killNow
			}
			return forward
		}},
	}
	for i, step := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := pr.command(ctx, "prune", "--json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		px.setHook(step.hook)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		px.setKill(func() { _ = cmd.Process.Kill() })
		err := cmd.Wait()
		code := exitCode(cmd, err)
		px.setHook(nil)
		px.setKill(nil)
		cancel()
		packs, bytes := repo.packStats(t)
		gc := len(repo.objects(t, chunkstore.GCPrefix))
		t.Logf("kill %d (%s): exit %d, %d packs (%s), %d GC objects", i, step.name, code, packs, mib(bytes), gc)
		if code != -1 {
			// Nothing left for this step to do (an earlier kill left the
			// repository past it): prune must then have finished cleanly.
			if code != 0 {
				t.Fatalf("prune failed on its own at step %q: %s %s", step.name, stdout.String(), stderr.String())
			}
			continue
		}
		if chk := r.run("check", "--read-data"); chk.Code != 0 {
			t.Fatalf("check --read-data after prune was killed while %s: %s", step.name, chk)
		}
		if i == 0 {
			// The killed prune left its session; this machine can tell
			// that its process is gone, and unlock removes it.
			ss := decodeSessions(t, r.ok("sessions", "--json"))
			if len(ss) != 1 || ss[0].Kind != "prune" || ss[0].Command != "prune" || ss[0].State != "gone" {
				t.Fatalf("sessions after prune was killed: %+v; want its prune session, gone", ss)
			}
			wantOutput(t, r.ok("unlock"), "removed prune session "+ss[0].ID)
			if left := decodeSessions(t, r.ok("sessions", "--json")); len(left) != 0 {
				t.Fatalf("sessions after unlock: %+v", left)
			}
		}
	}

	res := decodePrune(t, r.ok("prune", "--json"))
	packs, bytes := repo.packStats(t)
	t.Logf("final prune: %+v; %d packs (%s) left of %d (%s)", res, packs, mib(bytes), onePacks, mib(oneBytes))
	if n := len(repo.objects(t, chunkstore.GCPrefix)); n != 0 {
		t.Errorf("%d GC objects left after a complete prune", n)
	}
	if again := decodePrune(t, r.ok("prune", "--json")); again.Marked != 0 || again.Deleted != 0 {
		t.Errorf("a prune after the final one still finds work: %+v", again)
	}
	// What is left is about one copy of the newest version: packs that
	// hold both needed and unneeded data are kept whole.
	base := initAPI(t, filepath.Join(work, "baseline"), crashPackSize, "")
	base.writer(t).backup(src)
	_, clean := base.packStats(t)
	if bytes > clean*5/4+4<<20 {
		t.Errorf("%s of packs left (%s before prune); a clean backup of the newest version stores %s", mib(bytes), mib(oneBytes), mib(clean))
	}
	r.ok("check", "--read-data")
	target := filepath.Join(work, "restore")
	r.ok("restore", ids[2], "--target", target)
	compareTrees(t, src, restoredRoot(target, src), nil)

	// A backup killed with SIGKILL leaves its session behind: prune marks,
	// names the backup it waits for, and deletes nothing for 30 minutes.
	ds.modify(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := w.command(ctx, "backup", "--no-cache", src)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(repo.objects(t, chunkstore.SessionsPrefix)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if len(repo.objects(t, chunkstore.SessionsPrefix)) == 0 {
		t.Fatal("the killed backup left no session")
	}
	r.ok("forget", ids[2])
	before, _ := repo.packStats(t)
	res = decodePrune(t, r.ok("prune", "--json"))
	after, _ := repo.packStats(t)
	if res.Marked == 0 || res.Deleted != 0 || res.Pending != 1 || len(res.Waiting) != 1 || after != before {
		t.Errorf("prune after a killed backup: %+v, packs %d → %d; want a pending mark, nothing deleted, one backup waited for", res, before, after)
	}
	text := r.ok("prune")
	wantOutput(t, text, "wait for 1 backup", "run 'lifeboat prune' again")
	// Its process is gone from this machine, but a backup session is
	// removed only once stale: one of another PID namespace looks the
	// same and may still commit.
	ss := decodeSessions(t, r.ok("sessions", "--json"))
	if len(ss) != 1 || ss[0].Kind != "backup" || ss[0].State != "gone" {
		t.Fatalf("sessions after a backup was killed: %+v; want its session, gone", ss)
	}
	wantOutput(t, r.ok("unlock"), "left backup session "+ss[0].ID, "no session removed")
	if res := r.run("unlock", ss[0].ID); res.Code != 1 || !strings.Contains(res.Stderr, "may still be running and is not removed") {
		t.Errorf("unlock of the killed backup's session: %s; want exit 1, refused", res)
	}
	var chk struct {
		Marks    int `json:"gc_marks"`
		Marked   int `json:"gc_marked_packs"`
		Sessions int `json:"backup_sessions"`
	}
	out = r.ok("check", "--read-data", "--json")
	if err := json.Unmarshal([]byte(out.Stdout), &chk); err != nil || chk.Marks != 1 || chk.Marked != res.Marked || chk.Sessions != 1 {
		t.Errorf("check --json with a pending mark and a killed backup's session: %+v %v, want 1 mark of %d packs and 1 session", chk, err, res.Marked)
	}
}

type sessionJSON struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Command string `json:"command"`
	State   string `json:"state"`
}

func decodeSessions(t *testing.T, r result) []sessionJSON {
	t.Helper()
	var ss []sessionJSON
	if err := json.Unmarshal([]byte(r.Stdout), &ss); err != nil {
		t.Fatalf("sessions --json: %v: %s", err, r)
	}
	return ss
}

func decodePrune(t *testing.T, r result) pruneJSON {
	t.Helper()
	var p pruneJSON
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("prune --json: %v: %s", err, r)
	}
	return p
}
