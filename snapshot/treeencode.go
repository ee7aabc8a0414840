package snapshot

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// encodeCanonical writes t exactly as json.Marshal does, byte for byte
// (tree IDs are keyed hashes of these bytes), without its reflection
// and without the second pass encoding/json makes over what every
// node's MarshalJSON returns: about 6 µs per entry, which was 40 % of
// the CPU time of a backup that found nothing changed. It reports ok false for what it
// leaves to json.Marshal, so that those results and errors stay
// json.Marshal's own: a nil node list, and a time that MarshalJSON
// refuses. TestCanonicalEncodeMatchesJSON and FuzzEncodeCanonical compare
// the two.
func encodeCanonical(t *Tree) (b []byte, ok bool) {
	if t.Nodes == nil {
		return nil, false
	}
	e := canonicalEncoder{b: make([]byte, 0, 64+320*len(t.Nodes))}
	e.b = append(e.b, `{"nodes":[`...)
	for i := range t.Nodes {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if !e.node(&t.Nodes[i]) {
			return nil, false
		}
	}
	return append(e.b, "]}"...), true
}

type canonicalEncoder struct {
	b   []byte
	sep byte // written before the next key: '{' first, then ','
}

// node appends n as nodeJSON's fields, in declaration order, leaving out
// the empty omitempty ones.
func (e *canonicalEncoder) node(n *Node) bool {
	e.sep = '{'
	name, nameB64 := splitBytes(n.Name)
	link, linkB64 := splitBytes(n.LinkTarget)
	e.text(keyName, name, true)
	e.text(keyNameB64, nameB64, true)
	e.text(keyLinkTarget, link, true)
	e.text(keyLinkTargetB64, linkB64, true)
	e.text(keyType, string(n.Type), false)
	e.uint(keyMode, uint64(n.Mode), false)
	e.uint(keyUID, uint64(n.UID), false)
	e.uint(keyGID, uint64(n.GID), false)
	e.text(keyUser, n.User, true)
	e.text(keyGroup, n.Group, true)
	if !e.time(keyMTime, n.ModTime) || !e.time(keyATime, n.AccessTime) || !e.time(keyCTime, n.ChangeTime) {
		return false
	}
	e.uint(keySize, n.Size, true)
	e.uint(keyInode, n.Inode, true)
	e.uint(keyDeviceID, n.DeviceID, true)
	e.uint(keyLinks, n.Links, true)
	e.uint(keyRdev, n.Device, true)
	if len(n.Content) > 0 {
		e.key(keyContent)
		for i := range n.Content {
			if i > 0 {
				e.b = append(e.b, ',')
			} else {
				e.b = append(e.b, '[')
			}
			e.id(&n.Content[i])
		}
		e.b = append(e.b, ']')
	}
	if n.Subtree != nil {
		e.key(keySubtree)
		e.id(n.Subtree)
	}
	if len(n.XAttrs) > 0 {
		e.key(keyXAttrs)
		for i, x := range n.XAttrs {
			if i > 0 {
				e.b = append(e.b, ',')
			} else {
				e.b = append(e.b, '[')
			}
			// As XAttr.MarshalJSON: name or name_b64, each left out
			// when empty.
			name, nameB64 := splitBytes(x.Name)
			e.b = append(e.b, '{')
			switch {
			case name != "":
				e.b = append(e.b, `"name":`...)
				e.b = appendJSONString(e.b, name)
				e.b = append(e.b, ',')
			case nameB64 != "":
				e.b = append(e.b, `"name_b64":`...)
				e.b = appendJSONString(e.b, nameB64)
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, `"value":`...)
			if x.Value == nil {
				e.b = append(e.b, "null"...)
			} else {
				e.b = append(e.b, '"')
				e.b = base64.StdEncoding.AppendEncode(e.b, x.Value)
				e.b = append(e.b, '"')
			}
			e.b = append(e.b, '}')
		}
		e.b = append(e.b, ']')
	}
	e.b = append(e.b, '}') // type, mode, uid, gid and the times are always written: the object is open
	return true
}

func (e *canonicalEncoder) key(k int) {
	e.b = append(e.b, e.sep, '"')
	e.b = append(e.b, canonicalKeys[k]...)
	e.b = append(e.b, '"', ':')
	e.sep = ','
}

func (e *canonicalEncoder) text(k int, s string, omitEmpty bool) {
	if s == "" && omitEmpty {
		return
	}
	e.key(k)
	e.b = appendJSONString(e.b, s)
}

func (e *canonicalEncoder) uint(k int, v uint64, omitEmpty bool) {
	if v == 0 && omitEmpty {
		return
	}
	e.key(k)
	e.b = strconv.AppendUint(e.b, v, 10)
}

// time appends t as time.Time.MarshalJSON does: AppendText writes the
// same strict RFC 3339 and refuses the same times (a year outside
// 0–9999, a zone offset of a day or more), for which it reports false.
func (e *canonicalEncoder) time(k int, t time.Time) bool {
	e.key(k)
	e.b = append(e.b, '"')
	var err error
	if e.b, err = t.AppendText(e.b); err != nil {
		return false
	}
	e.b = append(e.b, '"')
	return true
}

func (e *canonicalEncoder) id(id *chunkstore.ID) {
	e.b = append(e.b, '"')
	e.b = hex.AppendEncode(e.b, id[:])
	e.b = append(e.b, '"')
}

// appendJSONString appends s as a JSON string. Printable ASCII without
// a quote, backslash or one of the characters encoding/json escapes for
// HTML (< > &) is copied as it is; any other string is encoded by
// encoding/json, whose escaping (control characters, U+2028, invalid
// UTF-8) is thereby kept exactly.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil { // cannot happen: any Go string encodes
				panic(err)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
