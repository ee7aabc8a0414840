package snapshot_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// TestDryRun: a dry run counts what a backup would read (new files, and
// files changed since the files cache's backup) and leave unread, with
// the excludes applied, and writes nothing to the repository.
func TestDryRun(t *testing.T) {
	snapshot.WithRacyMargin(t, 0)
	ctx := context.Background()
	repos := storetest.InitRepos(t, mem.New())
	src := t.TempDir()
	fixture.Create(t, src, fixture.Tree{
		"same":       {Content: fixture.Random(1, 3000)},
		"edit":       {Content: []byte("v1\n")},
		"d/skip.tmp": {Content: []byte("excluded\n")},
	})
	fc := snapshot.NewFilesCache(repos.Writer.Config().ID)
	backupOf(t, repos, fc, snapshot.BackupOptions{Paths: []string{src}, Excludes: []string{"*.tmp"}})
	fixture.Create(t, src, fixture.Tree{"edit": {Content: []byte("v2, longer\n")}, "d/added": {Content: fixture.Random(2, 5000)}})

	objects := func() []string {
		var names []string
		if err := repos.Store.List(ctx, "", func(oi chunkstore.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		return names
	}
	before := objects()
	cacheFile := filepath.Join(t.TempDir(), "cache")
	if err := fc.Save(cacheFile); err != nil {
		t.Fatal(err)
	}
	cache := func() *snapshot.FilesCache {
		c, err := snapshot.LoadFilesCache(cacheFile, repos.Writer.Config().ID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	res, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Host: "h", Paths: []string{src}, Excludes: []string{"*.tmp"},
		FilesCache: cache(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Manifest.Summary
	if res.ID != (chunkstore.ID{}) || s.FilesNew != 1 || s.FilesChanged != 1 || s.FilesUnmodified != 1 ||
		s.BytesRead != 5000+uint64(len("v2, longer\n")) || s.BytesProcessed != 3000+5000+uint64(len("v2, longer\n")) || len(res.Warnings) != 0 {
		t.Errorf("dry run: ID %s, %+v, warnings %v; want 1 new, 1 changed, 1 unmodified", res.ID.Short(), s, res.Warnings)
	}
	if s.Dirs != uint64(2+strings.Count(src, "/")) { // src, d, and those above
		t.Errorf("dry run counted %d directories", s.Dirs)
	}
	// With ReadAll the unchanged file is read too, and counted as the
	// reader counts it: unmodified.
	res, err = snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Host: "h", Paths: []string{src}, Excludes: []string{"*.tmp"},
		FilesCache: cache(), DryRun: true, ReadAll: true})
	if s := res.Manifest.Summary; err != nil || s.FilesNew != 1 || s.FilesChanged != 1 || s.FilesUnmodified != 1 || s.BytesRead != s.BytesProcessed {
		t.Errorf("dry run with ReadAll: %v, %+v; want the unchanged file read and counted unmodified", err, s)
	}
	if after := objects(); !slices.Equal(after, before) {
		t.Errorf("the dry run wrote to the repository: %d objects before, %d after", len(before), len(after))
	}

	if _, err := snapshot.Backup(ctx, repos.Writer, snapshot.BackupOptions{Host: "h", Stream: &snapshot.Stream{Name: "x", Reader: strings.NewReader("x")}, DryRun: true}); err == nil {
		t.Error("a dry run of a stream was not refused")
	}
}
