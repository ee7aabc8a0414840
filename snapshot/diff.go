package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// ChangeKind says how an entry differs between two snapshots.
type ChangeKind string

// The kinds of change, as `lifeboat diff` prints them.
const (
	Added    ChangeKind = "+" // only in the second snapshot
	Removed  ChangeKind = "-" // only in the first
	Modified ChangeKind = "M" // content differs: a file's, a symlink's target, a device's number
	Metadata ChangeKind = "U" // same content (or a directory), other mode, owner, mtime, link count or extended attributes
	TypeDiff ChangeKind = "T" // another kind of entry under the same name
)

// Change is one entry that differs. Old is nil for Added, New for
// Removed.
type Change struct {
	Kind ChangeKind
	Path string // slash-separated, relative to the compared trees
	Old  *Node
	New  *Node
}

// DiffStats counts what a diff found. Bytes are file sizes: those of
// added and removed files, and the old and new sizes of modified ones
// (Modified also counts symlinks and devices, which have no size).
type DiffStats struct {
	Added, Removed, Modified, Metadata, TypeChanged int64
	BytesAdded, BytesRemoved                        uint64
}

// DiffOptions tunes Diff.
type DiffOptions struct {
	// Metadata also reports entries whose content is the same but whose
	// mode, owner or modification time differ (Metadata changes). Off,
	// a changed file's directory, whose time moved, is not reported.
	Metadata bool
}

// Diff compares the entries a and b found at the same path at (as
// Lookup returns them; "" for two snapshots' roots, and nil for a side
// that has nothing there) and calls fn for every entry that differs, in
// depth-first name order, the entries below an added or removed
// directory each reported too. Subtrees with the same ID are identical
// and not loaded, so a diff of two snapshots of the same machine reads
// little more than the trees on the paths that changed. It needs the
// identity.
func Diff(ctx context.Context, repo *chunkstore.Repository, at string, a, b *Node, opts DiffOptions, fn func(Change) error) (DiffStats, error) {
	d := &differ{ctx: ctx, repo: repo, opts: opts, fn: fn}
	at = strings.Trim(path.Clean("/"+at), "/")
	prefix := path.Dir(at)
	if prefix == "." {
		prefix = ""
	}
	var err error
	switch {
	case a == nil && b == nil:
	case a == nil:
		err = d.one(Added, prefix, b)
	case b == nil:
		err = d.one(Removed, prefix, a)
	case at == "": // two roots: their listings, not the roots themselves
		err = d.trees("", a.Subtree, b.Subtree)
	default:
		err = d.pair(prefix, a, b)
	}
	return d.stats, err
}

type differ struct {
	ctx   context.Context
	repo  *chunkstore.Repository
	opts  DiffOptions
	fn    func(Change) error
	stats DiffStats
}

// trees compares two directory listings (either may be nil: a side that
// has no directory there).
func (d *differ) trees(prefix string, a, b *chunkstore.ID) error {
	if a != nil && b != nil && *a == *b {
		return nil
	}
	if err := d.ctx.Err(); err != nil {
		return err
	}
	var an, bn []Node
	for _, side := range []struct {
		id  *chunkstore.ID
		out *[]Node
	}{{a, &an}, {b, &bn}} {
		if side.id == nil {
			continue
		}
		t, err := LoadTreeAnyCopy(d.ctx, d.repo, *side.id) // around a damaged copy, as restore
		if err != nil {
			return fmt.Errorf("listing of directory /%s: %w", prefix, err)
		}
		*side.out = t.Nodes
	}
	// Both listings are sorted by name (DecodeTree checks it): merge.
	i, j := 0, 0
	for i < len(an) || j < len(bn) {
		switch {
		case j == len(bn) || (i < len(an) && an[i].Name < bn[j].Name):
			if err := d.one(Removed, prefix, &an[i]); err != nil {
				return err
			}
			i++
		case i == len(an) || bn[j].Name < an[i].Name:
			if err := d.one(Added, prefix, &bn[j]); err != nil {
				return err
			}
			j++
		default:
			if err := d.pair(prefix, &an[i], &bn[j]); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

// one reports a node present on one side only, and everything below it.
func (d *differ) one(kind ChangeKind, prefix string, n *Node) error {
	p := path.Join(prefix, n.Name)
	c := Change{Kind: kind, Path: p}
	if kind == Added {
		c.New = n
		d.stats.Added++
		d.stats.BytesAdded += fileSize(n)
	} else {
		c.Old = n
		d.stats.Removed++
		d.stats.BytesRemoved += fileSize(n)
	}
	if err := d.fn(c); err != nil {
		return err
	}
	if n.Type != TypeDir || n.Subtree == nil {
		return nil
	}
	if kind == Added {
		return d.trees(p, nil, n.Subtree)
	}
	return d.trees(p, n.Subtree, nil)
}

// pair compares the two nodes of one name.
func (d *differ) pair(prefix string, a, b *Node) error {
	p := path.Join(prefix, a.Name)
	switch {
	case a.Type != b.Type:
		d.stats.TypeChanged++
		d.stats.BytesRemoved += fileSize(a)
		d.stats.BytesAdded += fileSize(b)
		if err := d.fn(Change{Kind: TypeDiff, Path: p, Old: a, New: b}); err != nil {
			return err
		}
		// What was below the old directory is gone, what is below the
		// new one is new.
		var sa, sb *chunkstore.ID
		if a.Type == TypeDir {
			sa = a.Subtree
		}
		if b.Type == TypeDir {
			sb = b.Subtree
		}
		if sa != nil || sb != nil {
			return d.trees(p, sa, sb)
		}
		return nil
	case !sameContent(a, b):
		d.stats.Modified++
		d.stats.BytesRemoved += fileSize(a)
		d.stats.BytesAdded += fileSize(b)
		if err := d.fn(Change{Kind: Modified, Path: p, Old: a, New: b}); err != nil {
			return err
		}
	case d.opts.Metadata && !sameMeta(a, b):
		d.stats.Metadata++
		if err := d.fn(Change{Kind: Metadata, Path: p, Old: a, New: b}); err != nil {
			return err
		}
	}
	if a.Type == TypeDir && a.Subtree != nil && b.Subtree != nil {
		return d.trees(p, a.Subtree, b.Subtree)
	}
	return nil
}

// sameContent reports whether two nodes of the same type hold the same
// thing: a file's bytes, a symlink's target, a device's number.
// Directories are compared entry by entry instead.
func sameContent(a, b *Node) bool {
	switch a.Type {
	case TypeFile:
		return a.Size == b.Size && slices.Equal(a.Content, b.Content)
	case TypeSymlink:
		return a.LinkTarget == b.LinkTarget
	case TypeDev, TypeCharDev:
		return a.Device == b.Device
	}
	return true
}

// sameMeta reports whether two nodes of the same type and content have
// the same metadata as a restore would set it: mode, owner, modification
// time, hard link count (restore links the names of one inode), extended
// attributes. Access and
// change times, and inode numbers, are not compared: they change without
// anything a restore would bring back.
func sameMeta(a, b *Node) bool {
	return a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID && a.User == b.User && a.Group == b.Group &&
		a.ModTime.Equal(b.ModTime) && a.Links == b.Links &&
		slices.EqualFunc(a.XAttrs, b.XAttrs, func(x, y XAttr) bool { return x.Name == y.Name && bytes.Equal(x.Value, y.Value) })
}

func fileSize(n *Node) uint64 {
	if n.Type != TypeFile {
		return 0
	}
	return n.Size
}
