// Package atomicfile replaces small files (credentials, state) so that a
// crash or an error leaves either the old content or the new, never a
// mix or an empty file.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes b to path: into a new file beside it with mode, synced,
// then renamed over path, and the directory synced. On an error before
// the rename, path is as it was and the new file is gone.
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
