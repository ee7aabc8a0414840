package snapshot

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"golang.org/x/sync/errgroup"
)

// ManifestVersion is the version of the manifest encoding.
const ManifestVersion = 1

// Manifest is a snapshot's metadata, sealed with the metadata key. Saving
// it is the commit point of a backup.
type Manifest struct {
	Version        int           `json:"version"`
	Time           time.Time     `json:"time"`
	Host           string        `json:"host"`
	Username       string        `json:"username,omitempty"`
	Paths          []string      `json:"paths"`
	Tags           []string      `json:"tags,omitempty"`
	Tree           chunkstore.ID `json:"tree"`
	Summary        Summary       `json:"summary"`
	ProgramVersion string        `json:"program_version,omitempty"`
	// Original is the snapshot this one is a copy of with another tree:
	// repaired (RepairSnapshots) or rewritten (RewriteSnapshots), as
	// OriginalBy says.
	Original *chunkstore.ID `json:"original,omitempty"`
	// OriginalBy is what made the copy: OriginalByRepair (also when
	// empty, as repair wrote no such field before rewrite existed) or
	// OriginalByRewrite.
	OriginalBy string `json:"original_by,omitempty"`
	// CopiedFrom, on a snapshot 'lifeboat copy' made, names the
	// snapshot it is a copy of, in the repository that snapshot was
	// backed up to (for a copy of a copy, the first one). Retag sets it
	// too: a retagged snapshot names its first ID, its origin.
	CopiedFrom *CopyOrigin `json:"copied_from,omitempty"`
}

// encodeManifest encodes m as JSON, with the exact bytes of a host,
// paths or tags that are not UTF-8 in "host_b64", "paths_b64" and
// "tags_b64" beside them: a JSON string cannot carry such bytes
// (encoding/json writes U+FFFD for each), so a backup of /srv/caf\xe9
// recorded /srv/caf\uFFFD, which --path never matched, dump without PATH
// could not find, and forget grouped with a backup of /srv/caf\xe8,
// keeping the newest of the two paths' snapshots only. Readers that do
// not know the fields read the strings beside them, as before.
func encodeManifest(m Manifest) ([]byte, error) {
	return json.Marshal(struct {
		Manifest
		manifestRaw
	}{m, manifestRaw{HostB64: rawBytes(m.Host), PathsB64: rawList(m.Paths), TagsB64: rawList(m.Tags)}})
}

