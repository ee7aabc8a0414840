package chunkstore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"
)

// ErrNotRepository means the store holds no lifeboat config.
var ErrNotRepository = errors.New("not a lifeboat repository")

// ErrNoIdentity is returned by reads that need an identity when the
// repository was opened with a writer key only.
var ErrNoIdentity = errors.New("this operation needs the repository identity (--identity); a writer key can only back up and list snapshots")

// ErrAlreadyInitialized is returned by Init on a non-empty store.
var ErrAlreadyInitialized = errors.New("repository already initialized")

// ErrWrongKey marks credentials that are not this repository's: an
// identity that is not one of its recipients, a writer key made for
// another repository.
var ErrWrongKey = errors.New("wrong key")

// ErrNotRecipient marks a pack whose data key is not wrapped to any of
// the identities given: intact, but theirs to read (a pack from before
// 'lifeboat key add' changed the recipients, until a rewrap).
var ErrNotRecipient = errors.New("not a recipient of this pack's key")

// Credentials open a repository. Exactly one of Identities (full access)
// or Writer (backup only) is set.
type Credentials struct {
	Identities []age.Identity
	Writer     *Secrets
}

// Options tune an opened repository.
type Options struct {
	// CacheDir keeps copies of immutable metadata objects (index and
	// snapshot files) so repeated commands do not download them again.
	// Empty disables the cache.
	CacheDir string
	Logger   *slog.Logger
}

// Repository is an opened repository.
type Repository struct {
	store   Store
	config  Config
	secrets *Secrets
	ids     []age.Identity
	hasher  *ChunkHasher
	index   *Index
	log     *slog.Logger
	cache   string
	// storeOnly makes reads ignore the on-disk cache (DistrustCache).
	storeOnly atomic.Bool

	keyMu sync.Mutex
	keys  map[ID]*[32]byte

	// genChecked is when checkGeneration last found the credential
	// current (time since processStart; 0: never).
	genChecked atomic.Int64

	trees treePackCache

	indexFiles    int
	indexRead     map[ID]bool // index files already read (good or damaged)
	indexProblems []Problem
	indexLoaded   atomic.Bool
	indexOnce     sync.Mutex

	// strayKeys are the objects under keys/ that the last listing of
	// the envelopes left out (not named as envelopes, or too large to
	// read): check reports them without listing keys/ again.
	strayMu   sync.Mutex
	strayKeys []Problem

	// indexNewer is the first index file LoadIndex found written by a
	// newer lifeboat, or nil; EnsureIndex reads it without the lock.
	indexNewer atomic.Pointer[Problem]
}

// InitOptions configure a new repository.
type InitOptions struct {
	Recipients []string // age public keys; at least one
	PackSize   int      // 0 = DefaultPackSize
	Now        time.Time
	// Chunking, if set, is another repository's (Repository.Chunking):
	// the new one then cuts and names blobs exactly as that one does, so
	// snapshots can be copied from it blob by blob. Its own metadata key,
	// repository ID and recipients are new all the same.
	Chunking *Chunking

	unsigned bool // as releases before signed key envelopes (tests)
}

// Chunking is what decides where a repository cuts file contents into
// blobs and what it names them: the chunker's polynomial and sizes, and
// the key of the keyed hash. Two repositories with the same Chunking give
// the same bytes the same blobs, with the same IDs, and every tree the
// same ID; 'lifeboat copy' depends on it.
type Chunking struct {
	Key        [32]byte
	Polynomial chunker.Pol
	Min, Max   uint
	AvgBits    int
}

// Chunking returns the repository's chunking parameters. They hold the
// chunk-ID key: a writer's secret, to be handled like the writer key.
func (r *Repository) Chunking() Chunking {
	return Chunking{Key: r.secrets.ChunkKey, Polynomial: r.secrets.Polynomial,
		Min: r.config.ChunkMin, Max: r.config.ChunkMax, AvgBits: r.config.ChunkAvgBits}
}

// SameBlobIDs reports whether the two repositories name blobs and trees
// alike: the same chunk-ID key. (Their chunkers may still differ in
// polynomial or sizes, which only costs deduplication.)
func SameBlobIDs(a, b *Repository) bool {
	return a.secrets.ChunkKey == b.secrets.ChunkKey
}

