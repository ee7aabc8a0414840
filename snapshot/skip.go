package snapshot

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// CacheDirTag is the marker of BackupOptions.ExcludeIfPresent that
// --exclude-caches stands for: a file CACHEDIR.TAG that begins with the
// signature of the Cache Directory Tagging Specification, which cache
// directories of many programs carry (Go's build cache, cargo's target/,
// Chromium's, ccache's).
const CacheDirTag = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55"

// markers are the marker files of BackupOptions.ExcludeIfPresent: the
// headers each name requires (one empty header: any such entry).
type markers map[string][][]byte

// parseMarkers reads ExcludeIfPresent's "NAME" and "NAME:HEADER".
func parseMarkers(specs []string) (markers, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	m := markers{}
	for _, spec := range specs {
		name, header, _ := strings.Cut(spec, ":")
		if !ValidName(name) {
			return nil, fmt.Errorf("exclude-if-present %q: give a file name, without '/' (not empty, '.' or '..'), optionally followed by ':' and the bytes the file must begin with", spec)
		}
		m[name] = append(m[name], []byte(header))
	}
	return m, nil
}

// marked returns the entries of ents (those of directory path, open as
// dir) that are markers, if any is: the directory's content is then left
// out but for them. It returns nil if none is.
func (a *archiver) marked(dir *dirFD, path string, ents []os.DirEntry) []os.DirEntry {
	var kept []os.DirEntry
	for _, e := range ents {
		headers, ok := a.markers[e.Name()]
		if !ok {
			continue
		}
		for _, h := range headers {
			if len(h) == 0 || a.beginsWith(dir, path, e, h) {
				kept = append(kept, e)
				break
			}
		}
	}
	if kept != nil {
		a.log.Info("directory content left out: it holds a marker (exclude-if-present)", "path", path, "marker", kept[0].Name())
	}
	return kept
}

// beginsWith reports whether the regular file e of dir begins with
// header. A file that cannot be read is no marker: its directory is
// backed up, and the file's own read reports the error. As much is read
// as the header is long, whatever its length: the header is the user's
// own (a limit made a longer one match no file, silently).
func (a *archiver) beginsWith(dir *dirFD, path string, e os.DirEntry, header []byte) bool {
	if !e.Type().IsRegular() {
		return false
	}
	f, err := openFileAt(dir, e.Name(), path+"/"+e.Name(), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		a.log.Debug("marker not read", "path", path, "name", e.Name(), "err", err)
		return false
	}
	defer f.Close()
	buf := make([]byte, len(header))
	if _, err := io.ReadFull(f, buf); err != nil {
		return false
	}
	return bytes.Equal(buf, header)
}

// otherFileSystem reports whether a directory below a backup path, with
// stat st, is on another filesystem than every backup path while
// BackupOptions.OneFileSystem is set: it is saved, but not entered.
func (a *archiver) otherFileSystem(st FileStat) bool {
	return a.devs != nil && !a.devs[st.Dev]
}

// backupDevices returns the device numbers of the backup paths, for
// OneFileSystem. A path that cannot be stat'ed is left out here; the
// walk reports it.
func backupDevices(paths []string) map[uint64]bool {
	devs := map[uint64]bool{}
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil {
			devs[uint64(st.Dev)] = true
		}
	}
	return devs
}
