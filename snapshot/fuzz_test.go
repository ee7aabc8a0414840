package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// Fuzz targets for the snapshot decoders: trees and manifests come out
// of the repository, the files cache out of a local file that may be
// damaged. Seeds are produced by the real encoders.

func seedID(b byte) chunkstore.ID {
	var id chunkstore.ID
	for i := range id {
		id[i] = b ^ byte(i*7)
	}
	return id
}

func seedTrees() []*snapshot.Tree {
	sub := seedID(1)
	mt := time.Date(2001, 9, 9, 1, 46, 40, 123456789, time.UTC)
	return []*snapshot.Tree{
		{Nodes: []snapshot.Node{}},
		{Nodes: []snapshot.Node{
			{Name: "bad-\xff\xfe-utf8", Type: snapshot.TypeFile, Mode: 0o644, ModTime: mt, Size: 3, Content: []chunkstore.ID{seedID(2)}},
			{Name: "dir", Type: snapshot.TypeDir, Mode: 0o755 | 1<<22, Subtree: &sub, ModTime: mt.In(time.FixedZone("X", 3600))},
			{Name: "link", Type: snapshot.TypeSymlink, LinkTarget: "/etc/passwd"},
			{Name: "new\nline", Type: snapshot.TypeFIFO},
			{Name: "résumé", Type: snapshot.TypeFile, Links: 2, Inode: 99, DeviceID: 7, User: "root"},
			{Name: "sda", Type: snapshot.TypeDev, Device: 0x0801},
		}},
	}
}