// unmarshalManifest decodes what encodeManifest encodes.
func unmarshalManifest(b []byte, m *Manifest) error {
	var in struct {
		Manifest
		manifestRaw
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*m = in.Manifest
	if in.HostB64 != "" {
		h, err := base64.StdEncoding.DecodeString(in.HostB64)
		if err != nil {
			return fmt.Errorf("host_b64: %w", err)
		}
		m.Host = string(h)
	}
	for _, f := range []struct {
		name string
		raw  []string
		out  []string
	}{{"paths_b64", in.PathsB64, m.Paths}, {"tags_b64", in.TagsB64, m.Tags}} {
		if f.raw == nil {
			continue
		}
		if len(f.raw) != len(f.out) {
			return fmt.Errorf("%s holds %d entries for %d", f.name, len(f.raw), len(f.out))
		}
		for i, r := range f.raw {
			v, err := base64.StdEncoding.DecodeString(r)
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			f.out[i] = string(v)
		}
	}
	return nil
}

// manifestRaw holds the exact bytes of a manifest's strings that are
// not UTF-8 (MarshalJSON).
type manifestRaw struct {
	HostB64  string   `json:"host_b64,omitempty"`
	PathsB64 []string `json:"paths_b64,omitempty"` // every path, when one is not UTF-8
	TagsB64  []string `json:"tags_b64,omitempty"`  // every tag, when one is not UTF-8
}

// rawBytes is s in base64 if it is not UTF-8, or "".
func rawBytes(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// rawList is every string of l in base64 if one is not UTF-8, or nil.
func rawList(l []string) []string {
	if !slices.ContainsFunc(l, func(s string) bool { return !utf8.ValidString(s) }) {
		return nil
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = base64.StdEncoding.EncodeToString([]byte(s))
	}
	return out
}

// Values of Manifest.OriginalBy.
const (
	OriginalByRepair  = "repair"
	OriginalByRewrite = "rewrite"
)

// RepairOf reports whether s is a repaired copy (RepairSnapshots) of the
// snapshot it names as its original.
func (s *Snapshot) RepairOf() (chunkstore.ID, bool) {
	if s.Original == nil || s.OriginalBy != "" && s.OriginalBy != OriginalByRepair {
		return chunkstore.ID{}, false
	}
	return *s.Original, true
}

// CopyOrigin names a snapshot in a repository.
type CopyOrigin struct {
	Repository string        `json:"repository"` // the repository's ID (its config's "id")
	Snapshot   chunkstore.ID `json:"snapshot"`
}

// Origin is the snapshot s is, or is a copy of, in the repository it
// was backed up to; repoID is the ID of the repository s is in.
func (s *Snapshot) Origin(repoID string) CopyOrigin {
	if s.CopiedFrom != nil {
		return *s.CopiedFrom
	}
	return CopyOrigin{Repository: repoID, Snapshot: s.ID}
}

// Summary records what a backup did.
type Summary struct {
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	FilesNew        uint64    `json:"files_new"`
	FilesChanged    uint64    `json:"files_changed"`
	FilesUnmodified uint64    `json:"files_unmodified"`
	Dirs            uint64    `json:"dirs"`
	BytesProcessed  uint64    `json:"bytes_processed"` // size of all files in the snapshot
	BytesRead       uint64    `json:"bytes_read"`      // bytes read from disk (new and changed files)
	BytesAdded      uint64    `json:"bytes_added"`     // bytes stored in new packs
	BlobsAdded      uint64    `json:"blobs_added"`
	Errors          uint64    `json:"errors"` // unreadable entries; > 0 makes the snapshot partial
	// FilesChangedWhileRead counts the files saved as they were read
	// while they changed: each is a warning (in Errors) unless it was
	// expected to change (BackupOptions.Changing).
	FilesChangedWhileRead uint64 `json:"files_changed_while_read,omitempty"`
}

// Snapshot is a manifest with its ID.
type Snapshot struct {
	ID chunkstore.ID
	Manifest
}

func decodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	// The version first: a newer manifest may change what the other
	// fields hold, and must read as newer, not as damaged.
	var v struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(b, &v) == nil && v.Version > ManifestVersion {
		return m, fmt.Errorf("manifest version %d (this release reads %d): %w", v.Version, ManifestVersion, chunkstore.ErrNewerFormat)
	}
	if err := unmarshalManifest(b, &m); err != nil {
		return m, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Version != ManifestVersion {
		return m, fmt.Errorf("manifest version %d not supported (this lifeboat reads %d)", m.Version, ManifestVersion)
	}
	if m.Tree.IsNull() {
		return m, errors.New("manifest has no tree")
	}
	return m, nil
}

// Forget removes a snapshot's manifest (its data stays until prune). The
// error names the object.
func Forget(ctx context.Context, repo *chunkstore.Repository, id chunkstore.ID) error {
	name := chunkstore.SnapshotsPrefix + id.String()
	if err := repo.Store().Delete(ctx, name); err != nil {
		return fmt.Errorf("forget snapshot %s: delete %s: %w", id.Short(), name, err)
	}
	repo.Uncache(name)
	return nil
}

// Save stores a manifest and returns the snapshot ID.
func Save(ctx context.Context, repo *chunkstore.Repository, m Manifest) (chunkstore.ID, error) {
	m.Version = ManifestVersion
	b, err := encodeManifest(m)
	if err != nil {
		return chunkstore.ID{}, err
	}
	return repo.SaveMeta(ctx, chunkstore.KindSnapshot, b)
}

// Load reads one snapshot.
func Load(ctx context.Context, repo *chunkstore.Repository, id chunkstore.ID) (*Snapshot, error) {
	b, err := repo.LoadMeta(ctx, chunkstore.KindSnapshot, id)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id.Short(), err)
	}
	return &Snapshot{ID: id, Manifest: m}, nil
}

// UnreadableError is List's error for a snapshot whose manifest could
// not be read; ID is its name.
type UnreadableError struct {
	ID  chunkstore.ID
	Err error
}

func (e *UnreadableError) Error() string { return e.Err.Error() }
func (e *UnreadableError) Unwrap() error { return e.Err }

// Damaged returns the IDs, among List's errors, of the manifests that
// were read and found damaged (ErrCorrupt), not merely unreachable.
func Damaged(errs []error) map[chunkstore.ID]bool {
	out := map[chunkstore.ID]bool{}
	for _, e := range errs {
		var ue *UnreadableError
		if errors.As(e, &ue) && errors.Is(ue.Err, chunkstore.ErrCorrupt) {
			out[ue.ID] = true
		}
	}
	return out
}