// Init creates a repository in an empty store and returns its secrets
// (to be written as the writer key). It refuses a store that already
// holds a config, keys or data.
func Init(ctx context.Context, st Store, opts InitOptions) (*Secrets, error) {
	if len(opts.Recipients) == 0 {
		return nil, errors.New("init: at least one recipient is required")
	}
	recipients, err := NormalizeRecipients(opts.Recipients)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	found, err := lifeboatObjects(ctx, st, ConfigName, KeysPrefix, DataPrefix, IndexPrefix, SnapshotsPrefix)
	if err != nil {
		return nil, fmt.Errorf("init: check %s is empty: %w", st.Location(), err)
	}
	if found != "" {
		return nil, fmt.Errorf("%w at %s (found %s); refusing to overwrite", ErrAlreadyInitialized, st.Location(), strings.TrimSuffix(found, "/"))
	}
	var rid [32]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return nil, err
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.PackSize == 0 {
		opts.PackSize = DefaultPackSize
	}
	cfg := Config{
		Format: "lifeboat", Version: FormatVersion, ID: hex.EncodeToString(rid[:]),
		Created:  opts.Now.UTC().Format(time.RFC3339),
		ChunkMin: DefaultChunkMin, ChunkMax: DefaultChunkMax, ChunkAvgBits: DefaultChunkAvgBits,
		PackSize: opts.PackSize, Compression: "zstd",
	}
	if c := opts.Chunking; c != nil {
		cfg.ChunkMin, cfg.ChunkMax, cfg.ChunkAvgBits = c.Min, c.Max, c.AvgBits
	}
	signerPub, signerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if !opts.unsigned {
		cfg.KeySigner = base64.StdEncoding.EncodeToString(signerPub)
	}
	cfgBytes, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := ParseConfig(cfgBytes); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	sec, err := newSecrets(cfg.ID, recipients)
	if err != nil {
		return nil, err
	}
	if c := opts.Chunking; c != nil {
		sec.ChunkKey, sec.Polynomial = c.Key, c.Polynomial
	}
	sec.ConfigHash = Hash(cfgBytes)
	if !opts.unsigned {
		sec.SigningKey = signerKey.Seed()
	}
	env, err := sealEnvelope(sec)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	envName := envelopeName(Hash(env), 0)
	if err := st.Put(ctx, envName, env); err != nil {
		// A put whose answer was lost may have stored it (see below).
		if derr := st.Delete(ctx, envName); derr != nil && !errors.Is(derr, ErrNotFound) {
			return nil, fmt.Errorf("init: write key envelope: %w; it may have been written all the same, and removing it failed (%v): remove %s before running init at %s again", err, derr, envName, st.Location())
		}
		return nil, fmt.Errorf("init: write key envelope: %w", err)
	}
	// The config is written last: it is what makes the store a repository.
	if err := st.Put(ctx, ConfigName, cfgBytes); err != nil {
		// A put whose answer was lost may have stored it: then the
		// repository exists, and the caller must get its secrets.
		if b, gerr := st.Get(ctx, ConfigName, 0, -1); gerr == nil && bytes.Equal(b, cfgBytes) {
			return sec.WriterSecrets(), nil
		}
		// Left alone, the envelope would make the store look like a
		// repository that lost its config: init would refuse it, and
		// every command would send the user looking for a config that
		// never was.
		if derr := st.Delete(ctx, envName); derr != nil && !errors.Is(derr, ErrNotFound) {
			return nil, fmt.Errorf("init: write config: %w; the key envelope %s written before it could not be removed (%v): remove it before running init at %s again", err, envName, derr, st.Location())
		}
		return nil, fmt.Errorf("init: write config: %w", err)
	}
	return sec.WriterSecrets(), nil
}

var errStopList = errors.New("stop listing")

// lifeboatObjects returns the first of prefixes under which st holds an
// object, or "" if it holds none.
func lifeboatObjects(ctx context.Context, st Store, prefixes ...string) (string, error) {
	for _, prefix := range prefixes {
		found := false
		err := st.List(ctx, prefix, func(ObjectInfo) error { found = true; return errStopList })
		if err != nil && !errors.Is(err, errStopList) {
			return "", err
		}
		if found {
			return prefix, nil
		}
	}
	return "", nil
}

