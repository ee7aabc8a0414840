package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// FileStat is what decides whether a file changed since the last backup.
type FileStat struct {
	Size    int64
	ModTime int64 // ns
	CTime   int64 // ns
	Inode   uint64
	Dev     uint64
	// FSID is the identity of the filesystem the file is on (statfs's
	// f_fsid, see fsIDs): unlike the device number, it tells apart two
	// filesystems mounted in turn on one device (a reused loop device,
	// a USB stick swapped for another).
	FSID uint64
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
//
// Neither the previous backup's entries nor this one's are held in
// memory, so a backup of millions of files does not need hundreds of
// bytes per file for its cache (docs/benchmarks.md, "Many small files").
// The file is a sequence of blocks, one per directory, and an index of
// them at its end: the backup's walk loads the block of each directory
// it enters and drops it when it leaves (Enter, Leave), and the entries
// this backup records are appended to a spool file next to the cache,
// one block per directory, which Save completes with its index and
// renames over the cache. Each block lists the filesystem identities
// of its files (FileStat.FSID), usually one, and each entry the index of
// its own in that list: a byte a file. Files written by releases before
// this format (LBFC1, LBFC2) have no identities: they are ignored, and
// the first backup after an upgrade reads every file again.
type FilesCache struct {
	// IgnoreInode leaves inode and device numbers out of the comparison,
	// for filesystems that do not keep them from one mount to the next
	// (CIFS with noserverino, FUSE filesystems without use_ino, and
	// network filesystems or snapshots remounted with a new device
	// number): every file would otherwise look changed, and be read
	// again, after a remount.
	IgnoreInode bool

	repoID string
	path   string // where the cache was loaded from ("" for NewFilesCache)

	// The previous backup's entries, read block by block.
	old     *os.File
	oldDirs map[string][]blockSpan
	oldLen  int

	mu      sync.Mutex
	entered map[string]*dirEntries // blocks of the directories the walk is in
	damaged map[string]bool        // directories whose block did not read back

	spoolMu  sync.Mutex
	spool    *os.File
	spoolW   *bufio.Writer
	spoolOff int64
	spoolErr error
	blocks   []blockSpan // of the spool, for its index
	scratch  []byte
	fsids    []uint64 // scratch of RecordDir
	noSpool  bool     // recording is off (NewFilesCacheDiscarding, or after Discard)
}

// blockSpan is where one directory's block is in a cache file.
type blockSpan struct {
	dir     string
	off     int64 // of the payload; its CRC-32C follows it
	len     int64
	entries int
}

type dirEntries map[string]cacheEntry // by file name

// NewFilesCache returns an empty cache for a repository. What a backup
// records in it is spooled to a file in the system's temporary directory
// until Save.
func NewFilesCache(repoID string) *FilesCache {
	return &FilesCache{repoID: repoID, entered: map[string]*dirEntries{}}
}

// NewFilesCacheDiscarding returns an empty cache that records nothing, for
// a backup whose cache is not kept (--no-cache, a stream).
func NewFilesCacheDiscarding(repoID string) *FilesCache {
	c := NewFilesCache(repoID)
	c.noSpool = true
	return c
}

const (
	// The format's version is the magic's digit. LBFC1 (one zstd stream)
	// and LBFC2 (blocks without filesystem identities) were written by
	// earlier releases.
	filesCacheMagicPrefix = "LBFC"
	filesCacheVersion     = 3
	filesCacheMagic       = "LBFC3\n"
	filesCacheEnd         = "LBFCEND\n"
	// A trailer: the index's CRC-32C (4 bytes), its offset (8), the end magic.
	filesCacheTrailer = 4 + 8 + len(filesCacheEnd)
	spoolPattern      = ".filescache-*"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LoadFilesCache reads a cache file. A missing, damaged or foreign file
// yields an empty cache (every file is then read again) and, unless the
// file is simply missing, an error describing why it was discarded. The
// cache's spool is made in path's directory.
func LoadFilesCache(path, repoID string) (*FilesCache, error) {
	c := NewFilesCache(repoID)
	c.path = path
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("files cache %s: %w", path, err)
	}
	hdr := make([]byte, len(filesCacheMagic))
	if _, err := io.ReadFull(f, hdr); err != nil {
		f.Close()
		return c, fmt.Errorf("files cache %s discarded: bad header", path)
	}
	if string(hdr) != filesCacheMagic {
		f.Close()
		return c, fmt.Errorf("files cache %s discarded: %s", path, otherFormat(hdr))
	}
	if err := c.openIndexed(f); err != nil {
		f.Close()
		c.oldDirs, c.oldLen = nil, 0
		return c, fmt.Errorf("files cache %s discarded: %w", path, err)
	}
	c.old = f
	return c, nil
}

// zstdMagic begins an LBFC1 file, which was one zstd stream.
const zstdMagic = "\x28\xb5\x2f\xfd"

// otherFormat says why a cache file whose header is hdr, not this
// format's, cannot be used.
func otherFormat(hdr []byte) string {
	h := string(hdr)
	v, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(h, filesCacheMagicPrefix), "\n"))
	switch {
	case strings.HasPrefix(h, zstdMagic):
		v, err = 1, nil
	case !strings.HasPrefix(h, filesCacheMagicPrefix) || !strings.HasSuffix(h, "\n"):
		return "bad header"
	}
	switch {
	case err != nil || v <= 0:
		return "bad header"
	case v > filesCacheVersion:
		return fmt.Sprintf("format version %d, written by a newer lifeboat (this one reads version %d)", v, filesCacheVersion)
	default:
		// Its entries have no filesystem identity: trusted, they could
		// take a file of another filesystem mounted at the same path
		// for the one recorded.
		return fmt.Sprintf("format version %d, written by an earlier lifeboat, without the filesystem identity of each file", v)
	}
}

