package restore

import (
	"io/fs"
	"testing"
	"time"
	"unsafe"

	"github.com/lifeboat-backup/lifeboat/snapshot"
	"golang.org/x/sys/unix"
)

// TestFileMetaRoundTrip: a planned file's metadata gives back the node's
// mode, owner, times (zero, before 1970, years 1 and 9999, other zones)
// and extended attributes, as the restore applies them.
func TestFileMetaRoundTrip(t *testing.T) {
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Unix(-1, 1),
		time.Unix(-1, 999999999),
		time.Unix(-11676096000, 500000000),
		time.Unix(16738315200, 123456789),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Now(),
		time.Now().In(time.FixedZone("x", -5*3600)),
	}
	for _, mt := range times {
		for _, at := range times {
			n := &snapshot.Node{Name: "f", Type: snapshot.TypeFile, Mode: fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | 0o777,
				UID: 4294967294, GID: 65534, ModTime: mt, AccessTime: at, Size: 7,
				XAttrs: []snapshot.XAttr{{Name: "user.a", Value: []byte{0}}}}
			f := &fileState{path: "a/b/f", meta: metaOf(n), size: 7}
			g := f.node()
			if !g.ModTime.Equal(n.ModTime) || !g.AccessTime.Equal(n.AccessTime) || g.AccessTime.IsZero() != n.AccessTime.IsZero() || g.ModTime.IsZero() != n.ModTime.IsZero() {
				t.Errorf("times %v %v -> %v %v", n.ModTime, n.AccessTime, g.ModTime, g.AccessTime)
			}
			a, aerr := timespecs(n)
			b, berr := timespecs(g)
			if (aerr == nil) != (berr == nil) || (aerr != nil && unsafe.Sizeof(unix.Timespec{}.Sec) == 8) {
				t.Errorf("timespecs %v/%v: %v, %v", mt, at, aerr, berr)
			} else if aerr == nil && (a[0] != b[0] || a[1] != b[1]) {
				t.Errorf("timespecs differ for %v/%v", mt, at)
			}
			if g.Mode != n.Mode || g.UID != n.UID || g.GID != n.GID || g.Name != n.Name || g.UnixPerm() != n.UnixPerm() || createPerm(g) != createPerm(n) || len(g.XAttrs) != 1 {
				t.Errorf("fields differ")
			}
		}
	}
}

// TestTimespecsFarTimes: times outside the years 1678 to 2262, where
// UnixNano overflows, are set as they were recorded.
func TestTimespecsFarTimes(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2500, 6, 1, 12, 0, 0, 123456789, time.UTC),
		time.Date(1600, 1, 1, 0, 0, 0, 500000000, time.UTC),
	} {
		ts, err := timespecs(&snapshot.Node{ModTime: tm, AccessTime: tm})
		if unsafe.Sizeof(unix.Timespec{}.Sec) == 4 {
			if err == nil {
				t.Errorf("%v: no error where time_t has 32 bits", tm)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tm, err)
		}
		if int64(ts[1].Sec) != tm.Unix() || int64(ts[1].Nsec) != int64(tm.Nanosecond()) {
			t.Errorf("%v: timespec %d.%09d, want %d.%09d", tm, ts[1].Sec, ts[1].Nsec, tm.Unix(), tm.Nanosecond())
		}
	}
}
