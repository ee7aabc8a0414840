package snapshot

import (
	"context"
	"errors"
	"path"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// SkipDir, returned by a WalkFunc for a directory, skips its contents.
var SkipDir = errors.New("skip this directory")

// WalkFunc is called for every node under a tree, in depth-first name
// order, with the node's slash-separated path relative to the snapshot
// root ("home/user/file").
type WalkFunc func(path string, node *Node) error

// Walk loads trees starting at root and calls fn for every node. It needs
// an identity.
func Walk(ctx context.Context, repo *chunkstore.Repository, root chunkstore.ID, fn WalkFunc) error {
	return walk(ctx, repo, "", root, fn)
}

func walk(ctx context.Context, repo *chunkstore.Repository, prefix string, id chunkstore.ID, fn WalkFunc) error {
	tree, err := LoadTree(ctx, repo, id)
	if err != nil {
		return err
	}
	for i := range tree.Nodes {
		n := &tree.Nodes[i]
		p := path.Join(prefix, n.Name)
		err := fn(p, n)
		if errors.Is(err, SkipDir) {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == TypeDir && n.Subtree != nil {
			if err := walk(ctx, repo, p, *n.Subtree, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
