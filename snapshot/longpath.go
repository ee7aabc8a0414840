package snapshot

import "github.com/lifeboat-backup/lifeboat/internal/sysinfo"

// pathMax is PATH_MAX: the kernel refuses a path of this many bytes or
// more (its terminating NUL counts) with ENAMETOOLONG. Each name is at
// most 255 bytes, but deep nesting makes longer paths, which the walk
// must still back up: it never passes an entry's whole path to the
// kernel, only its name relative to its directory's descriptor (dirFD),
// or for the calls that take a path, a short one through that
// descriptor (fdPath).
const pathMax = 4096

// longPath reports whether the kernel would refuse path as too long.
func longPath(path string) bool { return len(path) >= pathMax }

// fdPath is sysinfo.FDPath; a variable so tests can take /proc away.
var fdPath = sysinfo.FDPath