// openIndexed reads a cache file's header and index; f is past the magic.
func (c *FilesCache) openIndexed(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	r := bufio.NewReader(io.LimitReader(f, 1<<20))
	repo, err := readString(r)
	if err != nil {
		return errors.New("bad header")
	}
	if repo != c.repoID {
		return fmt.Errorf("written for repository %s", repo)
	}
	dataStart := int64(len(filesCacheMagic)) + int64(uvarintLen(uint64(len(repo)))) + int64(len(repo))
	if size < dataStart+int64(filesCacheTrailer) {
		return errors.New("truncated")
	}
	tr := make([]byte, filesCacheTrailer)
	if _, err := f.ReadAt(tr, size-int64(len(tr))); err != nil {
		return err
	}
	if string(tr[12:]) != filesCacheEnd {
		return errors.New("truncated (no index at its end)")
	}
	idxOff := int64(binary.LittleEndian.Uint64(tr[4:12]))
	idxEnd := size - int64(len(tr))
	if idxOff < dataStart || idxOff > idxEnd {
		return errors.New("index out of place")
	}
	idx := make([]byte, idxEnd-idxOff)
	if _, err := f.ReadAt(idx, idxOff); err != nil {
		return err
	}
	if crc32.Checksum(idx, castagnoli) != binary.LittleEndian.Uint32(tr[:4]) {
		return errors.New("index damaged (checksum)")
	}
	d := decoder{b: idx}
	n := d.uvarint()
	if n > uint64(len(idx)) {
		return errors.New("index damaged")
	}
	c.oldDirs = map[string][]blockSpan{}
	for range n {
		s := blockSpan{dir: d.string()}
		off, l, entries := d.uvarint(), d.uvarint(), d.uvarint()
		if d.err != nil {
			return errors.New("index damaged")
		}
		end := uint64(idxOff) - 4 // a block's payload is followed by its CRC
		if off < uint64(dataStart) || off > end || l > end-off || entries > l {
			return errors.New("index damaged (a block out of place)")
		}
		s.off, s.len, s.entries = int64(off), int64(l), int(entries)
		c.oldDirs[s.dir] = append(c.oldDirs[s.dir], s)
		c.oldLen += s.entries
	}
	if d.err != nil || len(d.b) != 0 {
		return errors.New("index damaged")
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

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// decoder reads a block or the index; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("damaged")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errors.New("damaged")
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) string() string { return string(d.bytes(d.uvarint())) }

// loadDir reads the blocks of dir from the previous backup's file. A
// block that does not read back as written is left out: its files are
// read again.
func (c *FilesCache) loadDir(dir string) *dirEntries {
	spans := c.oldDirs[dir]
	if len(spans) == 0 {
		return nil
	}
	out := dirEntries{}
	for _, s := range spans {
		buf := make([]byte, s.len+4)
		if _, err := c.old.ReadAt(buf, s.off); err != nil {
			c.noteDamaged(dir)
			continue
		}
		payload := buf[:s.len]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(buf[s.len:]) {
			c.noteDamaged(dir)
			continue
		}
		d := decoder{b: payload}
		if d.string() != dir {
			c.noteDamaged(dir)
			continue
		}
		nfs := d.uvarint()
		if nfs > uint64(len(d.b))/8 {
			c.noteDamaged(dir)
			continue
		}
		fsids := d.bytes(nfs * 8)
		n := d.uvarint()
		block := dirEntries{}
		for i := uint64(0); i < n && d.err == nil; i++ {
			name := d.string()
			var e cacheEntry
			e.Size, e.ModTime, e.CTime = int64(d.uvarint()), int64(d.uvarint()), int64(d.uvarint())
			e.Inode, e.Dev = d.uvarint(), d.uvarint()
			if fs := d.uvarint(); fs < nfs {
				e.FSID = binary.LittleEndian.Uint64(fsids[fs*8:])
			} else {
				d.err = errors.New("damaged")
				break
			}
			nc := d.uvarint()
			if nc > uint64(len(d.b)) {
				d.err = errors.New("damaged")
				break
			}
			ids := d.bytes(nc * uint64(len(chunkstore.ID{})))
			if d.err != nil {
				break
			}
			if nc > 0 {
				e.Content = make([]chunkstore.ID, nc)
				for j := range e.Content {
					copy(e.Content[j][:], ids[j*len(chunkstore.ID{}):])
				}
			}
			block[name] = e
		}
		if d.err != nil || len(d.b) != 0 {
			c.noteDamaged(dir)
			continue
		}
		for name, e := range block {
			out[name] = e
		}
	}
	return &out
}

func (c *FilesCache) noteDamaged(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.damaged == nil {
		c.damaged = map[string]bool{}
	}
	c.damaged[dir] = true
}

// Damaged returns, sorted, the directories whose block of the previous
// backup's cache did not read back as written (a flipped byte, a bad
// sector): their files were read again, as new. A backup that saves the
// cache writes their blocks afresh.
func (c *FilesCache) Damaged() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.damaged))
}

