package restore

import (
	"fmt"
	"path/filepath"

	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// mknod creates a FIFO or device node inside the target. It opens the
// parent directory through the root (so no symlink can redirect it) and
// uses mknodat relative to that directory.
func (r *restorer) mknod(e *entry) error {
	dir, err := r.root.Open(filepath.Dir(e.path))
	if err != nil {
		return err
	}
	defer dir.Close()
	mode := uint32(e.node.Mode.Perm())
	switch e.node.Type {
	case snapshot.TypeFIFO:
		mode |= unix.S_IFIFO
	case snapshot.TypeDev:
		mode |= unix.S_IFBLK
	case snapshot.TypeCharDev:
		mode |= unix.S_IFCHR
	}
	if err := unix.Mknodat(int(dir.Fd()), filepath.Base(e.path), mode, int(e.node.Device)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	r.setMeta(e.path, e.node)
	return nil
}
