package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// FileStat is what decides whether a file changed since the last backup.
type FileStat struct {
	Size    int64
	ModTime int64 // ns
	CTime   int64 // ns
	Inode   uint64
	Dev     uint64
}

type cacheEntry struct {
	FileStat
	Content []chunkstore.ID
}

// FilesCache maps absolute paths to the stat data and chunk IDs recorded
// by the previous backup. Writers cannot read earlier trees (they are
// encrypted to the identities), so incremental backups rely on this local
// file instead. It is bound to one repository: a cache written for
// another repository is ignored.
type FilesCache struct {
	// IgnoreInode leaves inode and device numbers out of the comparison,
	// for filesystems that do not keep them from one mount to the next
	// (CIFS with noserverino, FUSE filesystems without use_ino, and
	// network filesystems or snapshots remounted with a new device
	// number): every file would otherwise look changed, and be read
	// again, after a remount.
	IgnoreInode bool

	repoID  string
	old     map[string]cacheEntry
	mu      sync.Mutex
	updated map[string]cacheEntry
}

// NewFilesCache returns an empty cache for a repository.
func NewFilesCache(repoID string) *FilesCache {
	return &FilesCache{repoID: repoID, old: map[string]cacheEntry{}, updated: map[string]cacheEntry{}}
}

const filesCacheMagic = "LBFC1\n"

// LoadFilesCache reads a cache file. A missing, damaged or foreign file
// yields an empty cache (every file is then read again) and, unless the
// file is simply missing, an error describing why it was discarded.
func LoadFilesCache(path, repoID string) (*FilesCache, error) {
	c := NewFilesCache(repoID)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("files cache %s: %w", path, err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return c, err
	}
	defer dec.Close()
	if err := c.decode(bufio.NewReaderSize(dec, 1<<16)); err != nil {
		c.old = map[string]cacheEntry{}
		return c, fmt.Errorf("files cache %s discarded: %w", path, err)
	}
	return c, nil
}

func (c *FilesCache) decode(r *bufio.Reader) error {
	hdr := make([]byte, len(filesCacheMagic))
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr) != filesCacheMagic {
		return errors.New("bad header")
	}
	repo, err := readString(r)
	if err != nil {
		return err
	}
	if repo != c.repoID {
		return fmt.Errorf("written for repository %s", repo)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	for i := uint64(0); i < n; i++ {
		p, err := readString(r)
		if err != nil {
			return err
		}
		var e cacheEntry
		var nums [5]uint64
		for j := range nums {
			if nums[j], err = binary.ReadUvarint(r); err != nil {
				return err
			}
		}
		e.Size, e.ModTime, e.CTime, e.Inode, e.Dev = int64(nums[0]), int64(nums[1]), int64(nums[2]), nums[3], nums[4]
		nc, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		if nc > 1<<24 {
			return errors.New("entry too large")
		}
		// Grow as IDs arrive: a damaged count must not allocate up front.
		e.Content = make([]chunkstore.ID, 0, min(nc, 1024))
		for j := uint64(0); j < nc; j++ {
			var id chunkstore.ID
			if _, err := io.ReadFull(r, id[:]); err != nil {
				return err
			}
			e.Content = append(e.Content, id)
		}
		c.old[p] = e
	}
	return nil
}

func readString(r *bufio.Reader) (string, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return "", err
	}
	if n > 1<<20 {
		return "", errors.New("string too long")
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return string(b), err
}

// Lookup returns the content recorded for path if its stat data is unchanged.
func (c *FilesCache) Lookup(path string, st FileStat) ([]chunkstore.ID, bool) {
	e, ok := c.old[path]
	if !ok || !c.same(e.FileStat, st) {
		return nil, false
	}
	return e.Content, true
}

// same reports whether a file with stat b is the one recorded with stat
// a. A change time of -1 (recorded for a file that may change unseen)
// matches none. The device number counts unless IgnoreInode: a
// filesystem snapshot mounted anew has a new one, and two snapshots can
// hold different bytes under the same stat when the file was written
// twice within one timestamp tick across the moment of the first
// snapshot, which only reading shows.
func (c *FilesCache) same(a, b FileStat) bool {
	return a.Size == b.Size && a.ModTime == b.ModTime && a.CTime == b.CTime && a.CTime >= 0 &&
		(c.IgnoreInode || a.Inode == b.Inode && a.Dev == b.Dev)
}

// Len returns the number of entries loaded from the previous backup.
func (c *FilesCache) Len() int { return len(c.old) }

// Record notes a file's content for the next backup.
func (c *FilesCache) Record(path string, st FileStat, content []chunkstore.ID) {
	c.mu.Lock()
	c.updated[path] = cacheEntry{FileStat: st, Content: content}
	c.mu.Unlock()
}

// Save writes the entries recorded by this backup (files that no longer
// exist drop out) atomically to path.
func (c *FilesCache) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".filescache-*")
	if err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	enc, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(enc, 1<<16)
	var num [binary.MaxVarintLen64]byte
	putU := func(v uint64) { _, _ = w.Write(num[:binary.PutUvarint(num[:], v)]) }
	putS := func(s string) { putU(uint64(len(s))); _, _ = w.WriteString(s) }
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = w.WriteString(filesCacheMagic)
	putS(c.repoID)
	putU(uint64(len(c.updated)))
	for p, e := range c.updated {
		putS(p)
		putU(uint64(e.Size))
		putU(uint64(e.ModTime))
		putU(uint64(e.CTime))
		putU(e.Inode)
		putU(e.Dev)
		putU(uint64(len(e.Content)))
		for _, id := range e.Content {
			_, _ = w.Write(id[:])
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save files cache: %w", err)
	}
	return nil
}
