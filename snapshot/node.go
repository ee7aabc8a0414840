package snapshot

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// NodeType is the kind of filesystem object a Node records.
type NodeType string

// Node types.
const (
	TypeFile    NodeType = "file"
	TypeDir     NodeType = "dir"
	TypeSymlink NodeType = "symlink"
	TypeDev     NodeType = "dev"     // block device
	TypeCharDev NodeType = "chardev" // character device
	TypeFIFO    NodeType = "fifo"
)

// Node is one entry of a directory tree.
type Node struct {
	Name       string          `json:"-"`
	Type       NodeType        `json:"type"`
	Mode       fs.FileMode     `json:"mode"` // permission, setuid, setgid and sticky bits only
	UID        uint32          `json:"uid"`
	GID        uint32          `json:"gid"`
	User       string          `json:"user,omitempty"`
	Group      string          `json:"group,omitempty"`
	ModTime    time.Time       `json:"mtime"`
	AccessTime time.Time       `json:"atime"`
	ChangeTime time.Time       `json:"ctime"`
	Size       uint64          `json:"size,omitempty"`
	Inode      uint64          `json:"inode,omitempty"`
	DeviceID   uint64          `json:"device_id,omitempty"` // st_dev: which filesystem
	Links      uint64          `json:"links,omitempty"`
	Device     uint64          `json:"rdev,omitempty"` // st_rdev of device nodes
	LinkTarget string          `json:"-"`
	Content    []chunkstore.ID `json:"content,omitempty"`
	Subtree    *chunkstore.ID  `json:"subtree,omitempty"`
	// XAttrs are the entry's extended attributes, sorted by name (ACLs
	// are among them: system.posix_acl_access).
	XAttrs []XAttr `json:"xattrs,omitempty"`
}

// XAttr is an extended attribute: a name with its namespace
// ("user.origin", "security.capability", "system.posix_acl_access") and
// its value, any bytes (base64 in the tree's JSON). Like a node's name,
// the attribute's is stored as name_b64 when it is not UTF-8.
type XAttr struct {
	Name  string
	Value []byte
}

type xattrJSON struct {
	Name    string `json:"name,omitempty"`
	NameB64 string `json:"name_b64,omitempty"`
	Value   []byte `json:"value"`
}

// MarshalJSON encodes an attribute losslessly.
func (x XAttr) MarshalJSON() ([]byte, error) {
	j := xattrJSON{Value: x.Value}
	j.Name, j.NameB64 = splitBytes(x.Name)
	return json.Marshal(j)
}

// UnmarshalJSON decodes an attribute.
func (x *XAttr) UnmarshalJSON(b []byte) error {
	var j xattrJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	name, err := joinBytes(j.Name, j.NameB64)
	if err != nil {
		return fmt.Errorf("extended attribute name: %w", err)
	}
	*x = XAttr{Name: name, Value: j.Value}
	return nil
}

// UnixPerm is the node's mode as st_mode's permission bits: rwx for
// owner, group and others, and setuid (04000), setgid (02000) and sticky
// (01000).
func (n *Node) UnixPerm() uint32 {
	m := uint32(n.Mode.Perm())
	if n.Mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if n.Mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if n.Mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// nodeJSON carries the string fields that may hold arbitrary bytes: names
// and link targets are stored as JSON strings when they are valid UTF-8
// and as base64 otherwise, so no byte of a file name is ever lost. The
// node is embedded by value, so a whole tree decodes in one pass
// (DecodeTree): decoding []Node through Node.UnmarshalJSON would scan
// every node's bytes twice, once to find its end and once to decode it.
type nodeJSON struct {
	Name          string `json:"name,omitempty"`
	NameB64       string `json:"name_b64,omitempty"`
	LinkTarget    string `json:"linktarget,omitempty"`
	LinkTargetB64 string `json:"linktarget_b64,omitempty"`
	nodeAlias
}

type nodeAlias Node

func splitBytes(s string) (text, b64 string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return "", base64.StdEncoding.EncodeToString([]byte(s))
}

func joinBytes(text, b64 string) (string, error) {
	if b64 == "" {
		return text, nil
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	return string(b), err
}

// MarshalJSON encodes a node losslessly.
func (n Node) MarshalJSON() ([]byte, error) {
	j := nodeJSON{nodeAlias: nodeAlias(n)}
	j.Name, j.NameB64 = splitBytes(n.Name)
	j.LinkTarget, j.LinkTargetB64 = splitBytes(n.LinkTarget)
	return json.Marshal(j)
}

// UnmarshalJSON decodes a node.
func (n *Node) UnmarshalJSON(b []byte) error {
	var j nodeJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	return j.node(n)
}

// node stores the decoded node in n.
func (j *nodeJSON) node(n *Node) error {
	*n = Node(j.nodeAlias)
	var err error
	if n.Name, err = joinBytes(j.Name, j.NameB64); err != nil {
		return fmt.Errorf("node name: %w", err)
	}
	if n.LinkTarget, err = joinBytes(j.LinkTarget, j.LinkTargetB64); err != nil {
		return fmt.Errorf("node link target: %w", err)
	}
	return nil
}

// Tree is the content of a directory, sorted by name.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// ErrInvalidTree is wrapped by errors for trees that are well-formed
// JSON but describe something restore must refuse.
var ErrInvalidTree = errors.New("invalid tree")

// ValidName reports whether name can be a single path element: not
// empty, not "." or "..", no slash and no NUL. Restore relies on it to
// never write outside its target.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// DecodeTree parses and validates a tree blob.
func DecodeTree(b []byte) (*Tree, error) {
	nodes, ok := decodeCanonical(b)
	if !ok {
		var err error
		if nodes, err = decodeJSON(b); err != nil {
			return nil, err
		}
	}
	t := Tree{Nodes: nodes}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if !ValidName(n.Name) {
			return nil, fmt.Errorf("%w: entry %d has unsafe name %q", ErrInvalidTree, i, n.Name)
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return nil, fmt.Errorf("%w: entries not sorted or duplicated at %q", ErrInvalidTree, n.Name)
		}
		switch n.Type {
		case TypeDir:
			if n.Subtree == nil {
				return nil, fmt.Errorf("%w: directory %q has no subtree", ErrInvalidTree, n.Name)
			}
		case TypeFile, TypeSymlink, TypeDev, TypeCharDev, TypeFIFO:
		default:
			return nil, fmt.Errorf("%w: %q has unknown type %q", ErrInvalidTree, n.Name, n.Type)
		}
		if n.Type != TypeFile && len(n.Content) > 0 {
			return nil, fmt.Errorf("%w: %s %q has content", ErrInvalidTree, n.Type, n.Name)
		}
		n.Mode &= fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	}
	return &t, nil
}

// decodeJSON decodes a tree's node list with encoding/json, for the
// trees decodeCanonical leaves to it.
func decodeJSON(b []byte) ([]Node, error) {
	var wire struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidTree, err)
	}
	nodes := make([]Node, len(wire.Nodes))
	for i := range wire.Nodes {
		if err := wire.Nodes[i].node(&nodes[i]); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrInvalidTree, i, err)
		}
	}
	return nodes, nil
}

// Encode returns the canonical encoding of the tree.
func (t *Tree) Encode() ([]byte, error) {
	if b, ok := encodeCanonical(t); ok {
		return b, nil
	}
	return json.Marshal(t)
}