func FuzzDecodeTree(f *testing.F) {
	for _, tr := range seedTrees() {
		b, err := tr.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"nodes":[{"name":"..","type":"file"}]}`))
	f.Add([]byte(`{"nodes":[{"name_b64":"YS9i","type":"file"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := snapshot.DecodeTree(b)
		if err != nil {
			return
		}
		for i, n := range tr.Nodes {
			if !snapshot.ValidName(n.Name) || n.Name == "" || bytes.ContainsAny([]byte(n.Name), "/\x00") || n.Name == "." || n.Name == ".." {
				t.Fatalf("accepted unsafe name %q", n.Name)
			}
			if i > 0 && tr.Nodes[i-1].Name >= n.Name {
				t.Fatalf("accepted unsorted or duplicate names %q, %q", tr.Nodes[i-1].Name, n.Name)
			}
			if n.Type == snapshot.TypeDir && n.Subtree == nil {
				t.Fatalf("accepted directory %q without subtree", n.Name)
			}
			if n.Type != snapshot.TypeFile && len(n.Content) > 0 {
				t.Fatalf("accepted %s %q with content", n.Type, n.Name)
			}
		}
		// What is accepted re-encodes to a canonical form that decodes
		// to the same thing.
		e1, err := tr.Encode()
		if err != nil {
			t.Fatal(err)
		}
		tr2, err := snapshot.DecodeTree(e1)
		if err != nil {
			t.Fatalf("re-encoded tree rejected: %v\n%s", err, e1)
		}
		e2, err := tr2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e1, e2) {
			t.Fatalf("tree encoding not stable:\n%s\n%s", e1, e2)
		}
		for i := range tr.Nodes {
			if tr.Nodes[i].Name != tr2.Nodes[i].Name || tr.Nodes[i].LinkTarget != tr2.Nodes[i].LinkTarget {
				t.Fatalf("name or link target changed in a round trip: %q -> %q", tr.Nodes[i].Name, tr2.Nodes[i].Name)
			}
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	m := snapshot.Manifest{
		Version: snapshot.ManifestVersion, Time: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC), Host: "h", Username: "u",
		Paths: []string{"/srv", "/home/\xff"}, Tags: []string{"daily"}, Tree: seedID(9),
		Summary: snapshot.Summary{FilesNew: 3, BytesRead: 1 << 40}, ProgramVersion: "test",
	}
	b, err := snapshot.EncodeManifestForTest(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2,"tree":"` + seedID(1).String() + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := snapshot.DecodeManifestForTest(b)
		if err != nil {
			return
		}
		if m.Version != snapshot.ManifestVersion || m.Tree.IsNull() {
			t.Fatalf("accepted manifest version %d, tree %s", m.Version, m.Tree)
		}
		e1, err := snapshot.EncodeManifestForTest(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := snapshot.DecodeManifestForTest(e1)
		if err != nil {
			t.Fatalf("re-encoded manifest rejected: %v", err)
		}
		if m2.Host != m.Host || !slices.Equal(m2.Paths, m.Paths) || !slices.Equal(m2.Tags, m.Tags) {
			t.Fatalf("host, paths or tags changed in a round trip: %q %q %q -> %q %q %q", m.Host, m.Paths, m.Tags, m2.Host, m2.Paths, m2.Tags)
		}
		e2, err := snapshot.EncodeManifestForTest(m2)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("manifest encoding not stable: %v\n%s\n%s", err, e1, e2)
		}
	})
}

const fuzzRepoID = "fuzz-repository"

func FuzzLoadFilesCache(f *testing.F) {
	dir := f.TempDir()
	for i, repo := range []string{fuzzRepoID, "another-repository"} {
		c := snapshot.NewFilesCache(repo)
		c.Record("/etc/passwd", snapshot.FileStat{Size: 100, ModTime: 1, CTime: 2, Inode: 3, Dev: 4}, []chunkstore.ID{seedID(1), seedID(2)})
		c.Record("/empty", snapshot.FileStat{}, nil)
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := c.Save(p); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("LBFC1\n"))
	f.Add([]byte("LBFC2\n"))
	f.Add([]byte("LBFC3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "cache")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := snapshot.LoadFilesCache(p, fuzzRepoID)
		if c == nil {
			t.Fatal("LoadFilesCache returned no cache")
		}
		defer c.Discard()
		c.Enter("/etc")
		defer c.Leave("/etc")
		if err != nil {
			if c.Len() != 0 {
				t.Fatalf("a discarded cache kept %d entries", c.Len())
			}
			return
		}
		// A cache that loads is used: a lookup must not panic.
		if _, ok := c.Lookup("/etc/passwd", snapshot.FileStat{Size: 100, ModTime: 1, CTime: 2, Inode: 3, Dev: 4}); ok && c.Len() == 0 {
			t.Fatal("lookup hit in an empty cache")
		}
	})
}

// TestFilesCacheDamagedCountsAreCheap: a cache file whose block, its
// checksum right, claims huge counts (of filesystem identities, of
// entries, of chunk IDs) is damaged there: read without allocating for
// them first, or panicking on a count whose byte size overflows.
func TestFilesCacheDamagedCountsAreCheap(t *testing.T) {
	uv := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	str := func(b []byte, s string) []byte { return append(uv(b, uint64(len(s))), s...) }
	for _, tc := range []struct {
		name  string
		block []byte
	}{
		// 1<<61 identities of 8 bytes: 0 bytes, in uint64; then an entry.
		{"identities", uv(append(uv(uv(str(nil, "/etc"), 1<<61), 1), str(nil, "x")...), 0)},
		{"entries", uv(uv(binary.LittleEndian.AppendUint64(uv(str(nil, "/etc"), 1), 9), 1<<40), 0)},
		{"chunk IDs", uv(append(uv(binary.LittleEndian.AppendUint64(uv(str(nil, "/etc"), 1), 9), 1), str(nil, "x")...), 1)},
	} {
		switch tc.name {
		case "identities":
			for range 6 {
				tc.block = uv(tc.block, 0) // times, inode, device, identity 0, no chunks
			}
		case "chunk IDs":
			for range 6 {
				tc.block = uv(tc.block, 0) // size, times, inode, device, identity 0
			}
			tc.block = uv(tc.block, 1<<24) // chunk IDs, then the block ends
		}
		raw := str([]byte("LBFC3\n"), fuzzRepoID)
		off := len(raw)
		raw = append(raw, tc.block...)
		raw = binary.LittleEndian.AppendUint32(raw, crc32.Checksum(tc.block, crc32.MakeTable(crc32.Castagnoli)))
		idxOff := len(raw)
		idx := uv(uv(uv(str(uv(nil, 1), "/etc"), uint64(off)), uint64(len(tc.block))), 1)
		raw = append(raw, idx...)
		raw = binary.LittleEndian.AppendUint32(raw, crc32.Checksum(idx, crc32.MakeTable(crc32.Castagnoli)))
		raw = binary.LittleEndian.AppendUint64(raw, uint64(idxOff))
		raw = append(raw, "LBFCEND\n"...)
		p := filepath.Join(t.TempDir(), "cache")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := snapshot.LoadFilesCache(p, fuzzRepoID)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, ok := c.Lookup("/etc/x", snapshot.FileStat{})
		runtime.ReadMemStats(&after)
		if ok || !slices.Equal(c.Damaged(), []string{"/etc"}) {
			t.Errorf("%s: entry found %v, damaged %v; want /etc damaged", tc.name, ok, c.Damaged())
		}
		c.Discard()
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
			t.Errorf("%s: reading a damaged block allocated %d MiB", tc.name, n>>20)
		}
	}
}