// Enter loads the previous backup's entries of directory dir (an
// absolute, clean path) for the lookups of its files, until Leave. The
// backup's walk calls it for each directory it lists.
func (c *FilesCache) Enter(dir string) {
	if c.old == nil {
		return
	}
	d := c.loadDir(dir)
	if d == nil {
		// Nothing recorded, or a damaged block: looked up once, not
		// again for each of the directory's files.
		d = &noEntries
	}
	c.mu.Lock()
	c.entered[dir] = d
	c.mu.Unlock()
}

var noEntries dirEntries // empty (nil map)

// Leave drops what Enter loaded for dir.
func (c *FilesCache) Leave(dir string) {
	if c.old == nil {
		return
	}
	c.mu.Lock()
	delete(c.entered, dir)
	c.mu.Unlock()
}

func splitPath(path string) (dir, name string) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", path
	}
	if i == 0 {
		return "/", path[1:]
	}
	return path[:i], path[i+1:]
}

// entry returns what the previous backup recorded for path.
func (c *FilesCache) entry(path string) (cacheEntry, bool) {
	if c.old == nil {
		return cacheEntry{}, false
	}
	dir, name := splitPath(path)
	c.mu.Lock()
	d := c.entered[dir]
	c.mu.Unlock()
	if d == nil {
		// Not entered (a backup path itself, a test): read its block.
		if d = c.loadDir(dir); d == nil {
			return cacheEntry{}, false
		}
	}
	e, ok := (*d)[name]
	return e, ok
}

// Lookup returns the content recorded for path if its stat data is unchanged.
func (c *FilesCache) Lookup(path string, st FileStat) ([]chunkstore.ID, bool) {
	e, ok := c.entry(path)
	if !ok || !c.same(e.FileStat, st) {
		return nil, false
	}
	return e.Content, true
}

