package restore

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// DumpFile writes the content of the file node n to w, in order. Every
// blob is authenticated and its keyed ID recomputed before a byte of it is
// written; a blob that fails stops the dump with an error naming the
// file, so what w received is a prefix of the file and the caller must
// say the output is incomplete.
func DumpFile(ctx context.Context, repo *chunkstore.Repository, name string, n *snapshot.Node, w io.Writer) error {
	if n.Type != snapshot.TypeFile {
		return fmt.Errorf("%s is a %s, not a file", shownName(name), n.Type)
	}
	blobs := loadAhead(ctx, repo, func(_ context.Context, want func(chunkstore.ID) bool) error {
		for _, id := range n.Content {
			if !want(id) {
				break
			}
		}
		return nil
	})
	defer blobs.stop()
	return copyContent(blobs, name, n, w)
}

// DumpTar writes the directory node dir and everything below it to w as
// a tar archive (POSIX pax format, so names, times and sizes are kept
// exactly). Entry names start with base ("etc/passwd" for base "etc"; no
// prefix for an empty base). Files, directories, symbolic links, devices
// and FIFOs are written with their mode, owner and times; a file
// hardlinked to one written before becomes a hard link entry. Blobs are
// verified as for DumpFile, and a failure ends the archive short with an
// error naming the file.
//
// The trees are walked as the archive is written, a bounded number of
// entries ahead, so memory does not grow with the snapshot; the content of
// the files ahead is loaded meanwhile (most files are one small chunk).
func DumpTar(ctx context.Context, repo *chunkstore.Repository, base string, dir *snapshot.Node, w io.Writer) error {
	if dir.Type != snapshot.TypeDir || dir.Subtree == nil {
		return fmt.Errorf("%s is a %s, not a directory", shownName(base), dir.Type)
	}
	entries := make(chan tarEntry, aheadBlobs)
	blobs := loadAhead(ctx, repo, func(ctx context.Context, want func(chunkstore.ID) bool) error {
		defer close(entries)
		send := func(e tarEntry) bool {
			select {
			case entries <- e:
			case <-ctx.Done():
				return false
			}
			if e.node.Type == snapshot.TypeFile && e.link == "" {
				for _, id := range e.node.Content {
					if !want(id) {
						return false
					}
				}
			}
			return true
		}
		if base != "" && !send(tarEntry{name: base, node: dir}) {
			return ctx.Err()
		}
		type inode struct{ dev, ino uint64 }
		seen := map[inode]string{} // hardlinked files written so far
		// Walk reads a directory's listing right after passing the
		// directory to fn, so a listing it cannot read is that of the
		// last directory passed (or base's own): the error names it.
		listing := base
		err := snapshot.Walk(ctx, repo, *dir.Subtree, func(p string, n *snapshot.Node) error {
			e := tarEntry{name: path.Join(base, p), node: n}
			if n.Type == snapshot.TypeDir {
				listing = e.name
			}
			if n.Type == snapshot.TypeFile && n.Links > 1 {
				key := inode{n.DeviceID, n.Inode}
				if first, ok := seen[key]; ok {
					e.link = first
				} else {
					seen[key] = e.name
				}
			}
			if !send(e) {
				return ctx.Err()
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("listing of directory %s: %w", shownName("/"+listing), err)
		}
		return err
	})
	defer blobs.stop()
	tw := tar.NewWriter(w)
	for e := range entries {
		h, err := tarHeader(e.name, e.node, e.link)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", shownName(e.name), err)
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyContent(blobs, e.name, e.node, tw); err != nil {
				return err
			}
		}
	}
	if err := blobs.walkErr(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // a cancelled walk that sent nothing more is no end
	}
	return tw.Close()
}

// xattrKeyword escapes an extended attribute's name for a PAX keyword as
// GNU tar does, and undoes on extraction: "=" ends the keyword (a name
// with one, legal on Linux, failed the whole archive), and so "%" is
// escaped too, or a name holding "%3D" would come back with "=".
var xattrKeyword = strings.NewReplacer("%", "%25", "=", "%3D")

// shownName is name as an error shows it: quoted (Go syntax) if it is
// not UTF-8 or holds control characters, as ls shows it, so that a name
// with a newline cannot break the message into lines of its own making.
func shownName(name string) string {
	if !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return strconv.Quote(name)
	}
	return name
}

// tarEntry is one node of a tar dump.
type tarEntry struct {
	name string
	node *snapshot.Node
	link string // the earlier name of a hardlinked file
}

// tarHeader describes one node in the archive.
func tarHeader(name string, n *snapshot.Node, link string) (*tar.Header, error) {
	h := &tar.Header{
		Name: name, Mode: int64(n.UnixPerm()), Uid: int(n.UID), Gid: int(n.GID),
		Uname: n.User, Gname: n.Group, ModTime: n.ModTime, Format: tar.FormatPAX,
	}
	if !n.AccessTime.IsZero() {
		h.AccessTime = n.AccessTime
	}
	if !n.ChangeTime.IsZero() {
		h.ChangeTime = n.ChangeTime
	}
	// Extended attributes as GNU tar and bsdtar write them (extracted
	// with tar --xattrs).
	for _, x := range n.XAttrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+xattrKeyword.Replace(x.Name)] = string(x.Value)
	}
	switch {
	case link != "":
		h.Typeflag, h.Linkname = tar.TypeLink, link
	case n.Type == snapshot.TypeFile:
		h.Typeflag, h.Size = tar.TypeReg, int64(n.Size)
	case n.Type == snapshot.TypeDir:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case n.Type == snapshot.TypeSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, n.LinkTarget
	case n.Type == snapshot.TypeFIFO:
		h.Typeflag = tar.TypeFifo
	case n.Type == snapshot.TypeDev || n.Type == snapshot.TypeCharDev:
		h.Typeflag = tar.TypeBlock
		if n.Type == snapshot.TypeCharDev {
			h.Typeflag = tar.TypeChar
		}
		h.Devmajor, h.Devminor = int64(unix.Major(n.Device)), int64(unix.Minor(n.Device))
	default:
		return nil, fmt.Errorf("%s: unknown node type %q", shownName(name), n.Type)
	}
	return h, nil
}

// copyContent writes the next len(n.Content) blobs, the content of the
// file name, to w, and checks that they hold the file's size.
func copyContent(blobs *aheadLoader, name string, n *snapshot.Node, w io.Writer) error {
	var written int64
	for range n.Content {
		b, err := blobs.next()
		if err == nil {
			var m int
			m, err = w.Write(b)
			written += int64(m)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", shownName(name), err)
		}
	}
	if uint64(written) != n.Size {
		return fmt.Errorf("%s: its chunks hold %d bytes, but the snapshot records %d; run 'lifeboat check'", shownName(name), written, n.Size)
	}
	return nil
}
