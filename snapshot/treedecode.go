package snapshot

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// A tree decoder for the exact form Tree.Encode writes.
//
// encoding/json decodes a directory listing at about 35 MB/s, some 10 µs
// per entry (reflection, and a detour through a text unmarshaler for every
// ID and time). A restore decodes every listing of the snapshot before
// its first download, so for a tree of a million files that would be ten
// seconds of a single core before any data moves; ls, check and restore
// drills pay the same.
//
// decodeCanonical reads only what the encoder writes: the keys of
// canonicalKeys in that order (each at most once), no whitespace, plain
// unsigned integers, strings without control characters. It gives up
// (ok false) on anything else — another key order, an unknown key,
// null, whitespace, a number with a sign, fraction or exponent, an
// empty content list — and DecodeTree then decodes the same bytes with
// encoding/json. On every input it accepts, it produces exactly what
// encoding/json would (FuzzDecodeCanonical checks this), so what a tree
// decodes to, and which trees are rejected with which error, never
// depends on which decoder ran. Strings with escapes or non-UTF-8 bytes
// are rare (names with & < > or control characters); each is handed to
// encoding/json on its own.

// canonicalKeys are nodeJSON's keys in the order json.Marshal writes
// them (TestCanonicalKeysMatchTags keeps the two in step).
var canonicalKeys = [...]string{
	keyName:          "name",
	keyNameB64:       "name_b64",
	keyLinkTarget:    "linktarget",
	keyLinkTargetB64: "linktarget_b64",
	keyType:          "type",
	keyMode:          "mode",
	keyUID:           "uid",
	keyGID:           "gid",
	keyUser:          "user",
	keyGroup:         "group",
	keyMTime:         "mtime",
	keyATime:         "atime",
	keyCTime:         "ctime",
	keySize:          "size",
	keyInode:         "inode",
	keyDeviceID:      "device_id",
	keyLinks:         "links",
	keyRdev:          "rdev",
	keyContent:       "content",
	keySubtree:       "subtree",
	keyXAttrs:        "xattrs",
}

const (
	keyName = iota
	keyNameB64
	keyLinkTarget
	keyLinkTargetB64
	keyType
	keyMode
	keyUID
	keyGID
	keyUser
	keyGroup
	keyMTime
	keyATime
	keyCTime
	keySize
	keyInode
	keyDeviceID
	keyLinks
	keyRdev
	keyContent
	keySubtree
	keyXAttrs
	numKeys
)

// canonicalDecoder walks b; i is the next byte to read.
type canonicalDecoder struct {
	b           []byte
	i           int
	user, group string // the last read, reused (name)
}

// decodeCanonical decodes a tree in the encoder's form, or reports ok
// false, leaving the decision (and the error message) to encoding/json.
func decodeCanonical(b []byte) (nodes []Node, ok bool) {
	d := canonicalDecoder{b: b}
	if !d.lit(`{"nodes":[`) {
		return nil, false
	}
	nodes = []Node{}
	if d.lit(`]}`) {
		return nodes, d.i == len(b)
	}
	for {
		var j nodeJSON
		if !d.node(&j) {
			return nil, false
		}
		var n Node
		if j.node(&n) != nil {
			return nil, false
		}
		nodes = append(nodes, n)
		if d.lit(`,`) {
			continue
		}
		if d.lit(`]}`) && d.i == len(b) {
			return nodes, true
		}
		return nil, false
	}
}

// node decodes one object of a tree's node list into j.
func (d *canonicalDecoder) node(j *nodeJSON) bool {
	if !d.lit(`{`) {
		return false
	}
	if d.lit(`}`) {
		return true
	}
	next := 0 // the lowest key allowed next
	for {
		k := d.key(next)
		if k < 0 {
			return false
		}
		next = k + 1
		if !d.value(j, k) {
			return false
		}
		if d.lit(`}`) {
			return true
		}
		if !d.lit(`,`) {
			return false
		}
	}
}