// configLost is Open's error for a store whose config is missing or
// unreadable (what says which): a store that holds lifeboat's other
// objects is a damaged repository, not a place to run init in.
func configLost(ctx context.Context, st Store, what string, notRepo error) error {
	// Named as lifeboat names them: a directory that merely has a data/
	// is no repository.
	var found string
	for _, c := range []struct {
		prefix string
		ours   func(string) bool
	}{
		{KeysPrefix, func(n string) bool { _, ok := parseEnvelopeName(n); return ok }},
		{DataPrefix, func(n string) bool { _, ok := ParsePackName(n); return ok }},
	} {
		err := st.List(ctx, c.prefix, func(oi ObjectInfo) error {
			if c.ours(oi.Name) {
				found = oi.Name
				return errStopList
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopList) {
			return notRepo
		}
		if found != "" {
			break
		}
	}
	if found == "" {
		return notRepo
	}
	return fmt.Errorf("%w: the config object of %s %s, but %s is there: this is a lifeboat repository that lost its config; put config back from a copy of the bucket (object versioning, a replica of this bucket); 'lifeboat init' will not overwrite it", ErrCorrupt, st.Location(), what, found)
}

// Open reads the config and unlocks the repository with creds.
func Open(ctx context.Context, st Store, creds Credentials, opts Options) (*Repository, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfgBytes, err := st.Get(ctx, ConfigName, 0, -1)
	if errors.Is(err, ErrNotFound) {
		return nil, configLost(ctx, st, "is missing", fmt.Errorf("%w: no config at %s; create one with 'lifeboat init' or check --repo", ErrNotRepository, st.Location()))
	}
	if err != nil {
		return nil, fmt.Errorf("read config at %s: %w", st.Location(), err)
	}
	cfg, err := ParseConfig(cfgBytes)
	if errors.Is(err, errConfigUnsupported) {
		return nil, fmt.Errorf("%s: %w", st.Location(), err)
	}
	if err != nil {
		return nil, configLost(ctx, st, fmt.Sprintf("is damaged (%v)", err), fmt.Errorf("%s: %w", st.Location(), err))
	}
	r := &Repository{store: st, config: cfg, ids: creds.Identities, index: NewIndex(), log: opts.Logger, keys: map[ID]*[32]byte{}}
	switch {
	case creds.Writer != nil:
		r.secrets = creds.Writer
	case len(creds.Identities) > 0:
		sec, err := r.unlock(ctx)
		if err != nil {
			return nil, err
		}
		r.secrets = sec
	default:
		return nil, errors.New("no credentials: pass --identity FILE (full access) or --key FILE (writer key)")
	}
	if r.secrets.RepoID != cfg.ID {
		return nil, fmt.Errorf("%w: the key belongs to repository %s…, but %s is repository %s…: use the key created for this repository", ErrWrongKey, r.secrets.RepoID[:12], st.Location(), cfg.ID[:12])
	}
	if r.secrets.ConfigHash != Hash(cfgBytes) {
		return nil, fmt.Errorf("%w: config at %s does not match the hash recorded in the key (damaged, tampered with or replaced): put config back from a copy of the bucket (object versioning, a replica); if the repository was created again there, use the credentials of the new one", ErrCorrupt, st.Location())
	}
	r.hasher = NewChunkHasher(r.secrets.ChunkKey)
	if opts.CacheDir != "" {
		r.cache = filepath.Join(opts.CacheDir, cfg.ID)
		now := time.Now()
		markCacheUsed(r.cache, now)
		sweepCacheTemp(r.log, opts.CacheDir, now)
		if r.CanRead() {
			if err := r.pinSigner(opts.CacheDir); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// ErrRepositoryChanged is returned when the repository at a location is
// not the one this machine's cache saw there (see pinSigner).
var ErrRepositoryChanged = errors.New("repository changed")

// pinPath is where the cache under cacheDir remembers the repository at
// location.
func pinPath(cacheDir, location string) string {
	loc := sha256.Sum256([]byte(location))
	return filepath.Join(cacheDir, "signers", hex.EncodeToString(loc[:]))
}

// Unpin forgets the repository the cache under cacheDir remembers at
// location: 'lifeboat init' calls it after creating a repository there.
func Unpin(cacheDir, location string) error {
	if err := os.Remove(pinPath(cacheDir, location)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// pinSigner remembers, per location, the repository ID and key signer the
// first time an identity opens it there, and refuses them when they have
// changed since. An identity knows nothing of a repository but what it
// reads there, so whoever can replace config and keys/ could present a
// signer (or a repository) of its own; on a machine that opened the
// repository before (a drill runner, an operator's workstation), this
// catches it.
func (r *Repository) pinSigner(cacheDir string) error {
	path := pinPath(cacheDir, r.store.Location())
	signer := r.config.KeySigner
	if signer == "" {
		signer = "none"
	}
	want := r.config.ID + " " + signer
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != want:
		return fmt.Errorf("%w: %s is repository %s with key signer %s, but this machine saw %q there before: its config and key envelopes may have been replaced to make you trust other recipients; find out who changed them. If the repository was knowingly created again there, run: rm %s", ErrRepositoryChanged, r.store.Location(), r.config.ID[:12], signer, strings.TrimSpace(string(b)), path)
	case err == nil:
		return nil
	}
	if werr := writeCacheFile(path, []byte(want+"\n")); werr != nil {
		r.log.Debug("could not remember the key signer", "err", werr)
	}
	return nil
}

// unlock opens the newest key envelope one of the identities is a
// recipient of. An older one it opens (left by an interrupted 'lifeboat
// key') serves to read; checkGeneration keeps it from writing.
func (r *Repository) unlock(ctx context.Context) (*Secrets, error) {
	envs, err := r.Envelopes(ctx)
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, fmt.Errorf("%w: %s has no key envelopes under keys/", ErrCorrupt, r.store.Location())
	}
	var lastErr error
	for _, e := range envs {
		b, err := r.store.Get(ctx, e.Name, 0, -1)
		if err != nil {
			lastErr = fmt.Errorf("read %s: %w", e.Name, err)
			continue
		}
		if Hash(b) != e.Hash {
			lastErr = fmt.Errorf("%w: %s does not match its hash", ErrCorrupt, e.Name)
			continue
		}
		sec, err := openEnvelope(b, r.config, e.Gen, r.ids)
		if err == nil {
			return sec, nil
		}
		if errors.Is(err, ErrUnsignedEnvelope) {
			r.log.Warn("ignoring a key envelope the repository's key signer did not sign; remove it unless you know who put it there", "name", e.Name)
			continue
		}
		var nm *age.NoIdentityMatchError
		if !errors.As(err, &nm) {
			lastErr = fmt.Errorf("open %s: %w", e.Name, err)
		}
	}
	if lastErr != nil {
		if errors.Is(lastErr, ErrCorrupt) {
			return nil, fmt.Errorf("%w; no key envelope under keys/ of %s that is intact opens with this identity: put back keys/ from a copy of the bucket (object versioning, a replica); 'lifeboat check --key WRITER_KEY' names every damaged object", lastErr, r.store.Location())
		}
		return nil, lastErr
	}
	return nil, fmt.Errorf("%w: the identity is not a recipient of repository %s (%s); use the identity created by 'lifeboat init' for it, or one added with 'lifeboat key add'", ErrWrongKey, r.config.ID[:12], r.store.Location())
}

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.config }

// Secrets returns the repository secrets (what a writer key holds).
func (r *Repository) Secrets() *Secrets { return r.secrets }

// Store returns the underlying store.
func (r *Repository) Store() Store { return r.store }

// Index returns the in-memory index (filled by LoadIndex).
func (r *Repository) Index() *Index { return r.index }

// CanRead reports whether the repository was opened with an identity.
func (r *Repository) CanRead() bool { return len(r.ids) > 0 }

// BlobID computes the keyed ID of a data chunk.
func (r *Repository) BlobID(data []byte) ID { return r.hasher.Sum(data) }

// TreeID computes the keyed ID of a tree blob.
func (r *Repository) TreeID(data []byte) ID { return r.hasher.SumType(TreeBlob, data) }

// PackName returns the object name of a pack.
func PackName(id ID) string {
	h := id.String()
	return DataPrefix + h[:2] + "/" + h
}

// ParsePackName extracts the ID from a pack object name.
func ParsePackName(name string) (ID, bool) {
	rest, ok := strings.CutPrefix(name, DataPrefix)
	if !ok || len(rest) != 3+2*IDSize || rest[2] != '/' || rest[:2] != rest[3:5] {
		return ID{}, false
	}
	id, err := ParseID(rest[3:])
	return id, err == nil
}

// ListMeta lists the IDs of sealed metadata objects of a kind. A listing
// of the snapshots also removes from the cache the copies of snapshots
// that are gone (forgotten here or on another machine).
func (r *Repository) ListMeta(ctx context.Context, kind MetaKind) ([]ID, error) {
	if err := kind.byID(); err != nil {
		return nil, err
	}
	listedAt := time.Now()
	var ids []ID
	err := r.store.List(ctx, kind.prefix(), func(oi ObjectInfo) error {
		id, err := ParseID(strings.TrimPrefix(oi.Name, kind.prefix()))
		if err != nil {
			r.log.Warn("ignoring unexpected object", "name", oi.Name)
			return nil
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", kind.prefix(), r.store.Location(), err)
	}
	if kind == KindSnapshot {
		r.pruneCache(kind, ids, listedAt)
	}
	return ids, nil
}

// SaveMeta seals plaintext and stores it; the ID is the hash of the stored bytes.
func (r *Repository) SaveMeta(ctx context.Context, kind MetaKind, plaintext []byte) (ID, error) {
	if err := kind.byID(); err != nil {
		return ID{}, err
	}
	sealed := sealMeta(&r.secrets.MetaKey, kind, plaintext)
	id := Hash(sealed)
	if err := r.store.Put(ctx, kind.prefix()+id.String(), sealed); err != nil {
		return id, fmt.Errorf("save %s %s: %w", kind, id.Short(), err)
	}
	r.cachePut(kind, id, sealed)
	return id, nil
}

// LoadMeta loads, checks and decrypts a metadata object.
func (r *Repository) LoadMeta(ctx context.Context, kind MetaKind, id ID) ([]byte, error) {
	if err := kind.byID(); err != nil {
		return nil, err
	}
	name := kind.prefix() + id.String()
	sealed := r.cacheGet(kind, id)
	if sealed == nil {
		b, err := r.store.Get(ctx, name, 0, -1)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		if Hash(b) != id {
			return nil, fmt.Errorf("%w: %s does not match its hash (truncated or modified); run 'lifeboat check'", ErrCorrupt, name)
		}
		sealed = b
		r.cachePut(kind, id, b)
	}
	plain, err := openMeta(&r.secrets.MetaKey, kind, sealed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return plain, nil
}

func (r *Repository) cachePath(kind MetaKind, id ID) string {
	return filepath.Join(r.cache, strings.TrimSuffix(kind.prefix(), "/"), id.String())
}

// DistrustCache makes the repository read metadata and tree packs from
// the store from now on, never from the on-disk cache (it still fills
// it). Commands that delete (forget, prune) call it before they read: a
// cached copy is intact by its hash, but says nothing of the stored
// object, and a snapshot that rotted in the store must count as
// unreadable there, not keep a place that a good snapshot then loses.
func (r *Repository) DistrustCache() {
	r.storeOnly.Store(true)
	r.trees.reset() // some may have come from the disk
}

func (r *Repository) cacheGet(kind MetaKind, id ID) []byte {
	if r.cache == "" || r.storeOnly.Load() {
		return nil
	}
	b, err := os.ReadFile(r.cachePath(kind, id))
	if err != nil || Hash(b) != id {
		return nil
	}
	return b
}

func (r *Repository) cachePut(kind MetaKind, id ID, b []byte) {
	if r.cache == "" {
		return
	}
	if err := writeCacheFile(r.cachePath(kind, id), b); err != nil {
		r.log.Debug("metadata cache unavailable", "err", err)
	}
}

// LoadIndex reads every index file into the in-memory index. A damaged
// index file is skipped and remembered (see IndexProblems): its packs'
// blobs are then simply unknown, which makes backups store them again and
// restores report the affected files, never use unverified data. A
// failure to list or read the index is an error.
func (r *Repository) LoadIndex(ctx context.Context) error {
	// A prune replaces index files: it writes the new ones, then deletes
	// the old. A file listed here and gone when read was replaced by one
	// that a new listing shows: list again, a few times at most.
	var mu sync.Mutex
	seen := map[ID]bool{}
	gone := map[ID]bool{}
	var problems []Problem
	var ids []ID
	listedAt := time.Now() // before the first listing: see sweepCache
	for attempt := 1; ; attempt++ {
		listed, err := r.ListMeta(ctx, KindIndex)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, id := range listed {
			if !gone[id] {
				ids = append(ids, id)
			}
		}
		// Index files never change: calling again (a check after a long
		// read, a backup after EnsureIndex) reads only the new ones,
		// in the order of their IDs (see below).
		slices.SortFunc(ids, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
		var todo []ID
		for _, id := range ids {
			if r.indexRead[id] || seen[id] {
				seen[id] = true
			} else {
				todo = append(todo, id)
			}
		}
		var vanished []ID
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		// Files are read and decoded in parallel but added in the order
		// listed, each after the one before: of a blob stored in two
		// packs, every process then finds the same copy first (a
		// restore, a check and a prune agree on it).
		prev := make(chan struct{})
		close(prev)
		for _, id := range todo {
			before, done := prev, make(chan struct{})
			prev = done
			g.Go(func() error {
				defer func() {
					<-before
					close(done)
				}()
				plain, err := r.LoadMeta(gctx, KindIndex, id)
				if err == nil {
					var packs []PackEntry
					if packs, err = DecodeIndex(plain); err == nil {
						<-before
						r.index.AddPacks(packs)
						mu.Lock()
						seen[id] = true
						mu.Unlock()
						return nil
					}
				}
				if errors.Is(err, ErrNotFound) {
					mu.Lock()
					vanished = append(vanished, id)
					mu.Unlock()
					return nil
				}
				if errors.Is(err, ErrNewerFormat) {
					mu.Lock()
					seen[id] = true
					problems = append(problems, Problem{Object: IndexPrefix + id.String(), Err: err})
					mu.Unlock()
					return nil
				}
				if !errors.Is(err, ErrCorrupt) {
					return err
				}
				r.log.Warn("skipping damaged index file; 'lifeboat repair index' replaces it", "index", id.String(), "err", err)
				mu.Lock()
				seen[id] = true
				problems = append(problems, Problem{Object: IndexPrefix + id.String(), Err: err})
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("load index: %w", err)
		}
		if len(vanished) == 0 {
			break
		}
		if attempt == 5 {
			return fmt.Errorf("load index: index files of %s keep vanishing while they are read (%s, last); a prune rewriting the index should be done within seconds: try again", r.store.Location(), IndexPrefix+vanished[0].String())
		}
		for _, id := range vanished {
			gone[id] = true
		}
		r.log.Info("index files replaced while read (a prune); listing again", "vanished", len(vanished))
	}
	if err := r.checkMetaKey(ids, problems); err != nil {
		return err
	}
	// What was read counts as read while it is listed (a file read and
	// then replaced is in no listing now; its packs stay known, as a
	// concurrent prune's dropped packs are either marked, and excluded
	// by backups, or wait for this process's session).
	final := make(map[ID]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			final[id] = true
		}
	}
	r.indexRead = final
	r.indexFiles = len(ids)
	// Problems found earlier stay reported while their file is listed.
	for _, p := range r.indexProblems {
		if id, err := ParseID(strings.TrimPrefix(p.Object, IndexPrefix)); err == nil && final[id] {
			problems = append(problems, p)
		}
	}
	r.indexProblems = problems
	r.indexNewer.Store(nil)
	for _, p := range problems {
		if errors.Is(p.Err, ErrNewerFormat) {
			r.indexNewer.Store(&p)
			break
		}
	}
	r.indexLoaded.Store(true)
	r.pruneCache(KindIndex, ids, listedAt)
	// The tree packs the index no longer lists were deleted by a prune
	// (here or on another machine). With an index file unread, its
	// packs are unknown, not gone: the cached ones are kept (the sweep
	// still removes stale temporary files).
	if r.cache != "" {
		live := r.index.HasPack
		if len(problems) > 0 {
			live = func(ID) bool { return true }
		}
		sweepCache(r.log, filepath.Join(r.cache, "packs"), listedAt, live)
	}
	return r.newerIndexErr()
}

// checkMetaKey refuses a writer key whose metadata key opens none of
// the index files ids, though they are intact (problems says why each
// was skipped): the key is damaged. Taking the files for damaged
// instead, a backup stored everything again and saved a manifest no one
// could open, and 'repair index' replaced every good index file with
// one no one could read, leaving the packs to a prune. An identity's
// key comes from an authenticated envelope.
func (r *Repository) checkMetaKey(ids []ID, problems []Problem) error {
	if r.CanRead() || len(ids) == 0 {
		return nil
	}
	n := 0
	for _, p := range problems {
		if errors.Is(p.Err, errMetaAuth) {
			n++
		}
	}
	if n < len(ids) {
		return nil
	}
	return fmt.Errorf("%w: the metadata key of this writer key opens none of the %d index files of %s, though each matches its name's hash: the key file is damaged or was edited; use an intact copy, or write a new one with 'lifeboat key writer-key' (with an identity)", ErrWrongKey, len(ids), r.store.Location())
}

// newerIndexErr is the error about the first index file written by a
// newer lifeboat, or nil. Its packs' blobs are unknown to this release,
// and unlike a damaged file's they cannot be described again from the
// packs without losing what the newer release recorded: backups,
// restores, prunes and repairs stop; check reports it (errors.Is
// ErrNewerFormat) and goes on.
func (r *Repository) newerIndexErr() error {
	if p := r.indexNewer.Load(); p != nil {
		return fmt.Errorf("load index: index file %s: %w", p.Object, p.Err)
	}
	return nil
}

// EnsureIndex loads the index unless LoadIndex already ran.
func (r *Repository) EnsureIndex(ctx context.Context) error {
	if r.indexLoaded.Load() {
		return r.newerIndexErr()
	}
	r.indexOnce.Lock()
	defer r.indexOnce.Unlock()
	if r.indexLoaded.Load() {
		return r.newerIndexErr()
	}
	return r.LoadIndex(ctx)
}

// IndexProblems lists the index files LoadIndex had to skip.
func (r *Repository) IndexProblems() []Problem { return r.indexProblems }

// pruneCache removes the cached copies of metadata objects of a kind
// that a listing of the store begun at listedAt no longer shows (see
// sweepCache).
func (r *Repository) pruneCache(kind MetaKind, live []ID, listedAt time.Time) {
	if r.cache == "" {
		return
	}
	keep := make(map[ID]bool, len(live))
	for _, id := range live {
		keep[id] = true
	}
	sweepCache(r.log, filepath.Dir(r.cachePath(kind, ID{})), listedAt, func(id ID) bool { return keep[id] })
}

// PackKey unwraps (and caches) the data key of a pack. It needs an identity.
func (r *Repository) PackKey(p *PackEntry) (*[32]byte, error) {
	if !r.CanRead() {
		return nil, ErrNoIdentity
	}
	r.keyMu.Lock()
	k, ok := r.keys[p.ID]
	r.keyMu.Unlock()
	if ok {
		return k, nil
	}
	k, err := unwrapDataKey(p.WrappedKey, r.ids)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			if p.WrappedBefore(r.secrets.Generation) {
				return nil, fmt.Errorf("pack %s: the identity is %w: the pack is wrapped to the recipients of %s, from before 'lifeboat key' changed them; read it with an identity of those recipients, or have one run 'lifeboat prune --rewrap'", p.ID.Short(), ErrNotRecipient, GenName(p.Gen))
			}
			return nil, fmt.Errorf("pack %s: the identity is %w", p.ID.Short(), ErrNotRecipient)
		}
		return nil, fmt.Errorf("%w: pack %s key: %v", ErrCorrupt, p.ID.Short(), err)
	}
	r.keyMu.Lock()
	r.keys[p.ID] = k
	r.keyMu.Unlock()
	return k, nil
}

// OpenBlob authenticates, decrypts and decompresses one sealed blob read
// from a pack, and checks that the plaintext's keyed ID is b.ID. dst is
// reused when large enough.
func (r *Repository) OpenBlob(key *[32]byte, b Blob, sealed, dst []byte) ([]byte, error) {
	return r.openBlob(newGCM(key[:]), b, sealed, dst, openCopy)
}

// BlobOpener opens the blobs of one pack for a caller that has no
// further use for their sealed bytes, with the pack's cipher set up once
// rather than for every blob (half a microsecond and 1.3 KiB of garbage
// each; a restore of the bench dataset opens 22,000 blobs). It
// authenticates and checks the keyed ID exactly as OpenBlob does. It is
// not safe for concurrent use.
type BlobOpener struct {
	r    *Repository
	aead cipher.AEAD
}

// Opener returns a BlobOpener for the pack whose data key is key
// (PackKey).
func (r *Repository) Opener(key *[32]byte) *BlobOpener {
	return &BlobOpener{r: r, aead: newGCM(key[:])}
}

// OpenInPlace decrypts the blob where it lies, overwriting sealed, so a
// blob stored raw is returned as a part of sealed without a copy and only
// a compressed one is decoded into dst.
func (o *BlobOpener) OpenInPlace(b Blob, sealed, dst []byte) ([]byte, error) {
	return o.r.openBlob(o.aead, b, sealed, dst, openInPlace)
}

// OpenInto is OpenInPlace for a caller that needs the plaintext at a
// place of its choosing: it always starts at dst[0]. A blob stored raw
// is decrypted from sealed straight into dst (as fast as in place;
// sealed is left as it was), a compressed one is decrypted in place,
// overwriting sealed, and decoded into dst. With
// cap(dst) >= b.RawLength+DecodeSlack nothing is allocated. The restore
// uses it to align file data for direct I/O.
func (o *BlobOpener) OpenInto(b Blob, sealed, dst []byte) ([]byte, error) {
	return o.r.openBlob(o.aead, b, sealed, dst, openInto)
}

// openMode says where openBlob may decrypt and where the plaintext goes.
type openMode int

const (
	openCopy    openMode = iota // sealed is left as it is
	openInPlace                 // sealed is overwritten; a raw blob's plaintext stays in it
	openInto                    // sealed may be overwritten; the plaintext is always in dst
)

func (r *Repository) openBlob(aead cipher.AEAD, b Blob, sealed, dst []byte, mode openMode) ([]byte, error) {
	if len(sealed) < BlobOverhead {
		return nil, fmt.Errorf("%w: %s blob %s truncated", ErrCorrupt, b.Type, b.ID.Short())
	}
	raw := sealed[nonceSize] == blobRaw
	var plain []byte
	switch {
	case mode == openInPlace || (mode == openInto && !raw):
		// AES-GCM may decrypt into its own input when the output starts
		// where the ciphertext does.
		enc, out, err := openBlob(sealed[nonceSize+1:nonceSize+1], aead, b.Type, b.ID, sealed)
		if err != nil {
			return nil, err
		}
		plain = out
		if enc != blobRaw {
			if plain, err = decodeBlobPayload(dst[:0], enc, out, int(b.RawLength)); err != nil {
				return nil, fmt.Errorf("%s blob %s: %w", b.Type, b.ID.Short(), err)
			}
		}
	case raw:
		// Decrypt straight into dst: the payload is the plaintext.
		_, out, err := openBlob(dst[:0], aead, b.Type, b.ID, sealed)
		if err != nil {
			return nil, err
		}
		plain = out
	default:
		sp := scratchPool.Get().(*[]byte)
		enc, z, err := openBlob((*sp)[:0], aead, b.Type, b.ID, sealed)
		if err == nil {
			*sp = z
			plain, err = decodeBlobPayload(dst[:0], enc, z, int(b.RawLength))
		}
		scratchPool.Put(sp)
		if err != nil {
			return nil, fmt.Errorf("%s blob %s: %w", b.Type, b.ID.Short(), err)
		}
	}
	if len(plain) != int(b.RawLength) {
		return nil, fmt.Errorf("%w: %s blob %s has %d bytes, index says %d", ErrCorrupt, b.Type, b.ID.Short(), len(plain), b.RawLength)
	}
	if r.hasher.SumType(b.Type, plain) != b.ID {
		return nil, fmt.Errorf("%w: %s blob %s content does not match its ID", ErrCorrupt, b.Type, b.ID.Short())
	}
	return plain, nil
}

var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// LoadBlob reads one blob from storage and verifies it. It reads the
// copy the index finds first only: check, prune and repair must see
// damage, not read around it (LoadBlobAnyCopy).
func (r *Repository) LoadBlob(ctx context.Context, t BlobType, id ID) ([]byte, error) {
	loc, err := r.locate(ctx, t, id)
	if err != nil {
		return nil, err
	}
	return r.loadAt(ctx, loc)
}

// locate finds a blob of type t in the index.
func (r *Repository) locate(ctx context.Context, t BlobType, id ID) (Location, error) {
	if !r.CanRead() {
		return Location{}, ErrNoIdentity
	}
	if err := r.EnsureIndex(ctx); err != nil {
		return Location{}, err
	}
	loc, ok := r.index.Lookup(id)
	if !ok || loc.Blob.Type != t {
		return Location{}, fmt.Errorf("%s blob %s is not in the index; run 'lifeboat check'", t, id.Short())
	}
	return loc, nil
}

// LoadBlobAnyCopy is LoadBlob for readers that want the data back
// (restore, dump, copy, drills): if the first copy cannot be read or does
// not verify, and the index lists another copy (in another pack), that
// one is tried, with a warning naming the failed pack; the error names
// the first copy's failure.
func (r *Repository) LoadBlobAnyCopy(ctx context.Context, t BlobType, id ID) ([]byte, error) {
	loc, err := r.locate(ctx, t, id)
	if err != nil {
		return nil, err
	}
	plain, err := r.loadAt(ctx, loc)
	if err == nil || ctx.Err() != nil {
		return plain, err
	}
	others := r.index.Copies(map[ID]bool{id: true}, map[ID]bool{loc.Pack.ID: true})[id]
	for _, other := range others {
		if other.Blob.Type != t {
			continue
		}
		if plain, oerr := r.loadAt(ctx, other); oerr == nil {
			r.log.Warn("a blob's copy is damaged or missing; another copy was used: run 'lifeboat check --read-data', then 'lifeboat repair packs' on the pack it names", "blob", id.Short(), "damaged", PackName(loc.Pack.ID), "used", PackName(other.Pack.ID), "err", err)
			return plain, nil
		}
	}
	switch n := len(others); {
	case n == 1:
		err = fmt.Errorf("%w (its other copy failed too)", err)
	case n > 1:
		err = fmt.Errorf("%w (its %d other copies failed too)", err, n)
	}
	return nil, err
}

// loadAt reads and verifies the blob at loc.
func (r *Repository) loadAt(ctx context.Context, loc Location) ([]byte, error) {
	t, id := loc.Blob.Type, loc.Blob.ID
	key, err := r.PackKey(loc.Pack)
	if err != nil {
		return nil, err
	}
	name := PackName(loc.Pack.ID)
	var sealed []byte
	if t == TreeBlob {
		if pack, err := r.treePack(ctx, loc.Pack); err == nil {
			sealed = pack[loc.Blob.Offset : loc.Blob.Offset+loc.Blob.Length]
		}
	}
	if sealed == nil {
		sealed, err = r.store.Get(ctx, name, int64(loc.Blob.Offset), int64(loc.Blob.Length))
		if err != nil {
			return nil, fmt.Errorf("read %s blob %s from %s: %w", t, id.Short(), name, err)
		}
	}
	plain, err := r.OpenBlob(key, loc.Blob, sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return plain, nil
}
