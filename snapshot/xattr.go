package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// readXAttrs returns the extended attributes of the entry at path, never
// following a final symlink, sorted by name. Most entries have none: that
// costs one llistxattr call and one allocation, the system call's copy
// of the path (TestReadXAttrsNoneAllocates). A filesystem without
// extended attributes gives none. An error names the operation, not the
// path, which the caller's warning carries.
func readXAttrs(path string) ([]XAttr, error) {
	return xattrsOf(func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) },
		func(name string, buf []byte) (int, error) { return unix.Lgetxattr(path, name, buf) })
}

// readXAttrsFD is readXAttrs of an open file: the attributes of that very
// file, whatever its path leads to by now.
func readXAttrsFD(fd int) ([]XAttr, error) {
	return xattrsOf(func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) },
		func(name string, buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) })
}

// xattrsOf is readXAttrs with the calls that list the names and read a
// value given.
func xattrsOf(list func(buf []byte) (int, error), get func(name string, buf []byte) (int, error)) ([]XAttr, error) {
	names, err := ListXAttrs(list)
	if err != nil {
		return nil, fmt.Errorf("list extended attributes: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	var xs []XAttr
	for name := range bytes.SplitSeq(names, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := readXAttr(string(name), get)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("read extended attribute %q: %w", name, err)
		}
		xs = append(xs, XAttr{Name: string(name), Value: v})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs, nil
}

// xattrProbe is the size of the buffer a name list or a value is first
// read into: enough for most (an SELinux label, a short ACL), so an entry
// with attributes usually costs one system call for its names and one
// per value, not two each (size first, then the bytes).
const xattrProbe = 256

// probes holds ListXAttrs's first buffers.
var probes = sync.Pool{New: func() any { return new([xattrProbe]byte) }}

// ListXAttrs returns the NUL-separated names of an entry's extended
// attributes, which list (llistxattr or flistxattr of the entry) writes
// into its buffer, or, given none, sizes; nil when it has none or its
// filesystem has no such thing. A restore uses it on what it restores
// into. Its errors do not say what was being done: the caller names the
// operation and, where it knows it, the entry.
func ListXAttrs(list func(buf []byte) (int, error)) ([]byte, error) {
	// The probe comes from a pool: a buffer handed to a function value
	// escapes, and on the stack it would be a heap allocation per entry.
	probe := probes.Get().(*[xattrProbe]byte)
	defer probes.Put(probe)
	n, err := list(probe[:])
	if err == nil {
		if n == 0 {
			return nil, nil
		}
		return bytes.Clone(probe[:n]), nil
	}
	if !errors.Is(err, unix.ERANGE) {
		return nil, ignoreUnsupported(err)
	}
	for range 8 {
		n, err := list(nil)
		if err != nil || n == 0 {
			return nil, ignoreUnsupported(err)
		}
		buf := make([]byte, n)
		n, err = list(buf)
		if errors.Is(err, unix.ERANGE) {
			continue // one was added since the size was asked
		}
		if err != nil {
			return nil, ignoreUnsupported(err)
		}
		return buf[:n], nil
	}
	return nil, fmt.Errorf("the list grew each of the 8 times its size was asked: %w", unix.ERANGE)
}

// ReadXAttr returns the value of path's extended attribute name, never
// following a final symlink; never nil, so an empty value encodes as ""
// (docs/format.md). A missing attribute is unix.ENODATA. Its errors do
// not say what was being done: the caller names the operation.
func ReadXAttr(path, name string) ([]byte, error) {
	return readXAttr(name, func(name string, buf []byte) (int, error) { return unix.Lgetxattr(path, name, buf) })
}

// readXAttr is ReadXAttr with the call that reads a value given.
func readXAttr(name string, get func(name string, buf []byte) (int, error)) ([]byte, error) {
	var probe [xattrProbe]byte
	n, err := get(name, probe[:])
	if err == nil {
		return append([]byte{}, probe[:n]...), nil
	}
	if !errors.Is(err, unix.ERANGE) {
		return nil, err
	}
	for range 8 {
		n, err := get(name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if n == 0 {
			return buf, nil
		}
		n, err = get(name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // it grew since its size was asked
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, fmt.Errorf("the value grew each of the 8 times its size was asked: %w", unix.ERANGE)
}

// ignoreUnsupported turns "this filesystem has no extended attributes"
// into no error.
func ignoreUnsupported(err error) error {
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}
