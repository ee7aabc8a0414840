package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestStatsCLI: the same files backed up from two places are stored once
// (deduplication ×2), and the writer key is enough to see it.
func TestStatsCLI(t *testing.T) {
	c := newCLI(t)
	r := initRepo(t, c, "repo")
	data := fixture.Random(8, 2<<20)
	for _, dir := range []string{"a", "b"} {
		fixture.Create(t, filepath.Join(c.dir, dir), fixture.Tree{"blob.bin": {Content: data}})
		c.ok(r.writer("backup", "--host", "h-"+dir, filepath.Join(c.dir, dir))...)
	}
	type stats struct {
		Snapshots        int            `json:"snapshots"`
		Hosts            map[string]int `json:"hosts"`
		LogicalBytes     uint64         `json:"logical_bytes"`
		DataRawBytes     int64          `json:"data_raw_bytes"`
		DataStoredBytes  int64          `json:"data_stored_bytes"`
		Packs            int            `json:"packs"`
		DedupRatio       float64        `json:"dedup_ratio"`
		CompressionRatio float64        `json:"compression_ratio"`
	}
	st := decodeJSON[stats](t, c.ok(r.writer("stats", "--json")...).stdout)
	if st.Snapshots != 2 || st.Hosts["h-a"] != 1 || st.Hosts["h-b"] != 1 || st.LogicalBytes != 2*uint64(len(data)) ||
		st.DataRawBytes != int64(len(data)) || math.Abs(st.DedupRatio-2) > 1e-9 || st.Packs == 0 {
		t.Errorf("stats %+v: want 2 snapshots of the same %d bytes, stored once (×2)", st, len(data))
	}
	// Random data is stored raw: sealed it is a little larger.
	if st.DataStoredBytes < st.DataRawBytes || st.CompressionRatio > 1 {
		t.Errorf("stats %+v: random data cannot compress", st)
	}
	out := c.ok(r.reader("stats")...).stdout
	for _, w := range []string{"Snapshots:    2 (h-a 1, h-b 1)", "deduplication ×2.0", "Packs:"} {
		if !strings.Contains(out, w) {
			t.Errorf("stats output does not contain %q:\n%s", w, out)
		}
	}
	c.fails(2, r.writer("stats", "extra"), "too many arguments")
}
