package restore

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// The POSIX ACLs, as extended attributes.
const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

// xattrs returns the extended attributes of n this restore sets: none
// with Options.NoXAttrs, otherwise RestorableXAttrs.
func (t *targetDir) xattrs(n *snapshot.Node) []snapshot.XAttr {
	if t.noXAttrs {
		return nil
	}
	return RestorableXAttrs(n, t.uid == 0)
}

// RestorableXAttrs returns the extended attributes of n a restore sets:
// all of them as root (asRoot); as another user none of the "security."
// and "trusted." namespaces, which only root may set (as it does not try
// to set owners). A drill's verification expects the same ones back.
func RestorableXAttrs(n *snapshot.Node, asRoot bool) []snapshot.XAttr {
	if asRoot || len(n.XAttrs) == 0 {
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

// staleACLs returns the ACLs an entry of the target may hold that n
// does not: one inherited from a directory's default ACL (a target that
// had one, or one an earlier restore into it set), or the target's own
// entry's. They widen or narrow access beyond what the snapshot says, so
// they are removed — but only where there can be any (t.aclsPossible),
// sparing a fresh restore a system call per entry.
func (t *targetDir) staleACLs(n *snapshot.Node) []string {
	if t.noXAttrs || !t.aclsPossible {
		return nil
	}
	var access, dflt bool
	for _, x := range n.XAttrs {
		access = access || x.Name == aclAccess
		dflt = dflt || x.Name == aclDefault
	}
	// Shared lists: this runs for every entry of a restore into a
	// directory that was not empty.
	switch {
	case n.Type == snapshot.TypeDir && !access && !dflt:
		return bothACLs
	case n.Type == snapshot.TypeDir && !dflt:
		return bothACLs[1:]
	case !access:
		return bothACLs[:1]
	}
	return nil
}

var bothACLs = []string{aclAccess, aclDefault}

// hasDefaultACL reports whether the directory open as fd has a default
// ACL, which what is created in it inherits.
func hasDefaultACL(fd int) bool {
	_, err := unix.Fgetxattr(fd, aclDefault, nil)
	return err == nil
}

// pruneXAttrs reports whether entries the target held are rid of the
// user.* attributes the snapshot's lack (xattrOps.strays): in a target
// that was not empty, unless extended attributes are left alone.
func (t *targetDir) pruneXAttrs() bool { return !t.fresh && !t.noXAttrs }

// xattrOps sets, removes and lists extended attributes of one entry,
// through set, remove and list (by descriptor or by name).
type xattrOps struct {
	set    func(name string, value []byte) error
	remove func(name string) error
	list   func(buf []byte) (int, error)
	// absent reports whether the entry surely lacks the attribute name.
	absent func(name string) bool
}

func fdOps(fd int) xattrOps {
	return xattrOps{
		set:    func(name string, v []byte) error { return unix.Fsetxattr(fd, name, v, 0) },
		remove: func(name string) error { return unix.Fremovexattr(fd, name) },
		list:   func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		absent: func(name string) bool {
			_, err := unix.Fgetxattr(fd, name, nil)
			return errors.Is(err, unix.ENODATA)
		},
	}
}

// procOps reaches entry base of directory dfd by its name below the
// directory's descriptor in /proc/self/fd, never following it if it is a
// symlink and without opening it (a device's open can have effects, a
// FIFO's blocks).
func procOps(dfd int, base string) xattrOps {
	p := sysinfo.FDPath(dfd, base)
	proc := func(err error) error {
		return sysinfo.ExplainFDPath(err, "sets them on symlinks, devices and FIFOs")
	}
	return xattrOps{
		set:    func(name string, v []byte) error { return proc(unix.Lsetxattr(p, name, v, 0)) },
		remove: func(name string) error { return proc(unix.Lremovexattr(p, name)) },
		list:   func(buf []byte) (int, error) { n, err := unix.Llistxattr(p, buf); return n, proc(err) },
		absent: func(name string) bool {
			_, err := unix.Lgetxattr(p, name, nil)
			return errors.Is(err, unix.ENODATA)
		},
	}
}

// strays lists the user.* attributes the entry holds and xs lacks: an
// entry the target held (a file already identical, a directory) may
// carry some the snapshot's does not, which a restore that sets the
// snapshot's metadata removes. Other namespaces are left: "security."
// and "trusted." ones are the system's (an SELinux label), ACLs are
// staleACLs'.
func (o xattrOps) strays(xs []snapshot.XAttr) ([]string, error) {
	names, err := snapshot.ListXAttrs(o.list)
	if err != nil {
		return nil, fmt.Errorf("list extended attributes: %w", err)
	}
	var out []string
	for name := range strings.SplitSeq(string(names), "\x00") {
		if strings.HasPrefix(name, "user.") && !slices.ContainsFunc(xs, func(x snapshot.XAttr) bool { return x.Name == name }) {
			out = append(out, name)
		}
	}
	return out, nil
}

// apply sets xs and removes stale; it reports whether it removed an
// attribute (an ACL: the mode must then be set again).
func (o xattrOps) apply(xs []snapshot.XAttr, stale []string) (removed bool, err error) {
	var errs []error
	for _, name := range stale {
		switch err := o.remove(name); {
		case err == nil:
			removed = true
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
		case o.absent(name):
			// Refused (an immutable file refuses any change) but not
			// there: nothing to report.
		default:
			errs = append(errs, fmt.Errorf("remove %s, which the snapshot does not have: %w", name, err))
		}
	}
	for _, x := range xs {
		if err := o.set(x.Name, x.Value); err != nil {
			errs = append(errs, xattrError(x.Name, err))
		}
	}
	return removed, joinMeta(errs...)
}

func xattrError(name string, err error) error {
	switch {
	case errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("extended attribute %s: the target filesystem does not support it (restore with --no-xattrs to leave them out): %w", name, err)
	case strings.HasPrefix(name, "security."):
		return fmt.Errorf("extended attribute %s: %w (another system's security attributes, an SELinux label say, may not fit this one: restore with --no-xattrs to leave them out)", name, err)
	}
	return fmt.Errorf("extended attribute %s: %w", name, err)
}
