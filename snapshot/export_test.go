package snapshot

import (
	"errors"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"golang.org/x/sys/unix"
	"os"
	"testing"
	"time"
)

// DecodeManifestForTest and EncodeManifestForTest expose the manifest
// decoder and encoder to the fuzz tests.
var (
	DecodeManifestForTest = decodeManifest
	EncodeManifestForTest = encodeManifest
)

// BeforeOpen and AfterOpen run fn with a file's path just before a
// backup opens it to read it, and once it has, until the test ends.
func BeforeOpen(t interface{ Cleanup(func()) }, fn func(path string)) {
	beforeOpen = fn
	t.Cleanup(func() { beforeOpen = nil })
}

func AfterOpen(t interface{ Cleanup(func()) }, fn func(path string)) {
	afterOpen = fn
	t.Cleanup(func() { afterOpen = nil })
}

// StatOfForTest is the stat the files cache keeps of the file at path,
// its filesystem's identity included.
func StatOfForTest(t testing.TB, path string) FileStat {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := statOf(fi)
	var ids fsIDs
	if st.FSID, err = ids.ofPath(st.Dev, path); err != nil {
		t.Fatal(err)
	}
	return st
}

// WithFSID makes backups take fn's result for the identity of each
// filesystem they meet, until the test ends.
func WithFSID(t interface{ Cleanup(func()) }, fn func(fd int) (fsid, dev uint64, err error)) {
	was := readFSID
	readFSID = fn
	t.Cleanup(func() { readFSID = was })
}

// ReadFSID is how backups read a filesystem's identity, for a WithFSID
// function to call.
var ReadFSID = readFSID

// WithRacyMargin sets how long before a backup's start a change still
// keeps a file out of the files cache, until the test ends: tests of
// other things back up files they just made.
func WithRacyMargin(t interface{ Cleanup(func()) }, d time.Duration) {
	was := racyMargin
	racyMargin = d
	t.Cleanup(func() { racyMargin = was })
}

// OnWalk runs fn with a directory's path as a backup begins to list it
// (enter) and once it has listed and stat'ed its entries, until the test
// ends.
func OnWalk(t interface{ Cleanup(func()) }, fn func(path string, enter bool)) {
	walkHook = fn
	t.Cleanup(func() { walkHook = nil })
}

// WithoutListxattrat makes backups ask whether an entry has extended
// attributes by path, as on kernels before 6.13, until the test ends.
func WithoutListxattrat(t interface{ Cleanup(func()) }) {
	was := noListxattrat.Load()
	noListxattrat.Store(true)
	t.Cleanup(func() { noListxattrat.Store(was) })
}

// WithoutProcFD makes backups find no /proc/self/fd to reach entries
// through, as where /proc is not mounted.
func WithoutProcFD(t interface{ Cleanup(func()) }) {
	fdPath = func(int, string) string { return "/nonexistent-proc/self/fd/0" }
	t.Cleanup(func() { fdPath = sysinfo.FDPath })
}

// WithMaxOpenDirs sets how many directories backups hold open before a
// directory lets go of its descriptor while a subdirectory is walked,
// until the test ends.
func WithMaxOpenDirs(t interface{ Cleanup(func()) }, n int64) {
	was := maxOpenDirs
	maxOpenDirs = n
	t.Cleanup(func() { maxOpenDirs = was })
}

// HasListxattrat reports whether the kernel has listxattrat (Linux 6.13).
func HasListxattrat() bool {
	_, err := readXAttrsAt(&dirFD{fd: unix.AT_FDCWD}, "/")
	return !errors.Is(err, errNoXattrat)
}
