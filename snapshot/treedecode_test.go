package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// TestCanonicalKeysMatchTags: the fast decoder's keys are nodeJSON's
// JSON keys in the order encoding/json writes them (declaration order,
// embedded fields in place).
func TestCanonicalKeysMatchTags(t *testing.T) {
	var tags []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "-" && f.IsExported() {
				tags = append(tags, name)
			}
		}
	}
	walk(reflect.TypeFor[nodeJSON]())
	if got := canonicalKeys[:]; !reflect.DeepEqual(got, tags) {
		t.Fatalf("canonicalKeys = %q\nnodeJSON's JSON keys = %q", got, tags)
	}
}

// randomTree builds a tree with the awkward values a real one can hold:
// names with escapes, control characters, non-UTF-8 bytes and non-ASCII
// text, times in other zones and at the extremes, the largest integers,
// empty and long content lists.
func randomTree(r *rand.Rand) *Tree {
	names := []string{"a", "R&D", "<tag>", "tab\there", "nl\nx", "ü", "日本語", "bad\xff\xfe", "quote\"q", `back\slash`, "\u2028sep", "del\x7f", "x"}
	users := []string{"", "root", "dev", "ünï", "a&b"}
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("X", -5*3600-30*60)}
	tm := func() time.Time {
		switch r.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
		}
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
	}
	num := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64 - r.Uint64N(10)
		}
		return r.Uint64N(1 << r.IntN(64))
	}
	id := func() chunkstore.ID {
		var id chunkstore.ID
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		return id
	}
	tr := &Tree{Nodes: []Node{}}
	for i := range r.IntN(20) {
		n := Node{
			Name: fmt.Sprintf("%s-%03d", names[r.IntN(len(names))], i), Mode: 0o644, UID: uint32(num()), GID: r.Uint32(),
			User: users[r.IntN(len(users))], Group: users[r.IntN(len(users))],
			ModTime: tm(), AccessTime: tm(), ChangeTime: tm(), Size: num(), Inode: num(), DeviceID: num(), Links: num(),
		}
		switch r.IntN(4) {
		case 0:
			n.Type = TypeDir
			sub := id()
			n.Subtree = &sub
			n.Mode |= 1 << 31
		case 1:
			n.Type, n.LinkTarget = TypeSymlink, names[r.IntN(len(names))]
		case 2:
			n.Type, n.Device = TypeDev, num()
		default:
			n.Type = TypeFile
			for range r.IntN(4) {
				n.Content = append(n.Content, id())
			}
		}
		for k := range r.IntN(4) / 2 * (1 + r.IntN(3)) {
			v := make([]byte, r.IntN(3)*r.IntN(40)) // empty too, never nil: the encoder's own trees hold none
			for i := range v {
				v[i] = byte(r.Uint32())
			}
			n.XAttrs = append(n.XAttrs, XAttr{Name: fmt.Sprintf("user.%s-%d", names[r.IntN(len(names))], k), Value: v}) // bad\xff\xfe among them: name_b64
		}
		tr.Nodes = append(tr.Nodes, n)
	}
	return tr
}

// TestCanonicalDecodesEncoderOutput: every tree the encoder writes takes
// the fast path and decodes to exactly what encoding/json makes of it.
func TestCanonicalDecodesEncoderOutput(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		b, err := randomTree(r).Encode()
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := decodeCanonical(b)
		if !ok {
			t.Fatalf("tree %d: the fast decoder gave up on the encoder's own output:\n%s", i, b)
		}
		slow, err := decodeJSON(b)
		if err != nil {
			t.Fatalf("tree %d: encoding/json: %v", i, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("tree %d decodes differently:\nfast %+v\njson %+v\n%s", i, fast, slow, b)
		}
	}
}

// TestCanonicalGivesUp: input the encoder does not write is left to
// encoding/json, including input encoding/json accepts with a meaning of
// its own (case-insensitive keys, duplicates, null, whitespace).
func TestCanonicalGivesUp(t *testing.T) {
	const id = `"0102030000000000000000000000000000000000000000000000000000000000"`
	for _, in := range []string{
		`{"nodes":null}`,
		` {"nodes":[]}`,
		`{"nodes":[]} `,
		`{"nodes": []}`,
		`{"nodes":[],"x":1}`,
		`{"Nodes":[]}`,
		`{"nodes":[{"Name":"a"}]}`,
		`{"nodes":[{"type":"file","name":"a"}]}`,
		`{"nodes":[{"name":"a","name":"b"}]}`,
		`{"nodes":[{"name":"a","extra":1}]}`,
		`{"nodes":[{"name":null}]}`,
		`{"nodes":[{"name":"a","mode":-1}]}`,
		`{"nodes":[{"name":"a","mode":1.0}]}`,
		`{"nodes":[{"name":"a","mode":1e3}]}`,
		`{"nodes":[{"name":"a","mode":01}]}`,
		`{"nodes":[{"name":"a","mode":4294967296}]}`,
		`{"nodes":[{"name":"a","size":18446744073709551616}]}`,
		`{"nodes":[{"name":"a","content":[]}]}`,
		`{"nodes":[{"name":"a","content":null}]}`,
		`{"nodes":[{"name":"a","content":[` + id + `,]}]}`,
		`{"nodes":[{"name":"a","subtree":"0102"}]}`,
		`{"nodes":[{"name":"a","subtree":` + strings.Replace(id, "01", `\u0030\u0031`, 1) + `}]}`,
		`{"nodes":[{"name":"a","mtime":"2026-11-25T12:00:00Z "}]}`,
		`{"nodes":[{"name":"a","mtime":null}]}`,
		`{"nodes":[{"name":"a\q"}]}`,
		"{\"nodes\":[{\"name\":\"a\x01\"}]}",
		`{"nodes":[{"name_b64":"!!"}]}`,
		`{"nodes":[{"name":"a"},]}`,
		`{"nodes":[{"name":"a","xattrs":[]}]}`,
		`{"nodes":[{"name":"a","xattrs":null}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"user.x","value":null}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"user.x","value":"YQ\u003d\u003d"}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"user.x","value":"YQ=="},]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"value":"YQ==","name":"user.x"}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"user.x","value":"!!"}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"user.x","value":"YQ==","x":1}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name_b64":"!!","value":"YQ=="}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name_b64":"","value":"YQ=="}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"x","name_b64":"dXNlci7/","value":"YQ=="}]}]}`,
		`{"nodes":[{"name":"a","xattrs":[{"name":"","value":"YQ=="}]}]}`,
		`{"nodes":[{"name":"a"}]`,
		`{"nodes":[{"name":"a"`,
	} {
		if nodes, ok := decodeCanonical([]byte(in)); ok {
			t.Errorf("decodeCanonical(%s) = %+v, want it to give up", in, nodes)
		}
	}
}

