package restore

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStraysListKeepsGrowing: when the target entry's name list grows on
// each retry, strays fails with ERANGE and its message names the
// operation once (snapshot.ListXAttrs and strays both wrote it).
func TestStraysListKeepsGrowing(t *testing.T) {
	const op = "list extended attributes"
	ops := xattrOps{list: func(buf []byte) (int, error) {
		if buf == nil {
			return 1000, nil
		}
		return 0, unix.ERANGE
	}}
	_, err := ops.strays(nil)
	if !errors.Is(err, unix.ERANGE) {
		t.Fatalf("strays: %v, want ERANGE", err)
	}
	if n := strings.Count(err.Error(), op); n != 1 {
		t.Errorf("strays: %q says %q %d times, want once", err, op, n)
	}
}
