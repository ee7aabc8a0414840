package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadXAttrsSizes reads attribute lists and values around the size
// of the first read's buffer (xattrProbe): shorter, exactly as long, and
// longer ones (which take the size-first path) come back whole.
func TestReadXAttrsSizes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		names  int // attributes
		values []int
	}{
		{"none", 0, nil},
		{"short", 1, []int{1}},
		{"empty value", 1, []int{0}},
		{"value at the probe size", 1, []int{xattrProbe}},
		{"value one longer", 1, []int{xattrProbe + 1}},
		{"long value", 1, []int{4000}},
		{"name list over the probe size", 12, []int{3}},
		{"many names", 16, []int{2, 40, xattrProbe - 1, xattrProbe + 7}}, // within ext4's 4 KiB per inode
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			want := map[string][]byte{}
			listLen := 0
			for i := range tc.names {
				name := fmt.Sprintf("user.attribute-with-a-long-name-%02d", i)
				v := bytes.Repeat([]byte{byte('a' + i%26)}, tc.values[i%len(tc.values)])
				err := unix.Lsetxattr(p, name, v, 0)
				if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
					t.Skip("no user extended attributes here")
				}
				if err != nil {
					t.Fatal(err)
				}
				want[name] = v
				listLen += len(name) + 1
			}
			if tc.names > 10 && listLen <= xattrProbe {
				t.Fatalf("name list of %d bytes does not exceed the probe", listLen)
			}
			xs, err := readXAttrs(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(xs) != len(want) {
				t.Fatalf("read %d attributes, want %d", len(xs), len(want))
			}
			for _, x := range xs {
				w, ok := want[x.Name]
				if !ok || !bytes.Equal(x.Value, w) || x.Value == nil {
					t.Errorf("%s: %d bytes (nil %v), want %d", x.Name, len(x.Value), x.Value == nil, len(w))
				}
			}
		})
	}
}

// alwaysGrows is a list call for an entry whose name list grows between
// each sizing and the read that follows: the read always fails with ERANGE.
func alwaysGrows(buf []byte) (int, error) {
	if buf == nil {
		return xattrProbe + 1, nil
	}
	return 0, unix.ERANGE
}

// TestListXAttrsKeepsGrowing: a name list that grows on each of the
// retries fails with ERANGE; ListXAttrs leaves the operation for its
// caller to name, and a backup's names it once ("list extended
// attributes" was once written by both).
func TestListXAttrsKeepsGrowing(t *testing.T) {
	const op = "list extended attributes"
	_, err := ListXAttrs(alwaysGrows)
	if !errors.Is(err, unix.ERANGE) {
		t.Fatalf("ListXAttrs: %v, want ERANGE", err)
	}
	if n := strings.Count(err.Error(), op); n != 0 {
		t.Errorf("ListXAttrs: %q says %q %d times, want none: its caller says it", err, op, n)
	}
	f := filepath.Join(t.TempDir(), "f")
	_, err = xattrsOf(alwaysGrows, func(name string, buf []byte) (int, error) { return unix.Lgetxattr(f, name, buf) })
	if !errors.Is(err, unix.ERANGE) {
		t.Fatalf("xattrsOf: %v, want ERANGE", err)
	}
	if n := strings.Count(err.Error(), op); n != 1 {
		t.Errorf("xattrsOf: %q says %q %d times, want once", err, op, n)
	}
}

// TestReadXAttrsNoneAllocates pins the cost of the common case, an entry
// without extended attributes, which a backup pays for every entry: the
// one allocation is x/sys/unix's copy of the path for the system call.
// ListXAttrs's probe buffer, handed to a function value, would be a
// second one were it not pooled.
func TestReadXAttrsNoneAllocates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if xs, err := readXAttrs(p); err != nil || len(xs) != 0 {
		t.Fatalf("readXAttrs of a file without attributes = %v, %v", xs, err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = readXAttrs(p) }); n > 1 {
		t.Fatalf("readXAttrs of a file without attributes made %v allocations, want at most 1 (the path's copy)", n)
	}
}
