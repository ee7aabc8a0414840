package snapshot

import (
	"context"
	"fmt"
	"path"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Found is an entry a Finder matched: its node and its path from the
// snapshot root ("etc/nginx/nginx.conf").
type Found struct {
	Path string
	Node *Node
}

// Finder searches snapshots for entries whose path matches. Snapshots of
// the same machine share most of their trees: a subtree (at a given path)
// found to hold no match is remembered by its ID and not read again, so
// searching a hundred daily snapshots costs little more than searching
// the few trees that changed between them.
type Finder struct {
	repo  *chunkstore.Repository
	match func(p string, n *Node) bool
	empty map[string]bool // path + tree ID → no match below
	read  int             // trees loaded (TreesRead)
}

// TreesRead is how many trees the Finder has loaded so far.
func (f *Finder) TreesRead() int { return f.read }

// NewFinder returns a Finder for entries for which match (called with the
// absolute path, "/etc/nginx", and the node) is true.
func NewFinder(repo *chunkstore.Repository, match func(p string, n *Node) bool) *Finder {
	return &Finder{repo: repo, match: match, empty: map[string]bool{}}
}

// Find calls fn for each matching entry under the tree root, in
// depth-first name order. It needs the identity.
func (f *Finder) Find(ctx context.Context, root chunkstore.ID, fn func(Found) error) error {
	_, err := f.dir(ctx, "", root, fn)
	return err
}

// dir searches one directory and reports whether anything below matched.
func (f *Finder) dir(ctx context.Context, prefix string, id chunkstore.ID, fn func(Found) error) (bool, error) {
	key := prefix + "\x00" + string(id[:])
	if f.empty[key] {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	tree, err := LoadTreeAnyCopy(ctx, f.repo, id) // around a damaged copy, as restore
	if err != nil {
		return false, fmt.Errorf("listing of directory /%s: %w", prefix, err)
	}
	f.read++
	found := false
	for i := range tree.Nodes {
		n := &tree.Nodes[i]
		p := path.Join(prefix, n.Name)
		if f.match("/"+p, n) {
			found = true
			if err := fn(Found{Path: p, Node: n}); err != nil {
				return found, err
			}
		}
		if n.Type == TypeDir && n.Subtree != nil {
			below, err := f.dir(ctx, p, *n.Subtree, fn)
			if err != nil {
				return found, err
			}
			found = found || below
		}
	}
	if !found {
		f.empty[key] = true
	}
	return found, nil
}
