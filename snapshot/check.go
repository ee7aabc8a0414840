package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// ErrNotIndexed marks check problems of snapshots that reference data
// the index does not have (lost with a pack, or listed only by a damaged
// index file).
var ErrNotIndexed = errors.New("not in the index")

// Check loads every snapshot and, with an identity, walks every tree and
// checks that each referenced blob is in the index and each tree decrypts
// and parses. Without an identity it checks that manifests decrypt and
// their root trees are indexed. It loads the index after listing the
// snapshots (manifests are written after the index files they depend on),
// so a backup committing while a long check runs is never reported as
// damage. Each tree is visited once however many snapshots share it; a
// snapshot that reaches a damaged tree another one reached first gets a
// problem of its own, naming where that damage was reported, so that
// every damaged snapshot is named (unchanged data makes most snapshots
// share most trees).
func Check(ctx context.Context, repo *chunkstore.Repository) ([]chunkstore.Problem, error) {
	snaps, errs, err := List(ctx, repo)
	if err != nil {
		return nil, err
	}
	// A backup may have committed since the caller loaded the index.
	// Manifests are written after the index files they depend on, so
	// loading the index again now covers every snapshot just listed.
	if err := repo.LoadIndex(ctx); err != nil && !errors.Is(err, chunkstore.ErrNewerFormat) {
		return nil, err // a newer index file is the caller's problem to report
	}
	var probs []chunkstore.Problem
	damaged := Damaged(errs)
	for _, e := range errs {
		var ue *UnreadableError
		if errors.As(e, &ue) {
			if errors.Is(ue.Err, chunkstore.ErrNotFound) {
				// Listed, then gone: forgotten meanwhile (check runs
				// beside forget), not damaged.
				continue
			}
			if damaged[ue.ID] {
				e = fmt.Errorf("%w; put it back from a copy of the bucket (object versioning, a replica), or remove it with 'lifeboat forget %s' (the full ID)", e, ue.ID)
			}
			probs = append(probs, chunkstore.Problem{Object: chunkstore.SnapshotsPrefix + ue.ID.String(), Err: e})
			continue
		}
		probs = append(probs, chunkstore.Problem{Object: "snapshot", Err: e})
	}
	idx := repo.Index()
	seen := map[chunkstore.ID]*chunkstore.Problem{}
	for _, s := range snaps {
		obj := "snapshot " + s.ID.Short()
		loc, ok := idx.Lookup(s.Tree)
		if !ok || loc.Blob.Type != chunkstore.TreeBlob {
			probs = append(probs, chunkstore.Problem{Object: obj, Err: fmt.Errorf("root tree %s is %w", s.Tree.Short(), ErrNotIndexed)})
			continue
		}
		if !repo.CanRead() {
			continue
		}
		p, err := checkTree(ctx, repo, obj, "/", s.Tree, seen)
		if err != nil {
			return nil, err
		}
		probs = append(probs, p...)
	}
	return probs, nil
}

// checkTree checks tree id, at dir of snapshot obj, and the trees below
// it. seen holds the trees checked before: nil for one found intact
// (with all below it), else the first problem found in it.
func checkTree(ctx context.Context, repo *chunkstore.Repository, obj, dir string, id chunkstore.ID, seen map[chunkstore.ID]*chunkstore.Problem) ([]chunkstore.Problem, error) {
	if first, ok := seen[id]; ok {
		if first == nil {
			return nil, nil
		}
		// Not checked again, but this snapshot is damaged too: said
		// once, where it reaches the shared tree. The error wraps the
		// first one's, so it is told apart (lost data, damaged pack)
		// as that one is.
		return []chunkstore.Problem{{Object: obj + " " + dir, Err: fmt.Errorf("tree %s holds the damage reported for %s: %w", id.Short(), first.Object, first.Err)}}, nil
	}
	seen[id] = nil
	probs, err := checkTreeOnce(ctx, repo, obj, dir, id, seen)
	if len(probs) > 0 {
		first := probs[0]
		seen[id] = &first
	}
	return probs, err
}

func checkTreeOnce(ctx context.Context, repo *chunkstore.Repository, obj, dir string, id chunkstore.ID, seen map[chunkstore.ID]*chunkstore.Problem) ([]chunkstore.Problem, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tree, err := LoadTree(ctx, repo, id)
	if err != nil {
		return []chunkstore.Problem{{Object: obj + " " + dir, Err: fmt.Errorf("tree %s: %w", id.Short(), err)}}, nil
	}
	idx := repo.Index()
	var probs []chunkstore.Problem
	for i := range tree.Nodes {
		n := &tree.Nodes[i]
		p := path.Join(dir, n.Name)
		for _, c := range n.Content {
			if loc, ok := idx.Lookup(c); !ok || loc.Blob.Type != chunkstore.DataBlob {
				probs = append(probs, chunkstore.Problem{Object: obj + " " + p, Err: fmt.Errorf("data blob %s is %w", c.Short(), ErrNotIndexed)})
				break
			}
		}
		if n.Type == TypeDir && n.Subtree != nil {
			if loc, ok := idx.Lookup(*n.Subtree); !ok || loc.Blob.Type != chunkstore.TreeBlob {
				probs = append(probs, chunkstore.Problem{Object: obj + " " + p, Err: fmt.Errorf("tree %s is %w", n.Subtree.Short(), ErrNotIndexed)})
				continue
			}
			sub, err := checkTree(ctx, repo, obj, p, *n.Subtree, seen)
			if err != nil {
				return nil, err
			}
			probs = append(probs, sub...)
		}
	}
	return probs, nil
}