// Has reports whether the previous backup recorded path at all.
func (c *FilesCache) Has(path string) bool {
	_, ok := c.entry(path)
	return ok
}

// same reports whether a file with stat b is the one recorded with stat
// a. A change time of -1 (recorded for a file that may change unseen)
// matches none. The device number and the filesystem identity count
// unless IgnoreInode: a filesystem snapshot mounted anew has a new
// device number, and two snapshots can hold different bytes under the
// same stat when the file was written twice within one timestamp tick
// across the moment of the first snapshot, which only reading shows;
// two filesystems mounted in turn on one device (a reused loop device,
// USB sticks) have one device number but, where statfs derives it from
// their UUIDs (ext4, btrfs), different identities.
func (c *FilesCache) same(a, b FileStat) bool {
	return a.Size == b.Size && a.ModTime == b.ModTime && a.CTime == b.CTime && a.CTime >= 0 &&
		(c.IgnoreInode || a.Inode == b.Inode && a.Dev == b.Dev && a.FSID == b.FSID)
}

// Len returns the number of entries loaded from the previous backup.
func (c *FilesCache) Len() int {
	return c.oldLen
}

// Recorded is one file of a directory for RecordDir.
type Recorded struct {
	Name    string
	Stat    FileStat
	Content []chunkstore.ID
}

// Record notes a file's content for the next backup.
func (c *FilesCache) Record(path string, st FileStat, content []chunkstore.ID) {
	dir, name := splitPath(path)
	c.RecordDir(dir, []Recorded{{Name: name, Stat: st, Content: content}})
}

// RecordDir notes the content of files of directory dir for the next
// backup: one block of the spool. A directory recorded in several
// blocks is merged when read; a name recorded twice keeps either entry.
// A spool that cannot be written makes Save fail (the next backup reads
// every file again); the backup itself goes on.
func (c *FilesCache) RecordDir(dir string, files []Recorded) {
	if len(files) == 0 {
		return
	}
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	if c.noSpool || c.spoolErr != nil {
		return
	}
	if c.spool == nil {
		if c.spoolErr = c.openSpool(); c.spoolErr != nil {
			return
		}
	}
	// The block's filesystem identities, in order of first use: one
	// for a directory's files but those bind-mounted from elsewhere.
	fsids := c.fsids[:0]
	for _, f := range files {
		if !slices.Contains(fsids, f.Stat.FSID) {
			fsids = append(fsids, f.Stat.FSID)
		}
	}
	c.fsids = fsids
	b := c.scratch[:0]
	b = appendString(b, dir)
	b = binary.AppendUvarint(b, uint64(len(fsids)))
	for _, id := range fsids {
		b = binary.LittleEndian.AppendUint64(b, id)
	}
	b = binary.AppendUvarint(b, uint64(len(files)))
	for _, f := range files {
		b = appendString(b, f.Name)
		b = binary.AppendUvarint(b, uint64(f.Stat.Size))
		b = binary.AppendUvarint(b, uint64(f.Stat.ModTime))
		b = binary.AppendUvarint(b, uint64(f.Stat.CTime))
		b = binary.AppendUvarint(b, f.Stat.Inode)
		b = binary.AppendUvarint(b, f.Stat.Dev)
		b = binary.AppendUvarint(b, uint64(slices.Index(fsids, f.Stat.FSID)))
		b = binary.AppendUvarint(b, uint64(len(f.Content)))
		for _, id := range f.Content {
			b = append(b, id[:]...)
		}
	}
	c.blocks = append(c.blocks, blockSpan{dir: dir, off: c.spoolOff, len: int64(len(b)), entries: len(files)})
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	c.scratch = b
	if _, err := c.spoolW.Write(b); err != nil {
		c.spoolErr = fmt.Errorf("write spool %s: %w", c.spool.Name(), err)
		return
	}
	c.spoolOff += int64(len(b))
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// openSpool creates the spool next to the cache (in the temporary
// directory for a cache not loaded from a file), locked so that a
// later backup's sweep (sweepSpools) leaves it alone while this process
// lives, and writes its header.
func (c *FilesCache) openSpool() error {
	dir := os.TempDir()
	if c.path != "" {
		dir = filepath.Dir(c.path)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		sweepSpools(dir)
	}
	f, err := os.CreateTemp(dir, spoolPattern)
	if err != nil {
		return fmt.Errorf("create spool: %w", err)
	}
	// A filesystem without locks (some FUSE and CIFS mounts) leaves
	// the spool unlocked: no sweep can lock it either, so none removes
	// it while this backup runs.
	_ = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	c.spool, c.spoolW = f, bufio.NewWriterSize(f, 1<<16)
	hdr := appendString([]byte(filesCacheMagic), c.repoID)
	if _, err := c.spoolW.Write(hdr); err != nil {
		return fmt.Errorf("write spool %s: %w", f.Name(), err)
	}
	c.spoolOff = int64(len(hdr))
	return nil
}

// spoolSweepAge: a spool younger than this is not swept even if it is not
// locked yet (its backup may be between creating and locking it).
const spoolSweepAge = time.Minute

// sweepSpools removes the spools in dir that backups killed before Save
// or Discard left behind: those no live process holds locked.
func sweepSpools(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, spoolPattern))
	for _, n := range names {
		fi, err := os.Lstat(n)
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < spoolSweepAge {
			continue
		}
		f, err := os.Open(n)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(n)
		}
		f.Close()
	}
}

