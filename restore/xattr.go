package restore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// xattrs returns the extended attributes of n this restore sets: none
// with Options.NoXAttrs; as a user other than root, none of the
// "security." and "trusted." namespaces, which only root may set (as it
// does not try to set owners).
func (t *targetDir) xattrs(n *snapshot.Node) []snapshot.XAttr {
	if t.noXAttrs || len(n.XAttrs) == 0 {
		return nil
	}
	if t.uid == 0 {
		return n.XAttrs
	}
	var out []snapshot.XAttr
	for _, x := range n.XAttrs {
		if !strings.HasPrefix(x.Name, "security.") && !strings.HasPrefix(x.Name, "trusted.") {
			out = append(out, x)
		}
	}
	return out
}

// setXAttrsFD sets xs on the entry open as fd.
func setXAttrsFD(fd int, xs []snapshot.XAttr) error {
	var errs []error
	for _, x := range xs {
		if err := unix.Fsetxattr(fd, x.Name, x.Value, 0); err != nil {
			errs = append(errs, xattrError(x.Name, err))
		}
	}
	return errors.Join(errs...)
}

// setXAttrsAt sets xs on entry base of directory dfd, never following
// it if it is a symlink, without opening it (a device's open can have
// effects, a FIFO's blocks): by its name below the directory's
// descriptor in /proc/self/fd.
func setXAttrsAt(dfd int, base string, xs []snapshot.XAttr) error {
	if len(xs) == 0 {
		return nil
	}
	p := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + base
	var errs []error
	for _, x := range xs {
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			errs = append(errs, xattrError(x.Name, err))
		}
	}
	return errors.Join(errs...)
}

func xattrError(name string, err error) error {
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("extended attribute %s: the target filesystem does not support it (restore with --no-xattrs to leave them out): %w", name, err)
	}
	return fmt.Errorf("extended attribute %s: %w", name, err)
}
