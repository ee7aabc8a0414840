package snapshot

import (
	"crypto/sha256"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// benchTree is a directory listing of 100 files of one or two chunks
// each, the kind a backup encodes and a restore's planning walk decodes
// thousands of.
func benchTree() *Tree {
	t := &Tree{}
	now := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	for i := range 100 {
		n := Node{Name: fmt.Sprintf("file-%03d.go", i), Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1000,
			User: "dev", Group: "dev", ModTime: now, AccessTime: now, ChangeTime: now, Size: 14000, Inode: uint64(100000 + i), DeviceID: 2049}
		for c := range 1 + i%2 {
			var id chunkstore.ID
			id[0], id[1] = byte(i), byte(c)
			n.Content = append(n.Content, id)
		}
		t.Nodes = append(t.Nodes, n)
	}
	return t
}

func BenchmarkEncodeTree(b *testing.B) {
	t := benchTree()
	enc, err := t.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := t.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTree(b *testing.B) {
	enc, err := benchTree().Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := DecodeTree(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTreeEncodingPinned pins the bytes of a tree's encoding: tree IDs are
// keyed hashes of it, so any change would make every backup store every
// directory anew. The digest was taken from the encoder before nodes were
// embedded by value in nodeJSON.
func TestTreeEncodingPinned(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	id := chunkstore.ID{1, 2, 3}
	tree := &Tree{Nodes: []Node{
		{Name: "a\xffb", Type: TypeSymlink, LinkTarget: "x\xfe", ModTime: now, UID: 1, User: "u"},
		{Name: "d", Type: TypeDir, Subtree: &id, Mode: 0o755, ModTime: now, AccessTime: now, ChangeTime: now},
		{Name: "f", Type: TypeFile, Content: []chunkstore.ID{id, id}, Size: 10, Inode: 5, DeviceID: 7, Links: 2},
	}}
	b, err := tree.Encode()
	if err != nil {
		t.Fatal(err)
	}
	const want = "88fcd5d729a2ccf624cbf39a3301f5ffe6ffca5557707cf1c954fc58ec6d779e"
	if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != want {
		t.Fatalf("tree encoding changed: sha256 %s, want %s\n%s", got, want, b)
	}
	back, err := DecodeTree(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, tree) {
		t.Errorf("decoded tree differs:\n got %+v\nwant %+v", back.Nodes, tree.Nodes)
	}
}
