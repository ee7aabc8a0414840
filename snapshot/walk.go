package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// SkipDir, returned by a WalkFunc for a directory, skips its contents.
var SkipDir = errors.New("skip this directory")

// WalkFunc is called for every node under a tree, in depth-first name
// order, with the node's slash-separated path relative to the snapshot
// root ("home/user/file").
type WalkFunc func(path string, node *Node) error

// Walk loads trees starting at root and calls fn for every node. It needs
// an identity. It reads trees as restore does (LoadTreeAnyCopy): around a
// damaged copy, with a warning, so that ls and dump read what restore
// can.
func Walk(ctx context.Context, repo *chunkstore.Repository, root chunkstore.ID, fn WalkFunc) error {
	return walk(ctx, repo, "", root, fn)
}

func walk(ctx context.Context, repo *chunkstore.Repository, prefix string, id chunkstore.ID, fn WalkFunc) error {
	tree, err := LoadTreeAnyCopy(ctx, repo, id)
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

// ErrNotInSnapshot is returned by Lookup for a path no tree holds.
var ErrNotInSnapshot = errors.New("not in snapshot")

// Lookup returns the node at p, a slash-separated path relative to the
// snapshot root ("home/user/file"; "" or "/" is the root itself, returned
// as a directory node named "/" whose Subtree is root). It loads only the
// trees on the way, around a damaged copy as Walk does.
func Lookup(ctx context.Context, repo *chunkstore.Repository, root chunkstore.ID, p string) (*Node, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	id := root
	node := &Node{Name: "/", Type: TypeDir, Subtree: &id}
	if p == "" {
		return node, nil
	}
	walked := ""
	for _, name := range strings.Split(p, "/") {
		if node.Type != TypeDir || node.Subtree == nil {
			return nil, fmt.Errorf("/%s: /%s is a %s, not a directory: %w", p, walked, node.Type, ErrNotInSnapshot)
		}
		tree, err := LoadTreeAnyCopy(ctx, repo, *node.Subtree)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", p, err)
		}
		// Listings are sorted by name (DecodeTree checks it).
		next, ok := slices.BinarySearchFunc(tree.Nodes, name, func(n Node, name string) int { return strings.Compare(n.Name, name) })
		if !ok {
			return nil, fmt.Errorf("/%s: %w", p, ErrNotInSnapshot)
		}
		node = &tree.Nodes[next]
		walked = path.Join(walked, name)
	}
	return node, nil
}