// key reads `"key":` and returns its index in canonicalKeys, which must
// be from, or later; -1 otherwise.
func (d *canonicalDecoder) key(from int) int {
	for k := from; k < numKeys; k++ {
		name := canonicalKeys[k]
		if len(d.b)-d.i >= len(name)+3 && d.b[d.i] == '"' && string(d.b[d.i+1:d.i+1+len(name)]) == name &&
			d.b[d.i+1+len(name)] == '"' && d.b[d.i+2+len(name)] == ':' {
			d.i += len(name) + 3
			return k
		}
	}
	return -1
}

func (d *canonicalDecoder) value(j *nodeJSON, k int) bool {
	var ok bool
	switch k {
	case keyName:
		j.Name, ok = d.text()
	case keyNameB64:
		j.NameB64, ok = d.text()
	case keyLinkTarget:
		j.LinkTarget, ok = d.text()
	case keyLinkTargetB64:
		j.LinkTargetB64, ok = d.text()
	case keyType:
		j.Type, ok = d.nodeType()
	case keyMode:
		var v uint64
		v, ok = d.uint(32)
		j.Mode = fs.FileMode(v)
	case keyUID:
		var v uint64
		v, ok = d.uint(32)
		j.UID = uint32(v)
	case keyGID:
		var v uint64
		v, ok = d.uint(32)
		j.GID = uint32(v)
	case keyUser:
		j.User, ok = d.name(&d.user)
	case keyGroup:
		j.Group, ok = d.name(&d.group)
	case keyMTime:
		ok = d.time(&j.ModTime)
	case keyATime:
		ok = d.time(&j.AccessTime)
	case keyCTime:
		ok = d.time(&j.ChangeTime)
	case keySize:
		j.Size, ok = d.uint(64)
	case keyInode:
		j.Inode, ok = d.uint(64)
	case keyDeviceID:
		j.DeviceID, ok = d.uint(64)
	case keyLinks:
		j.Links, ok = d.uint(64)
	case keyRdev:
		j.Device, ok = d.uint(64)
	case keyContent:
		j.Content, ok = d.ids()
	case keySubtree:
		var id chunkstore.ID
		if ok = d.id(&id); ok {
			j.Subtree = &id
		}
	case keyXAttrs:
		j.XAttrs, ok = d.xattrs()
	}
	return ok
}

// xattrs reads a non-empty list of extended attributes, each
// {"name":...,"value":...} (or "name_b64", or no name: XAttr.MarshalJSON)
// with the value in base64. A value of null, or in base64 with escapes
// (encoding/json's decoder skips \r and \n in it), is left to
// encoding/json.
func (d *canonicalDecoder) xattrs() ([]XAttr, bool) {
	if !d.lit(`[`) {
		return nil, false
	}
	var out []XAttr
	for {
		var x XAttr
		var ok bool
		if !d.lit(`{`) {
			return nil, false
		}
		switch {
		case d.lit(`"name":`):
			if x.Name, ok = d.text(); !ok || x.Name == "" || !d.lit(`,`) {
				return nil, false
			}
		case d.lit(`"name_b64":`):
			s, plain, ok := d.raw()
			if !ok || !plain || len(s) == 0 || !d.lit(`,`) {
				return nil, false
			}
			b, err := base64.StdEncoding.DecodeString(string(s))
			if err != nil {
				return nil, false
			}
			x.Name = string(b)
		}
		if !d.lit(`"value":`) {
			return nil, false
		}
		s, plain, ok := d.raw()
		if !ok || !plain || !d.lit(`}`) {
			return nil, false
		}
		// As encoding/json decodes a []byte: into a new slice, empty
		// but not nil for "".
		x.Value = make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err := base64.StdEncoding.Decode(x.Value, s)
		if err != nil {
			return nil, false
		}
		x.Value = x.Value[:n]
		out = append(out, x)
		if d.lit(`]`) {
			return out, true
		}
		if !d.lit(`,`) {
			return nil, false
		}
	}
}

func (d *canonicalDecoder) lit(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// raw reads a string token and returns the bytes between its quotes and
// whether they hold an escape or a byte outside ASCII.
func (d *canonicalDecoder) raw() (s []byte, plain, ok bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false, false
	}
	plain = true
	for k := d.i + 1; k < len(d.b); k++ {
		switch c := d.b[k]; {
		case c == '"':
			s = d.b[d.i+1 : k]
			d.i = k + 1
			return s, plain, true
		case c == '\\':
			plain = false
			k++ // the escaped byte cannot end the string
		case c < 0x20:
			return nil, false, false // invalid JSON: encoding/json says why
		case c >= utf8.RuneSelf:
			plain = false
		}
	}
	return nil, false, false
}

