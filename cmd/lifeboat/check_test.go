package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestCheckHintsUnreadablePack: a pack that check could not read because
// this user may not (a pack file made 0000, or owned by another user) is
// not called damaged: 'repair packs' is not suggested for it (it would
// only refuse), and its permissions are. A corrupt pack still gets the
// 'repair packs' hint.
func TestCheckHintsUnreadablePack(t *testing.T) {
	unreadable := "data/7b/7b5d44c4312f3086e34c843790334bb05ac169fa2615a3055930454df64be54e"
	corrupt := "data/d4/d401352427d6ef1a061769c54415d7e9904022adfc442ddb5c546aa7dcd58d8e"
	path := "/srv/repo/" + unreadable
	// As the local store reports a file it may not open.
	denied := chunkstore.Permanent(fmt.Errorf("read %s: %w (check the permissions of the repository directory)", path, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}))
	problems := []chunkstore.Problem{
		{Object: unreadable, Err: fmt.Errorf("read: %w", denied)},
		{Object: "snapshot 5eb3959e /", Err: fmt.Errorf("tree 85cc6a31: read tree blob 85cc6a31 from %s: %w", unreadable, denied)},
		{Object: corrupt, Err: fmt.Errorf("blob 1234: %w", chunkstore.ErrCorrupt)},
	}
	if got := damagedPacks(problems); !slices.Equal(got, []string{corrupt}) {
		t.Errorf("damaged packs %v, want only the corrupt one %s", got, corrupt)
	}
	if got := unreadablePacks(problems); !slices.Equal(got, []string{unreadable}) {
		t.Errorf("unreadable packs %v, want %s", got, unreadable)
	}
}

// TestCheckUnindexedPacksOfLostIndex: with its index file gone (deleted
// by hand, or missed by a copy of the bucket), a snapshot's packs are
// unindexed. check must not call them harmless garbage for the next
// prune: they hold the data it reports missing, and 'repair index'
// brings it back.
func TestCheckUnindexedPacksOfLostIndex(t *testing.T) {
	c, r, _, _ := backedUpSmallTree(t)
	idx, err := filepath.Glob(filepath.Join(r.path, "index", "*"))
	if err != nil || len(idx) == 0 {
		t.Fatalf("index files %v: %v", idx, err)
	}
	for _, f := range idx {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	res := c.run(r.reader("check")...)
	if res.code != 1 {
		t.Fatalf("check: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	line := ""
	for _, l := range strings.Split(res.stdout, "\n") {
		if strings.Contains(l, "unindexed packs") {
			line = l
		}
	}
	if !strings.Contains(line, "repair index") || strings.Contains(line, "harmless") {
		t.Errorf("check's line on the unindexed packs: %q; want it to send to 'repair index', not call them harmless\nstdout:\n%s", line, res.stdout)
	}
	c.ok(r.writer("repair", "index")...)
	c.ok(r.reader("check")...)
}

// TestCheckUnindexedAfterRecipientsChanged: after a change of
// recipients, check does not call the packs of a killed backup harmless
// and reused by the next backup (backups no longer reuse them, and 'key
// remove' refuses while they are there), and says what deals with them.
func TestCheckUnindexedAfterRecipientsChanged(t *testing.T) {
	c, r, src, _ := backedUpSmallTree(t)
	addOtherIdentity(t, c, r)
	r.key = filepath.Join(c.dir, "gen1.key")
	before := map[string]bool{}
	for _, d := range []string{"index", "snapshots"} {
		names, _ := os.ReadDir(filepath.Join(r.path, d))
		for _, n := range names {
			before[d+"/"+n.Name()] = true
		}
	}
	if err := os.WriteFile(filepath.Join(src, "new.bin"), fixture.Random(2, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(r.writer("backup", src)...)
	// What a backup killed before its index file leaves: its packs.
	for _, d := range []string{"index", "snapshots"} {
		names, _ := os.ReadDir(filepath.Join(r.path, d))
		for _, n := range names {
			if !before[d+"/"+n.Name()] {
				if err := os.Remove(filepath.Join(r.path, d, n.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	out := c.ok(r.reader("check")...).stdout
	if !strings.Contains(out, "unindexed packs") || strings.Contains(out, "reused by the next backup") || !strings.Contains(out, "'lifeboat repair index', then 'lifeboat prune --rewrap'") {
		t.Errorf("check after a change of recipients, with a killed backup's packs:\n%s", out)
	}
}