// Save writes the entries recorded by this backup (files that no longer
// exist drop out) to path: it completes the spool with its index and
// renames it there, atomically. The cache loaded before stays readable
// until Discard. Its errors do not say "files cache": the caller, which
// names the cache file, does.
func (c *FilesCache) Save(path string) error {
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	if c.noSpool {
		return errors.New("this cache records nothing")
	}
	if c.spoolErr != nil {
		return c.spoolErr
	}
	if c.spool == nil {
		if err := c.openSpool(); err != nil {
			return err
		}
	}
	err := c.finishSpool()
	if err == nil {
		err = c.placeSpool(path)
	}
	c.closeSpool()
	return err
}

// finishSpool appends the index and the trailer and syncs the spool.
func (c *FilesCache) finishSpool() error {
	idx := binary.AppendUvarint(nil, uint64(len(c.blocks)))
	for _, s := range c.blocks {
		idx = appendString(idx, s.dir)
		idx = binary.AppendUvarint(idx, uint64(s.off))
		idx = binary.AppendUvarint(idx, uint64(s.len))
		idx = binary.AppendUvarint(idx, uint64(s.entries))
	}
	idxOff := c.spoolOff
	idx = binary.LittleEndian.AppendUint32(idx, crc32.Checksum(idx, castagnoli))
	idx = binary.LittleEndian.AppendUint64(idx, uint64(idxOff))
	idx = append(idx, filesCacheEnd...)
	if _, err := c.spoolW.Write(idx); err != nil {
		return err
	}
	if err := c.spoolW.Flush(); err != nil {
		return err
	}
	return c.spool.Sync()
}

// placeSpool renames the finished spool to path, or copies it there when
// it was made on another filesystem.
func (c *FilesCache) placeSpool(path string) error {
	if filepath.Dir(c.spool.Name()) == filepath.Dir(path) {
		return os.Rename(c.spool.Name(), path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), spoolPattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := c.spool.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return err
	}
	if _, err := io.Copy(tmp, c.spool); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// closeSpool closes and removes the spool (gone already once renamed).
func (c *FilesCache) closeSpool() {
	if c.spool != nil {
		c.spool.Close()
		os.Remove(c.spool.Name())
		c.spool, c.spoolW, c.blocks, c.scratch = nil, nil, nil, nil
	}
}

// Discard removes the spool of entries recorded since the cache was
// loaded, if not saved, and closes the previous backup's file. Call it
// once the backup is over, saved or not; what is recorded after it (a
// failed backup's last directories, finishing) is dropped.
func (c *FilesCache) Discard() {
	c.spoolMu.Lock()
	c.closeSpool()
	c.noSpool = true
	c.spoolMu.Unlock()
	if c.old != nil {
		c.old.Close()
		c.old = nil
	}
}
