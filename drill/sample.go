package drill

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// entry is one node of the snapshot.
type entry struct {
	path string // slash-separated, snapshot-relative
	node *snapshot.Node
}

type unreadable struct {
	path string
	err  error
}

// plan is the snapshot's content, read before the restore.
type plan struct {
	entries    []*entry // walk order, parents first
	files      int64    // regular files (every name of a hard link)
	bytes      int64    // their content, each inode once
	unreadable []unreadable
}

// selection is what a drill restores and verifies.
type selection struct {
	entries  []*entry
	patterns []string // restore include patterns; nil = everything
}

// buildPlan walks the snapshot's trees. A subtree whose listing cannot
// be read is recorded and skipped (the restore reports it too); only the
// root tree is required.
func buildPlan(ctx context.Context, repo *chunkstore.Repository, snap *snapshot.Snapshot) (*plan, error) {
	pl := &plan{}
	seen := map[[2]uint64]bool{}
	var walk func(prefix string, id chunkstore.ID) error
	walk = func(prefix string, id chunkstore.ID) error {
		tree, err := snapshot.LoadTreeAnyCopy(ctx, repo, id)
		if err != nil {
			if prefix == "" || ctx.Err() != nil {
				return err
			}
			pl.unreadable = append(pl.unreadable, unreadable{prefix, fmt.Errorf("directory listing (tree %s) unreadable, its contents were not restored: %w", id.Short(), err)})
			return nil
		}
		for i := range tree.Nodes {
			n := &tree.Nodes[i]
			p := path.Join(prefix, n.Name)
			pl.entries = append(pl.entries, &entry{path: p, node: n})
			switch n.Type {
			case snapshot.TypeFile:
				pl.files++
				if n.Links > 1 {
					key := [2]uint64{n.DeviceID, n.Inode}
					if seen[key] {
						break
					}
					seen[key] = true
				}
				pl.bytes += int64(n.Size)
			case snapshot.TypeDir:
				if n.Subtree != nil {
					if err := walk(p, *n.Subtree); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := walk("", snap.Tree); err != nil {
		return nil, err
	}
	return pl, nil
}

// selectAll restores and verifies the whole snapshot.
func (pl *plan) selectAll() selection { return selection{entries: pl.entries} }

// sample chooses round(pct% of the regular files) (at least one), plus
// every symlink and special file and the directories above what was
// chosen. The choice is a pure function of the drill ID and the paths:
// the files whose keyed hash of (id, path) is smallest, so the same ID
// picks the same files and another ID picks others. It returns the
// selection and the bytes it restores.
func (pl *plan) sample(id string, pct float64) (selection, int64) {
	type cand struct {
		e *entry
		h uint64
	}
	var files []cand
	for _, e := range pl.entries {
		if e.node.Type == snapshot.TypeFile {
			files = append(files, cand{e, sampleHash(id, e.path)})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].h < files[j].h })
	k := int(math.Round(float64(len(files)) * pct / 100))
	if k == 0 && len(files) > 0 {
		k = 1
	}
	chosen := map[string]bool{}
	for _, c := range files[:k] {
		chosen[c.e.path] = true
	}
	var sel selection
	var need int64
	seen := map[[2]uint64]bool{}
	dirs := map[string]bool{}
	for _, e := range pl.entries {
		switch e.node.Type {
		case snapshot.TypeDir:
			continue
		case snapshot.TypeFile:
			if !chosen[e.path] {
				continue
			}
			key := [2]uint64{e.node.DeviceID, e.node.Inode}
			if e.node.Links < 2 || !seen[key] {
				seen[key] = true
				need += int64(e.node.Size)
			}
		}
		sel.patterns = append(sel.patterns, escapePattern(e.path))
		for d := path.Dir(e.path); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, e := range pl.entries {
		if e.node.Type == snapshot.TypeDir && !dirs[e.path] {
			continue
		}
		if e.node.Type == snapshot.TypeFile && !chosen[e.path] {
			continue
		}
		sel.entries = append(sel.entries, e)
	}
	if sel.patterns == nil {
		// Nothing but directories: restore nothing rather than everything.
		sel.patterns = []string{escapePattern("\x00none")}
	}
	return sel, need
}

func sampleHash(id, p string) uint64 {
	h := sha256.Sum256([]byte("lifeboat drill sample\x00" + id + "\x00" + p))
	return binary.BigEndian.Uint64(h[:8])
}

// escapePattern quotes p for snapshot.Pattern, so a name holding *, ?, [
// or \ matches only itself (every "*" of a name "**" is escaped, so
// it is no "**" element).
func escapePattern(p string) string {
	var b strings.Builder
	for _, c := range []byte(p) {
		switch c {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// parseSnapshotRef splits Options.Snapshot. within > 0 means
// "random-within"; otherwise ref is "latest" or an ID (prefix).
func parseSnapshotRef(s string) (ref string, within time.Duration, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "latest" {
		return "latest", 0, nil
	}
	rest, ok := strings.CutPrefix(s, "random-within")
	if !ok {
		return s, 0, nil
	}
	rest = strings.TrimLeft(rest, ": ")
	d, err := parseDays(rest)
	if err != nil || d <= 0 {
		return "", 0, fmt.Errorf("snapshot %q: want random-within:DURATION, e.g. random-within:30d", s)
	}
	return "", d, nil
}

// parseDays parses a Go duration that may also use d (days) and w
// (weeks), e.g. "30d", "1w2d", "36h".
func parseDays(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		j := i
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		num, unit := s[:i], s[i:j]
		s = s[j:]
		if num == "" {
			return 0, fmt.Errorf("invalid duration: expected a number before %q", unit)
		}
		var mult time.Duration
		switch unit {
		case "d":
			mult = 24 * time.Hour
		case "w":
			mult = 7 * 24 * time.Hour
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, err
			}
			total += d
			continue
		}
		var f float64
		if _, err := fmt.Sscanf(num, "%g", &f); err != nil {
			return 0, fmt.Errorf("invalid number %q", num)
		}
		total += time.Duration(f * float64(mult))
	}
	return total, nil
}

// selectSnapshot resolves Options.Snapshot. latest reports whether the
// snapshot was chosen as the newest (only then is an old snapshot an RPO
// failure).
func (d *drill) selectSnapshot(ctx context.Context) (*snapshot.Snapshot, bool, error) {
	ref, within, _ := parseSnapshotRef(d.opts.Snapshot)
	list, bad, err := snapshot.List(ctx, d.repo)
	if err != nil {
		return nil, false, fmt.Errorf("list snapshots: %w", err)
	}
	for _, e := range bad {
		d.log.Warn("unreadable snapshot", "err", e)
	}
	if within > 0 {
		s, err := pickWithin(list, d.opts.Filter, d.res.StartedAt, within, d.opts.ID)
		return s, false, err
	}
	s, err := snapshot.Find(list, ref, d.opts.Filter)
	if err != nil {
		for _, e := range bad {
			if ref != "latest" && strings.Contains(e.Error(), strings.ToLower(ref)) {
				return nil, false, fmt.Errorf("snapshot %s cannot be read: %w", ref, e)
			}
		}
		if len(bad) > 0 {
			err = fmt.Errorf("%w (%d snapshot manifests could not be read, first: %v)", err, len(bad), bad[0])
		}
		return nil, false, err
	}
	if ref == "latest" {
		// An unreadable manifest's time is unknown: it may be the newest
		// snapshot, and a drill of an older one would pass for the
		// policy's latest (as 'restore latest' refuses).
		var unsure []string
		for _, e := range bad {
			if u, ok := errors.AsType[*snapshot.UnreadableError](e); ok && !errors.Is(e, chunkstore.ErrNotFound) {
				unsure = append(unsure, u.ID.Short())
			}
		}
		if len(unsure) > 0 {
			d.fail(ReasonSnapshot, "", "snapshot %s cannot be read and may be newer than %s, which was drilled as the latest: run 'lifeboat check', and 'lifeboat forget' it by its full ID if it is lost",
				strings.Join(unsure, ", "), s.ID.Short())
		}
	}
	return s, ref == "latest", nil
}

// pickWithin chooses uniformly among the snapshots matching f that are
// newer than now-within, seeded by id so the same drill picks the same
// snapshot.
func pickWithin(list []*snapshot.Snapshot, f snapshot.Filter, now time.Time, within time.Duration, id string) (*snapshot.Snapshot, error) {
	cutoff := now.Add(-within)
	var cand []*snapshot.Snapshot
	for _, s := range list {
		if f.Match(s) && s.Time.After(cutoff) {
			cand = append(cand, s)
		}
	}
	if len(cand) == 0 {
		return nil, fmt.Errorf("%w: none newer than %s (random-within %s)", snapshot.ErrNoSnapshot, cutoff.UTC().Format(time.RFC3339), fmtDuration(within))
	}
	return cand[sampleHash(id, "random-within")%uint64(len(cand))], nil
}