// FuzzDecodeCanonical: whatever the fast decoder accepts, encoding/json
// accepts too and decodes to the same nodes.
func FuzzDecodeCanonical(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		b, err := randomTree(r).Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"nodes":[{"name":"a\u0026b","type":"file","mode":420,"mtime":"2026-11-25T12:00:00+01:00"}]}`))
	f.Add([]byte(`{"nodes":[{"name":"a","type":"file","mode":420,"xattrs":[{"name":"user.x","value":"YQ=="},{"name":"user.y","value":""}]}]}`))
	f.Add([]byte(`{"nodes":[{"name":"a","type":"file","mode":420,"xattrs":[{"name_b64":"dXNlci7/","value":"YQ=="}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeCanonical(b)
		if !ok {
			return
		}
		slow, err := decodeJSON(b)
		if err != nil {
			t.Fatalf("fast decoder accepted what encoding/json refuses (%v):\n%q", err, b)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoded differently:\nfast %+v\njson %+v\n%q", fast, slow, b)
		}
	})
}

// TestCanonicalEncodeMatchesJSON: the encoder writes every tree exactly
// as json.Marshal does, and leaves to it the ones it must.
func TestCanonicalEncodeMatchesJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		tr := randomTree(r)
		want, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := encodeCanonical(tr)
		if !ok {
			t.Fatalf("tree %d: the fast encoder gave up:\n%s", i, want)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("tree %d encodes differently:\nfast %s\njson %s", i, got, want)
		}
	}
	if _, ok := encodeCanonical(&Tree{}); ok {
		t.Error("a nil node list should be left to json.Marshal (it writes null)")
	}
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))} {
		tr := &Tree{Nodes: []Node{{Name: "a", Type: TypeFile, ModTime: tm}}}
		if _, ok := encodeCanonical(tr); ok {
			t.Errorf("time %v: should be left to json.Marshal, which refuses it", tm)
		}
		if _, err := tr.Encode(); err == nil {
			t.Errorf("time %v: Encode should fail as json.Marshal does", tm)
		}
	}
	empty := &Tree{Nodes: []Node{{}}}
	got, _ := encodeCanonical(empty)
	if want, _ := json.Marshal(empty); !bytes.Equal(got, want) {
		t.Errorf("zero node: fast %s, json %s", got, want)
	}
}

// FuzzEncodeCanonical: one node built from the fuzzer's values encodes
// exactly as json.Marshal writes it, and decodes back through the fast
// decoder.
func FuzzEncodeCanonical(f *testing.F) {
	f.Add("name", "", "root", "wheel", "file", uint32(0o644), uint64(10), int64(1e9), int64(5), 3600)
	f.Add("a\xffb<&>", "t\u2028\x01", "ü", "", "symlink", uint32(1<<31), uint64(1<<63), int64(-62135596800), int64(0), -1)
	f.Fuzz(func(t *testing.T, name, link, user, group, typ string, mode uint32, size uint64, sec, nsec int64, zone int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("", zone))
		tr := &Tree{Nodes: []Node{{Name: name, LinkTarget: link, User: user, Group: group, Type: NodeType(typ), Mode: fs.FileMode(mode),
			Size: size, Inode: size / 3, ModTime: tm, AccessTime: tm.Add(time.Second), Content: []chunkstore.ID{{byte(size)}},
			XAttrs: []XAttr{{Name: user, Value: []byte(link)}, {Name: group, Value: []byte(name)}}}}}
		want, werr := json.Marshal(tr)
		got, ok := encodeCanonical(tr)
		if !ok {
			if werr == nil {
				t.Fatalf("fast encoder gave up on a tree json.Marshal encodes: %s", want)
			}
			return
		}
		if werr != nil {
			t.Fatalf("fast encoder wrote %s where json.Marshal fails: %v", got, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encodes differently:\nfast %s\njson %s", got, want)
		}
		back, ok := decodeCanonical(got)
		if !ok {
			t.Fatalf("fast decoder gave up on the encoder's output %s", got)
		}
		if slow, err := decodeJSON(got); err != nil || !reflect.DeepEqual(back, slow) {
			t.Fatalf("decoders disagree on %s: %v", got, err)
		}
	})
}
