package e2e

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// craft seals hand-made trees into a repository, as an attacker holding
// the writer key (or storage write access) could: the CLI never produces
// such trees, so they are built with chunkstore.Writer and saved as
// snapshots with snapshot.Save.
type craft struct {
	t    *testing.T
	ctx  context.Context
	repo *chunkstore.Repository
	w    *chunkstore.Writer
}

func (c *craft) file(name, content string) snapshot.Node {
	id, _, err := c.w.SaveBlob(c.ctx, chunkstore.DataBlob, []byte(content))
	if err != nil {
		c.t.Fatal(err)
	}
	return snapshot.Node{Name: name, Type: snapshot.TypeFile, Mode: 0o644, Size: uint64(len(content)),
		Content: []chunkstore.ID{id}, ModTime: time.Unix(1700000000, 0)}
}

// tree stores nodes as one tree blob, unvalidated and in the given order.
func (c *craft) tree(nodes ...snapshot.Node) chunkstore.ID {
	b, err := (&snapshot.Tree{Nodes: nodes}).Encode()
	if err != nil {
		c.t.Fatal(err)
	}
	id, _, err := c.w.SaveBlob(c.ctx, chunkstore.TreeBlob, b)
	if err != nil {
		c.t.Fatal(err)
	}
	return id
}

func dirNode(name string, sub chunkstore.ID) snapshot.Node {
	return snapshot.Node{Name: name, Type: snapshot.TypeDir, Mode: 0o755, Subtree: &sub, ModTime: time.Unix(1700000000, 0)}
}

func linkNode(name, target string) snapshot.Node {
	return snapshot.Node{Name: name, Type: snapshot.TypeSymlink, Mode: 0o777, LinkTarget: target, ModTime: time.Unix(1700000000, 0)}
}

// TestRestorePathEscape restores crafted malicious trees and asserts that
// nothing is ever written outside the target: not through ".." or "/" in
// names, not through a symlink restored earlier or planted in the target.
func TestRestorePathEscape(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	target := filepath.Join(work, "target")
	outside, err := os.MkdirTemp("", "lifeboat-outside-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(outside) })

	tr := initAPI(t, filepath.Join(work, "repo"), 0, "")
	repo := tr.open(t)
	w, err := repo.NewWriter(ctx, chunkstore.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &craft{t: t, ctx: ctx, repo: repo, w: w}
	roots := map[string]chunkstore.ID{
		// A directory named ".." holding a file: would land next to the target.
		"dotdot": c.tree(dirNode("..", c.tree(c.file("escaped-dotdot.txt", "pwned"))), c.file("ok.txt", "fine")),
		// A file whose name climbs out through slashes.
		"slash": c.tree(c.file("a/../../escaped-slash.txt", "pwned"), c.file("ok.txt", "fine")),
		// A file name that is an absolute path.
		"absolute": c.tree(c.file(filepath.Join(outside, "abs.txt"), "pwned")),
		// A symlink to the outside directory, then (next snapshot) a
		// directory of the same name with a file in it: a restore that
		// followed the link would write outside/x.
		"link":    c.tree(linkNode("evil", outside), linkNode("victim", filepath.Join(outside, "victim.txt"))),
		"through": c.tree(dirNode("evil", c.tree(c.file("x", "pwned"))), c.file("victim", "fine")),
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	snaps := map[string]string{}
	for name, root := range roots {
		id, err := snapshot.Save(ctx, repo, snapshot.Manifest{Time: time.Now(), Host: "attacker", Paths: []string{"/" + name}, Tree: root})
		if err != nil {
			t.Fatal(err)
		}
		snaps[name] = id.String()
	}
	rd := tr.reader(t)

	assertContained := func(t *testing.T) {
		t.Helper()
		ents, err := os.ReadDir(outside)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("restore wrote %s outside its target", filepath.Join(outside, e.Name()))
		}
		ents, _ = os.ReadDir(work)
		for _, e := range ents {
			if e.Name() != "target" && e.Name() != "repo" && e.Name() != "planted" {
				t.Errorf("restore wrote %s next to its target", filepath.Join(work, e.Name()))
			}
		}
	}

	t.Run("dot-dot name", func(t *testing.T) {
		r := rd.run("restore", snaps["dotdot"], "--target", target)
		wantFail(t, r, "..", "unsafe|invalid|refus")
		assertContained(t)
	})
	t.Run("name with slash", func(t *testing.T) {
		r := rd.run("restore", snaps["slash"], "--target", target)
		wantFail(t, r, "a/../../escaped-slash.txt", "unsafe|invalid|refus")
		assertContained(t)
	})
	t.Run("absolute name", func(t *testing.T) {
		r := rd.run("restore", snaps["absolute"], "--target", target)
		wantFail(t, r, "abs.txt", "unsafe|invalid|refus")
		assertContained(t)
	})
	t.Run("symlink then path through it", func(t *testing.T) {
		rd.ok("restore", snaps["link"], "--target", target)
		if l, err := os.Readlink(filepath.Join(target, "evil")); err != nil || l != outside {
			t.Fatalf("the symlink itself should be restored as a link to %s: %q, %v", outside, l, err)
		}
		r := rd.run("restore", snaps["through"], "--target", target)
		assertContained(t)
		if r.Code == 0 {
			// Restored safely: evil is now a real directory inside the target.
			fi, err := os.Lstat(filepath.Join(target, "evil"))
			if err != nil || !fi.IsDir() {
				t.Errorf("target/evil after restoring a directory over a symlink: %v, %v", fi, err)
			}
			if b, err := os.ReadFile(filepath.Join(target, "evil", "x")); err != nil || string(b) != "pwned" {
				t.Errorf("target/evil/x: %q, %v", b, err)
			}
			if fi, err := os.Lstat(filepath.Join(target, "victim")); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("target/victim should be a regular file replacing the link: %v, %v", fi, err)
			}
		} else {
			wantFail(t, r, "evil")
		}
	})
	t.Run("symlinks planted in the target", func(t *testing.T) {
		planted := filepath.Join(work, "planted")
		if err := os.MkdirAll(planted, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Symlink(outside, filepath.Join(planted, "evil"))
		os.Symlink(filepath.Join(outside, "victim.txt"), filepath.Join(planted, "victim"))
		r := rd.run("restore", snaps["through"], "--target", planted)
		assertContained(t)
		if r.Code != 0 {
			wantFail(t, r, "evil|victim")
		}
		// Whatever was restored is inside the target, as real files.
		filepath.WalkDir(planted, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeSymlink != 0 {
				if l, _ := os.Readlink(p); filepath.IsAbs(l) {
					t.Logf("planted link %s -> %s left in place (not followed)", p, l)
				}
			}
			return nil
		})
	})
}
