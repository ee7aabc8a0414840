package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"sync"
	"syscall"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"github.com/lifeboat-backup/lifeboat/restore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// verifyWorkers files are read back at once.
const verifyWorkers = 4

// contentRepo is what verification needs from the repository: the
// plaintext length of each chunk (from the index) and the keyed hash.
type contentRepo interface {
	Index() *chunkstore.Index
	CompareContent(f io.Reader, n int, chunk func(i int) chunkstore.Chunk, buf *[]byte) error
}

type verified struct {
	files, bytes int64
	failures     []Failure
}

// verifyJob is one entry to check; linkOf names an earlier restored
// name of the same inode, which this one must be a hard link to.
type verifyJob struct {
	e      *entry
	linkOf string
	xattrs bool // compare its extended attributes
	asRoot bool // the restore ran as root (and set every attribute)
}

// verifyTree checks that every entry was restored under dir exactly as
// the snapshot records it: type, mode bits, symlink target, the extended
// attributes the restore sets (checkXAttrs) and, for regular files, size
// and the keyed ID of every chunk, recomputed from the bytes on disk.
// Entries in skip, or below a skipped path, already failed to restore
// and are not checked again; entries in metaFailed are those whose
// metadata the restore reported it could not set (a warning), and their
// attributes are not compared. Files are read in parallel, one chunk at
// a time into a buffer each worker reuses; every path is resolved inside
// dir without following symlinks.
func verifyTree(ctx context.Context, repo contentRepo, dir string, entries []*entry, skip, metaFailed map[string]bool, log *slog.Logger) (verified, error) {
	var v verified
	root, err := os.OpenRoot(dir)
	if err != nil {
		return v, fmt.Errorf("open restored tree: %w", err)
	}
	defer root.Close()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	asRoot := os.Geteuid() == 0
	var mu sync.Mutex
	fail := func(p, format string, args ...any) {
		mu.Lock()
		v.failures = append(v.failures, Failure{Reason: ReasonContent, Path: p, Message: fmt.Sprintf(format, args...)})
		mu.Unlock()
	}
	jobs := make(chan verifyJob)
	g, gctx := errgroup.WithContext(ctx)
	for range verifyWorkers {
		g.Go(func() error {
			var buf []byte
			for j := range jobs {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				files, bytes, msg := checkEntry(root, repo, j, &buf)
				mu.Lock()
				v.files += files
				v.bytes += bytes
				mu.Unlock()
				if msg != "" {
					fail(j.e.path, "%s", msg)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		firstName := map[[2]uint64]string{}
		for _, e := range entries {
			if skipped(skip, e.path) {
				continue
			}
			j := verifyJob{e: e, xattrs: !metaFailed[e.path], asRoot: asRoot}
			if n := e.node; n.Type == snapshot.TypeFile && n.Links > 1 {
				key := [2]uint64{n.DeviceID, n.Inode}
				if first, ok := firstName[key]; ok {
					j.linkOf = first
				} else {
					firstName[key] = e.path
				}
			}
			select {
			case jobs <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return v, err
	}
	sort.SliceStable(v.failures, func(i, j int) bool { return v.failures[i].Path < v.failures[j].Path })
	log.Debug("verified restored tree", "files", v.files, "bytes", v.bytes, "problems", len(v.failures))
	return v, nil
}

// skipped reports whether p or one of its ancestors is in skip.
func skipped(skip map[string]bool, p string) bool {
	if len(skip) == 0 {
		return false
	}
	for ; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if skip[p] {
			return true
		}
	}
	return false
}

const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

func typeName(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "an unknown file type"
}

func wantType(t snapshot.NodeType) (fs.FileMode, string) {
	switch t {
	case snapshot.TypeDir:
		return fs.ModeDir, "a directory"
	case snapshot.TypeSymlink:
		return fs.ModeSymlink, "a symlink"
	case snapshot.TypeFIFO:
		return fs.ModeNamedPipe, "a FIFO"
	case snapshot.TypeCharDev:
		return fs.ModeDevice | fs.ModeCharDevice, "a character device"
	case snapshot.TypeDev:
		return fs.ModeDevice, "a block device"
	}
	return 0, "a regular file"
}

// checkEntry verifies one entry and returns the regular files and bytes
// it verified, or a message saying what differs.
func checkEntry(root *os.Root, repo contentRepo, j verifyJob, buf *[]byte) (files, bytes int64, msg string) {
	e, n := j.e, j.e.node
	fi, err := root.Lstat(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		_, want := wantType(n.Type)
		return 0, 0, fmt.Sprintf("missing: the snapshot records %s here, the restored tree has nothing", want)
	}
	if err != nil {
		return 0, 0, fmt.Sprintf("cannot inspect the restored entry: %v", err)
	}
	typ, want := wantType(n.Type)
	if fi.Mode().Type() != typ {
		return 0, 0, fmt.Sprintf("wrong type: the snapshot records %s, the restored tree has %s", want, typeName(fi.Mode()))
	}
	if n.Type != snapshot.TypeSymlink {
		if got := fi.Mode() & modeBits; got&modeBits != modeFromNode(n) {
			return 0, 0, fmt.Sprintf("mode %s, the snapshot records %s", fmtMode(got), fmtMode(modeFromNode(n)))
		}
	}
	if j.xattrs && j.linkOf == "" {
		if msg := checkXAttrs(root, e, j.asRoot); msg != "" {
			return 0, 0, msg
		}
	}
	switch n.Type {
	case snapshot.TypeSymlink:
		target, err := root.Readlink(e.path)
		if err != nil {
			return 0, 0, fmt.Sprintf("cannot read the restored symlink: %v", err)
		}
		if target != n.LinkTarget {
			return 0, 0, fmt.Sprintf("symlink points to %q, the snapshot records %q", target, n.LinkTarget)
		}
	case snapshot.TypeDev, snapshot.TypeCharDev:
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && uint64(st.Rdev) != n.Device {
			return 0, 0, fmt.Sprintf("device number %#x, the snapshot records %#x", st.Rdev, n.Device)
		}
	case snapshot.TypeFile:
		if j.linkOf != "" {
			if other, err := root.Lstat(j.linkOf); err == nil && os.SameFile(fi, other) {
				return 1, 0, ""
			}
			// Not linked (the first name failed, or the link could not
			// be made): check its content on its own.
		}
		size, msg := checkContent(root, repo, e, fi, buf)
		if msg != "" {
			return 0, 0, msg
		}
		return 1, size, ""
	}
	return 0, 0, ""
}

// checkXAttrs compares the extended attributes a restore sets on e
// (restore.RestorableXAttrs: ACLs, file capabilities, SELinux labels,
// user.* attributes) with the restored entry's: each must be there, with
// the snapshot's value. Attributes the snapshot lacks are not looked
// for: the scratch directory's filesystem may add its own (an SELinux
// label, say). The entry is reached by name below its directory's
// descriptor in /proc/self/fd, so a symlink is not followed.
func checkXAttrs(root *os.Root, e *entry, asRoot bool) string {
	want := restore.RestorableXAttrs(e.node, asRoot)
	if len(want) == 0 {
		return ""
	}
	parent, base := path.Split(e.path)
	if parent == "" {
		parent = "."
	}
	d, err := root.Open(parent)
	if err != nil {
		return fmt.Sprintf("cannot open the directory of the restored entry to read its extended attributes: %v", err)
	}
	defer d.Close()
	p := sysinfo.FDPath(int(d.Fd()), base)
	for _, x := range want {
		got, err := snapshot.ReadXAttr(p, x.Name)
		switch {
		case errors.Is(err, unix.ENODATA):
			return fmt.Sprintf("extended attribute %q missing: the snapshot records it (%d bytes)", x.Name, len(x.Value))
		case err != nil:
			return fmt.Sprintf("cannot read extended attribute %q of the restored entry: %v", x.Name, sysinfo.ExplainFDPath(err, "reads attributes"))
		case !bytes.Equal(got, x.Value):
			return fmt.Sprintf("extended attribute %q differs: %d bytes restored, the snapshot records %d bytes that differ", x.Name, len(got), len(x.Value))
		}
	}
	return ""
}

func modeFromNode(n *snapshot.Node) fs.FileMode { return n.Mode & modeBits }

func fmtMode(m fs.FileMode) string {
	s := fmt.Sprintf("%04o", uint32(m.Perm()))
	if m&fs.ModeSetuid != 0 {
		s += "+setuid"
	}
	if m&fs.ModeSetgid != 0 {
		s += "+setgid"
	}
	if m&fs.ModeSticky != 0 {
		s += "+sticky"
	}
	return s
}

// checkContent reads a restored file chunk by chunk and compares each
// chunk's keyed ID with the snapshot's content list.
func checkContent(root *os.Root, repo contentRepo, e *entry, fi fs.FileInfo, buf *[]byte) (int64, string) {
	n := e.node
	lengths := make([]int64, len(n.Content))
	var want int64
	for i, id := range n.Content {
		loc, ok := repo.Index().Lookup(id)
		if !ok {
			return 0, fmt.Sprintf("chunk %d of %d (data blob %s) is in no index of the repository, so its size is unknown", i+1, len(n.Content), id.Short())
		}
		lengths[i] = int64(loc.Blob.RawLength)
		want += lengths[i]
	}
	if fi.Size() != want {
		return 0, fmt.Sprintf("size %d bytes, the snapshot records %d bytes", fi.Size(), want)
	}
	f, err := root.OpenFile(e.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrPermission) && fi.Mode().Perm()&0o400 == 0 {
		// A file restored without read permission (mode 0200, say):
		// lend the owner read access for the check.
		if cerr := root.Chmod(e.path, fi.Mode()&modeBits|0o400); cerr == nil {
			f, err = root.OpenFile(e.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
			_ = root.Chmod(e.path, fi.Mode()&modeBits)
		}
	}
	if err != nil {
		return 0, fmt.Sprintf("cannot open the restored file: %v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Sprintf("cannot inspect the restored file: %v", err)
	}
	if !os.SameFile(st, fi) {
		return 0, "the restored file was replaced while it was being verified"
	}
	err = repo.CompareContent(f, len(n.Content), func(i int) chunkstore.Chunk {
		return chunkstore.Chunk{ID: n.Content[i], Length: lengths[i]}
	}, buf)
	if err != nil {
		return 0, err.Error()
	}
	return want, ""
}