// name reads a user or group name. Most nodes of a listing carry the
// same few, so the last one read is reused rather than allocated again.
func (d *canonicalDecoder) name(last *string) (string, bool) {
	if n := len(*last); n > 0 && len(d.b)-d.i >= n+2 && d.b[d.i] == '"' && string(d.b[d.i+1:d.i+1+n]) == *last && d.b[d.i+1+n] == '"' {
		d.i += n + 2
		return *last, true
	}
	s, ok := d.text()
	*last = s
	return s, ok
}

// text reads a string value. A string with escapes, or with bytes that
// are not UTF-8 (encoding/json replaces them), is left to encoding/json,
// for that one string.
func (d *canonicalDecoder) text() (string, bool) {
	start := d.i
	s, plain, ok := d.raw()
	if !ok {
		return "", false
	}
	if plain || utf8.Valid(s) && bytes.IndexByte(s, '\\') < 0 {
		return string(s), true
	}
	var out string
	if json.Unmarshal(d.b[start:d.i], &out) != nil {
		return "", false
	}
	return out, true
}

// nodeType reads a node type, without allocating for the known ones.
func (d *canonicalDecoder) nodeType() (NodeType, bool) {
	for _, t := range [...]NodeType{TypeFile, TypeDir, TypeSymlink, TypeDev, TypeCharDev, TypeFIFO} {
		if len(d.b)-d.i >= len(t)+2 && d.b[d.i] == '"' && string(d.b[d.i+1:d.i+1+len(t)]) == string(t) && d.b[d.i+1+len(t)] == '"' {
			d.i += len(t) + 2
			return t, true
		}
	}
	s, ok := d.text()
	return NodeType(s), ok
}

// uint reads a JSON integer that fits in bits; a sign, fraction,
// exponent or leading zero is not the encoder's and gives up.
func (d *canonicalDecoder) uint(bits uint) (uint64, bool) {
	k := d.i
	var v uint64
	for ; k < len(d.b) && '0' <= d.b[k] && d.b[k] <= '9'; k++ {
		c := uint64(d.b[k] - '0')
		if v > (math.MaxUint64-c)/10 {
			return 0, false // overflows: let encoding/json say so
		}
		v = v*10 + c
	}
	if n := k - d.i; n == 0 || n > 1 && d.b[d.i] == '0' || bits < 64 && v >= 1<<bits {
		return 0, false
	}
	d.i = k
	return v, true
}

// time reads a timestamp the way time.Time.UnmarshalJSON does: the bytes
// between the quotes, unescaped, as strict RFC 3339.
func (d *canonicalDecoder) time(t *time.Time) bool {
	s, plain, ok := d.raw()
	return ok && plain && t.UnmarshalText(s) == nil
}

// id reads a hex ID the way encoding/json hands one to ID.UnmarshalText:
// 64 hex digits between quotes (hex.Decode refuses a quote, a backslash
// or any other byte that is not a digit).
func (d *canonicalDecoder) id(id *chunkstore.ID) bool {
	const n = 2 * chunkstore.IDSize
	if len(d.b)-d.i < n+2 || d.b[d.i] != '"' || d.b[d.i+1+n] != '"' {
		return false
	}
	if _, err := hex.Decode(id[:], d.b[d.i+1:d.i+1+n]); err != nil {
		return false
	}
	d.i += n + 2
	return true
}

// ids reads a non-empty list of IDs.
func (d *canonicalDecoder) ids() ([]chunkstore.ID, bool) {
	if !d.lit(`[`) {
		return nil, false
	}
	var out []chunkstore.ID
	for {
		var id chunkstore.ID
		if !d.id(&id) {
			return nil, false
		}
		out = append(out, id)
		if d.lit(`]`) {
			return out, true
		}
		if !d.lit(`,`) {
			return nil, false
		}
	}
}
