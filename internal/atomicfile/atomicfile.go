// Package atomicfile replaces small files (credentials, state) so that a
// crash or an error leaves either the old content or the new, never a
// mix or an empty file.
package atomicfile

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write writes b to path: into a new file beside it with mode, synced,
// then renamed over path, and the directory synced. On an error before
// the rename, path is as it was and the new file is gone. The new file
// keeps the owner and group of the one it replaces where this process
// may give them (root's): root changing the passphrase of a service
// user's identity file otherwise left it root's, unreadable to the
// service.
func Write(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // gone once renamed
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	var old unix.Stat_t
	if unix.Stat(path, &old) == nil && (int(old.Uid) != os.Geteuid() || int(old.Gid) != os.Getegid()) {
		// Refused (EPERM) to anyone but root: the file is then this
		// process's, as any file it writes.
		_ = tmp.Chown(int(old.Uid), int(old.Gid))
	}
	if _, err := tmp.Write(b); err != nil {
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the rename is done; a failed sync leaves it to the kernel
		d.Close()
	}
	return nil
}