// List loads every snapshot, oldest first. A snapshot that cannot be
// read is returned in the error list rather than silently dropped.
func List(ctx context.Context, repo *chunkstore.Repository) ([]*Snapshot, []error, error) {
	ids, err := repo.ListMeta(ctx, chunkstore.KindSnapshot)
	if err != nil {
		return nil, nil, err
	}
	var (
		mu   sync.Mutex
		out  []*Snapshot
		errs []error
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			s, err := Load(gctx, repo, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				errs = append(errs, &UnreadableError{ID: id, Err: err})
				return nil
			}
			out = append(out, s)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out, errs, nil
}

// Filter selects snapshots by host and tags (all given tags must be
// present) and paths.
type Filter struct {
	Hosts []string
	Tags  []string
	Paths []string
	// ExactTags selects only snapshots whose tags are Tags, no more (in
	// any order): a policy's own snapshots, not a manual backup of the
	// same paths with a tag of its own. Without Tags, only untagged ones.
	ExactTags bool
}

// IsZero reports whether f selects every snapshot.
func (f Filter) IsZero() bool { return len(f.Hosts)+len(f.Tags)+len(f.Paths) == 0 && !f.ExactTags }

// Match reports whether s passes the filter.
func (f Filter) Match(s *Snapshot) bool {
	if len(f.Hosts) > 0 && !slices.Contains(f.Hosts, s.Host) {
		return false
	}
	for _, t := range f.Tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	if f.ExactTags {
		for _, t := range s.Tags {
			if !slices.Contains(f.Tags, t) {
				return false
			}
		}
	}
	for _, p := range f.Paths {
		if !slices.Contains(s.Paths, p) {
			return false
		}
	}
	return true
}

// ErrNoSnapshot is returned by Find when nothing matches.
var ErrNoSnapshot = errors.New("no matching snapshot")

// Find resolves "latest", a full ID or a unique ID prefix among list
// (which must be sorted oldest first).
func Find(list []*Snapshot, ref string, f Filter) (*Snapshot, error) {
	var cand []*Snapshot
	for _, s := range list {
		if f.Match(s) {
			cand = append(cand, s)
		}
	}
	if ref == "latest" {
		if len(cand) == 0 && len(list) > 0 {
			return nil, fmt.Errorf("%w: none of the repository's %d snapshots matches%s; list them with 'lifeboat snapshots'", ErrNoSnapshot, len(list), f.Describe())
		}
		if len(cand) == 0 {
			return nil, fmt.Errorf("%w: the repository has no snapshots", ErrNoSnapshot)
		}
		return cand[len(cand)-1], nil
	}
	ref = strings.ToLower(ref)
	if len(ref) < 4 {
		return nil, fmt.Errorf("snapshot ID %q is too short: give at least 4 hex digits or 'latest'", ref)
	}
	var found *Snapshot
	for _, s := range cand {
		if strings.HasPrefix(s.ID.String(), ref) {
			if found != nil {
				return nil, fmt.Errorf("snapshot ID prefix %q is ambiguous (%s, %s, ...): give more digits", ref, found.ID.Short(), s.ID.Short())
			}
			found = s
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no snapshot ID starts with %q%s; list them with 'lifeboat snapshots'", ErrNoSnapshot, ref, f.Describe())
	}
	return found, nil
}

// Describe says how f narrows a listing, as " (filtered by ...)", or
// "" for no filter.
func (f Filter) Describe() string {
	var parts []string
	if len(f.Hosts) > 0 {
		parts = append(parts, "host "+strings.Join(f.Hosts, ","))
	}
	if len(f.Tags) > 0 {
		parts = append(parts, "tags "+strings.Join(f.Tags, ","))
	}
	if len(f.Paths) > 0 {
		parts = append(parts, "path "+strings.Join(f.Paths, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (filtered by " + strings.Join(parts, ", ") + ")"
}

// LoadTree reads and validates a tree blob. It needs an identity.
func LoadTree(ctx context.Context, repo *chunkstore.Repository, id chunkstore.ID) (*Tree, error) {
	b, err := repo.LoadBlob(ctx, chunkstore.TreeBlob, id)
	if err != nil {
		return nil, err
	}
	return decodeTree(id, b)
}

// LoadTreeAnyCopy is LoadTree reading around a damaged copy of the tree
// (chunkstore.Repository.LoadBlobAnyCopy), for readers that want the
// data back: restore, dump, copy, drills, and ls, find and diff (Walk,
// Lookup, Finder, Diff). check, prune and repair use
// LoadTree, which reports the damage.
func LoadTreeAnyCopy(ctx context.Context, repo *chunkstore.Repository, id chunkstore.ID) (*Tree, error) {
	b, err := repo.LoadBlobAnyCopy(ctx, chunkstore.TreeBlob, id)
	if err != nil {
		return nil, err
	}
	return decodeTree(id, b)
}

func decodeTree(id chunkstore.ID, b []byte) (*Tree, error) {
	t, err := DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", id.Short(), err)
	}
	return t, nil
}

// Retag saves snapshot s again with tags in place of its own and then
// removes s, and returns the new snapshot: a manifest is never
// modified, so a snapshot's tags change with its ID. The new manifest
// records s's origin (CopiedFrom: s itself, unless s is a copy), so
// 'lifeboat copy' still knows it for the snapshot it copied. The new manifest is
// saved first, so at every moment one of the two references the data
// (a prune that lists snapshots meanwhile sees it). Tags equal to s's
// (in any order) change nothing: s itself is returned. A snapshot
// forgotten since s was listed is not saved again: Retag removes the
// copy it saved and fails.
func Retag(ctx context.Context, repo *chunkstore.Repository, s *Snapshot, tags []string) (*Snapshot, error) {
	tags = slices.Compact(slices.Sorted(slices.Values(tags)))
	if slices.Equal(tags, slices.Compact(slices.Sorted(slices.Values(s.Tags)))) {
		return s, nil
	}
	m := s.Manifest
	m.Tags = tags
	if len(tags) == 0 {
		m.Tags = nil
	}
	// The snapshot stays the one it was for copies: its origin is its
	// first ID (copy skips it where it has been copied, and copies of it
	// are not made again).
	if m.CopiedFrom == nil {
		origin := s.Origin(repo.Config().ID)
		m.CopiedFrom = &origin
	}
	id, err := Save(ctx, repo, m)
	if err != nil {
		return nil, fmt.Errorf("save snapshot %s with its new tags: %w", s.ID.Short(), err)
	}
	n := &Snapshot{ID: id, Manifest: m}
	n.Version = ManifestVersion
	// s may have been forgotten since it was listed (a forget, 'rewrite
	// --forget' or another tag meanwhile; deleting a missing object is
	// no error): the new manifest would bring it back, and a prune that
	// listed the snapshots before it was saved may have deleted its data.
	// Checked after the save, so that a forget before this point is seen.
	// Manifest names are random (sealed with a fresh nonce): the one
	// removed here is ours alone.
	old := chunkstore.SnapshotsPrefix + s.ID.String()
	if _, err := repo.Store().Stat(ctx, old); errors.Is(err, chunkstore.ErrNotFound) {
		if err := Forget(ctx, repo, id); err != nil {
			return nil, fmt.Errorf("snapshot %s was forgotten meanwhile (by a forget, rewrite or tag running at the same time), and its copy with the new tags %s could not be removed (forget %s): %w", s.ID.Short(), id.Short(), id.Short(), err)
		}
		return nil, fmt.Errorf("snapshot %s was forgotten meanwhile (by a forget, rewrite or tag running at the same time): not retagged; list the snapshots again", s.ID.Short())
	} else if err != nil {
		return n, fmt.Errorf("snapshot %s was saved with the new tags as %s, but whether the old one is still there could not be checked, so both are kept (forget %s once checked): %w", s.ID.Short(), id.Short(), s.ID.Short(), err)
	}
	if err := Forget(ctx, repo, s.ID); err != nil {
		return n, fmt.Errorf("snapshot %s was saved with the new tags as %s, but the old one could not be removed (forget %s): %w", s.ID.Short(), id.Short(), s.ID.Short(), err)
	}
	return n, nil
}

// TagProblem says why t cannot be a tag, or returns "": empty, with a
// comma (the filters' separator), with a space around it or a control
// character in it. Such a tag could not be named again: ' hold' shows as
// "hold" in a listing, and 'forget --keep-tag hold' does not protect it.
func TagProblem(t string) string {
	switch {
	case strings.TrimSpace(t) == "":
		return "empty"
	case strings.Contains(t, ","):
		return "with a comma"
	case strings.TrimSpace(t) != t:
		return "with a space around it"
	case strings.IndexFunc(t, unicode.IsControl) >= 0:
		return "with a control character"
	}
	return ""
}
