package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrStaleKey is returned when a credential would wrap new pack keys to
// recipients the repository has replaced (see Rekey).
var ErrStaleKey = errors.New("stale key")

// Envelope is a key envelope object under keys/.
type Envelope struct {
	Name string
	Hash ID     // of its bytes
	Gen  uint32 // the generation of the recipients it holds
}

// envelopeName names an envelope of generation gen: keys/<hash> for the
// envelope 'init' writes (so releases that predate generations open it),
// keys/<hash>.g<gen> after a change of recipients. The generation is in
// the name so that a writer, which cannot open envelopes, can tell that
// its key is out of date.
func envelopeName(hash ID, gen uint32) string {
	if gen == 0 {
		return KeysPrefix + hash.String()
	}
	return KeysPrefix + hash.String() + ".g" + strconv.FormatUint(uint64(gen), 10)
}

// parseEnvelopeName is the inverse of envelopeName.
func parseEnvelopeName(name string) (Envelope, bool) {
	rest, ok := strings.CutPrefix(name, KeysPrefix)
	if !ok {
		return Envelope{}, false
	}
	e := Envelope{Name: name}
	if h, g, ok := strings.Cut(rest, ".g"); ok {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != g {
			return Envelope{}, false
		}
		e.Gen, rest = uint32(n), h
	}
	id, err := ParseID(rest)
	if err != nil {
		return Envelope{}, false
	}
	e.Hash = id
	return e, true
}

// maxEnvelope bounds what is read as a key envelope: a few recipients'
// stanzas and the secrets take a few KiB, a hundred post-quantum ones
// about 200 KiB.
const maxEnvelope = 1 << 20

// Envelopes lists the key envelopes, newest generation first. Other
// objects under keys/ are left out with a warning: only an envelope
// (signed, in a repository with a key signer) can change what
// credentials do.
func (r *Repository) Envelopes(ctx context.Context) ([]Envelope, error) {
	var envs []Envelope
	var stray []Problem
	if err := r.store.List(ctx, KeysPrefix, func(oi ObjectInfo) error {
		e, ok := parseEnvelopeName(oi.Name)
		if !ok {
			r.log.Warn("ignoring an object under keys/ that is not a key envelope (keys/<sha256>[.g<generation>])", "name", oi.Name)
			stray = append(stray, strayProblem(oi.Name, KeysPrefix))
			return nil
		}
		if oi.Size > maxEnvelope {
			r.log.Warn("ignoring an object under keys/ too large to be a key envelope", "name", oi.Name, "size", oi.Size)
			stray = append(stray, Problem{Object: oi.Name, Err: fmt.Errorf("%w: %d bytes, more than the %d every lifeboat reads as a key envelope, so it opens for no one (a change of recipients by a release before that bound could write one, with many past recipients); if 'lifeboat key list' shows no newer envelope, bring back the older envelopes from a copy of the bucket (object versioning, a replica)", ErrUnexpectedObject, oi.Size, maxEnvelope)})
			return nil
		}
		envs = append(envs, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list keys in %s: %w", r.store.Location(), err)
	}
	r.strayMu.Lock()
	r.strayKeys = stray
	r.strayMu.Unlock()
	sort.SliceStable(envs, func(i, j int) bool {
		if envs[i].Gen != envs[j].Gen {
			return envs[i].Gen > envs[j].Gen
		}
		return envs[i].Name < envs[j].Name
	})
	return envs, nil
}

// SignedEnvelopes reports whether the repository's key envelopes are
// signed (it has a key signer: created by a lifeboat that signs them).
func (r *Repository) SignedEnvelopes() bool { return r.config.KeySigner != "" }

// KeyGeneration is the repository's current generation of recipients:
// that of its newest key envelope. An envelope newer than the
// credential's own generation counts only if the repository's key signer
// signed it (in a repository without one, its name is taken at its
// word), so a writer cannot stop the others by planting one.
func (r *Repository) KeyGeneration(ctx context.Context) (uint32, error) {
	gen, _, err := r.keyGeneration(ctx, nil)
	return gen, err
}

// KeyStatus is KeyGeneration, Envelopes and UnverifiedEnvelopes from one
// listing of keys/, each envelope read at most once: what 'key list'
// shows. Listing keys/ again for each would cost a LIST per call on S3
// and could see a different set of envelopes each time.
func (r *Repository) KeyStatus(ctx context.Context) (gen uint32, envs []Envelope, bad []EnvelopeProblem, err error) {
	seen := envelopeReads{}
	gen, envs, err = r.keyGeneration(ctx, seen)
	if err != nil {
		return 0, nil, nil, err
	}
	bad, err = r.unverifiedAmong(ctx, envs, seen)
	if err != nil {
		return 0, nil, nil, err
	}
	return gen, envs, bad, nil
}

// keyGeneration is KeyGeneration, with the envelopes it listed (also
// with its error when it found none that counts), reading them through
// seen.
func (r *Repository) keyGeneration(ctx context.Context, seen envelopeReads) (uint32, []Envelope, error) {
	envs, err := r.Envelopes(ctx)
	if err != nil {
		return 0, nil, err
	}
	for _, e := range envs {
		if e.Gen <= r.secrets.Generation || !r.SignedEnvelopes() {
			return e.Gen, envs, nil
		}
		switch err := r.verifyOnce(ctx, seen, e); {
		case err == nil:
			return e.Gen, envs, nil
		case errors.Is(err, ErrNotFound):
			continue // removed meanwhile
		case errors.Is(err, errNotGenuine):
			r.log.Warn("ignoring a key envelope the repository's key signer did not sign; find out who put it there, then remove it ('lifeboat key cleanup')", "name", e.Name, "err", err)
		default:
			return 0, nil, err
		}
	}
	return 0, envs, fmt.Errorf("%w: %s has no key envelopes under keys/: no identity can open the repository, so nothing written to it could be restored; put back keys/ from a copy of the bucket (object versioning, a replica), or back up into a new repository", ErrCorrupt, r.store.Location())
}

// CheckEnvelopes returns nil if the repository's current generation has
// a key envelope that is intact: its content matches its name's hash
// and, where the repository has a key signer, its signature verifies.
// Identities open the repository with it; without one, nothing written
// could be restored, yet a writer key, which never opens an envelope,
// would go on backing up. The error (ErrCorrupt) names the damaged
// envelopes and what to do.
func (r *Repository) CheckEnvelopes(ctx context.Context) error {
	_, _, err := r.intactGeneration(ctx, envelopeReads{})
	return err
}

// checkKeys is CheckEnvelopes and UnverifiedEnvelopes from one listing of
// keys/, each envelope read once: what check reports. intact is
// CheckEnvelopes' error (ErrCorrupt), bad UnverifiedEnvelopes' list; err
// is another failure, which leaves both unknown.
// older lists the envelopes that verify but are of a generation before
// the current one, while that one has an intact envelope: left by a
// change of recipients interrupted before its cleanup, they still open
// the repository for identities the change removed.
func (r *Repository) checkKeys(ctx context.Context) (intact error, bad []EnvelopeProblem, older []Envelope, err error) {
	seen := envelopeReads{}
	gen, envs, intact := r.intactGeneration(ctx, seen)
	if intact != nil && !errors.Is(intact, ErrCorrupt) {
		return nil, nil, nil, intact
	}
	bad, err = r.unverifiedAmong(ctx, envs, seen)
	if err != nil {
		return nil, nil, nil, err
	}
	if intact == nil {
		isBad := map[string]bool{}
		for _, e := range bad {
			isBad[e.Name] = true
		}
		for _, e := range envs {
			if e.Gen < gen && !isBad[e.Name] {
				older = append(older, e)
			}
		}
	}
	return intact, bad, older, nil
}

// intactGeneration is KeyGeneration, checked as CheckEnvelopes says,
// with the envelopes it listed last, reading them through seen.
// Envelopes that vanish as it reads them (a change of recipients
// removing the older ones) make it list them again, once.
func (r *Repository) intactGeneration(ctx context.Context, seen envelopeReads) (uint32, []Envelope, error) {
	for attempt := 0; ; attempt++ {
		gen, envs, err := r.keyGeneration(ctx, seen)
		if err != nil {
			return 0, envs, err
		}
		err = r.anyIntactEnvelope(ctx, seen, envs, gen)
		if errors.Is(err, errEnvelopesVanished) {
			if attempt == 0 {
				continue
			}
			err = r.noIntactEnvelope(gen, "none is left")
		}
		return gen, envs, err
	}
}

// errEnvelopesVanished: every envelope of the generation was gone when read.
var errEnvelopesVanished = errors.New("the key envelopes vanished while they were read")

// anyIntactEnvelope returns nil if an envelope of generation gen of envs
// verifies, errEnvelopesVanished if every one was gone when read, and
// noIntactEnvelope's error otherwise.
func (r *Repository) anyIntactEnvelope(ctx context.Context, seen envelopeReads, envs []Envelope, gen uint32) error {
	var damaged []string
	vanished := false
	for _, e := range envs {
		if e.Gen != gen {
			continue
		}
		switch err := r.verifyOnce(ctx, seen, e); {
		case err == nil:
			return nil
		case errors.Is(err, ErrNotFound):
			vanished = true // removed meanwhile
		case errors.Is(err, errNotGenuine):
			damaged = append(damaged, err.Error())
		default:
			return err
		}
	}
	if vanished && len(damaged) == 0 {
		return errEnvelopesVanished
	}
	what := "none is left"
	if len(damaged) > 0 {
		what = strings.Join(damaged, "; ")
	}
	return r.noIntactEnvelope(gen, what)
}

// noIntactEnvelope is CheckEnvelopes' error for generation gen; what
// says what became of its envelopes.
func (r *Repository) noIntactEnvelope(gen uint32, what string) error {
	return &noIntactError{gen: gen, err: r.noIntactMessage(gen, what)}
}

// noIntactError is CheckEnvelopes' error when generation gen, the
// repository's current one, has no intact envelope. It wraps ErrCorrupt.
type noIntactError struct {
	gen uint32
	err error
}

func (e *noIntactError) Error() string { return e.err.Error() }
func (e *noIntactError) Unwrap() error { return e.err }

func (r *Repository) noIntactMessage(gen uint32, what string) error {
	return fmt.Errorf("%w: no key envelope of generation %d under keys/ of %s is intact (%s): no identity can open the repository, so nothing written to it could be restored; put back keys/ from a copy of the bucket (object versioning, a replica), or back up into a new repository", ErrCorrupt, gen, r.store.Location(), what)
}

// checkGeneration refuses to write packs when the repository's recipients
// have changed since the credential was made: their keys would be
// wrapped to the old set, which may include a removed identity, and
// would miss an added one.
func (r *Repository) checkGeneration(ctx context.Context) error {
	// What is written must be restorable too: an identity needs an
	// intact envelope to open the repository with.
	cur, _, err := r.intactGeneration(ctx, envelopeReads{})
	if err != nil {
		return err
	}
	if cur < r.secrets.Generation && !r.CanRead() {
		// Packs would be indexed as of a generation no envelope has:
		// prune --rewrap would never rewrap them, key remove would count
		// them as readable by no one.
		return fmt.Errorf("%w: this writer key is of generation %d, but the newest key envelope under keys/ of %s is of generation %d: keys/ was put back from an older copy, or the key file was edited; put back the newest envelope, or make a writer key with 'lifeboat key writer-key'", ErrStaleKey, r.secrets.Generation, r.store.Location(), cur)
	}
	if cur <= r.secrets.Generation {
		r.genChecked.Store(int64(time.Since(processStart)))
		return nil
	}
	if r.CanRead() {
		return fmt.Errorf("%w: the recipients of %s were changed ('lifeboat key', generation %d), and this identity is a recipient only of generation %d: it was removed; use an identity of the current set", ErrStaleKey, r.store.Location(), cur, r.secrets.Generation)
	}
	return fmt.Errorf("%w: this writer key is of generation %d, but the recipients of %s were changed ('lifeboat key', generation %d): packs written with it would be wrapped to the old recipients; install the writer key that 'lifeboat key' wrote (--key-out), or make one with 'lifeboat key writer-key'", ErrStaleKey, r.secrets.Generation, r.store.Location(), cur)
}

// genCheckFresh is how long a passed checkGeneration spares a writer
// that will be checked again before its commit
// (WriterOptions.RecheckedAtCommit) its own check: a backup checks when
// it starts (AdoptOrphans) and again when its writer starts, a moment
// later, and each check lists keys/, a round trip to the store.
const genCheckFresh = 10 * time.Second

// processStart anchors genChecked on the monotonic clock, which a step
// of the wall clock does not move.
var processStart = time.Now()

// checkGenerationRecent is checkGeneration, unless it passed within the
// last genCheckFresh.
func (r *Repository) checkGenerationRecent(ctx context.Context) error {
	if t := r.genChecked.Load(); t != 0 && time.Since(processStart)-time.Duration(t) < genCheckFresh {
		return nil
	}
	return r.checkGeneration(ctx)
}

// CheckGeneration is checkGeneration for a commit: a backup that started
// before a change of recipients wrapped its packs to the old ones, and
// must not save a snapshot that references them.
func (r *Repository) CheckGeneration(ctx context.Context) error {
	if err := r.checkGeneration(ctx); err != nil {
		return fmt.Errorf("the recipients changed while this ran, so nothing was committed: %w", err)
	}
	return nil
}

// Rekey replaces the repository's recipients: it writes a key envelope of
// the next generation, sealed to recipients (and signed, see
// Config.KeySigner), then removes the older envelopes, so that an
// identity no longer listed cannot open the repository. It needs an
// identity, and one of the caller's identities must be among the new
// recipients. Packs already written stay wrapped to the recipients of
// their time until a prune with Rewrap rewrites them; new packs must be
// written with the returned secrets (what the new writer key holds; a
// writer key of an older generation is refused, see checkGeneration).
func (r *Repository) Rekey(ctx context.Context, recipients []string) (*Secrets, error) {
	if !r.CanRead() {
		return nil, errors.New("changing the recipients needs an identity (--identity): a writer key cannot open the key envelopes")
	}
	if len(recipients) == 0 {
		return nil, errors.New("a repository needs at least one recipient")
	}
	recipients, err := NormalizeRecipients(recipients)
	if err != nil {
		return nil, err
	}
	cur, err := r.KeyGeneration(ctx)
	if err != nil {
		return nil, err
	}
	if cur != r.secrets.Generation {
		return nil, fmt.Errorf("%w: this identity opened generation %d of the recipients of %s, but generation %d exists: it is not one of the current recipients", ErrStaleKey, r.secrets.Generation, r.store.Location(), cur)
	}
	if r.secrets.Generation >= GenUnknown-1 {
		return nil, errors.New("the recipients' generation is at its maximum; copy the snapshots into a new repository")
	}
	next := *r.secrets
	next.Recipients = slices.Clone(recipients)
	next.Generation++
	next.Past = append(slices.Clone(r.secrets.Past), RecipientSet{Generation: r.secrets.Generation, Recipients: r.secrets.Recipients})
	env, err := sealEnvelope(&next)
	if errors.Is(err, errEnvelopeTooLarge) {
		// Past grows with every change (by a few KiB per post-quantum
		// recipient); the generations no indexed pack is wrapped for
		// need not be recorded.
		if next.Past, err = r.pastInUse(ctx, next.Past); err == nil {
			env, err = sealEnvelope(&next)
		}
		if errors.Is(err, errEnvelopeTooLarge) {
			err = fmt.Errorf("%w, even with only the recipients of the past generations that packs are still wrapped to: run 'lifeboat prune --rewrap' first, so that no pack is wrapped to a past generation's recipients, or give fewer recipients; nothing was changed", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := openEnvelope(env, r.config, next.Generation, r.ids); err != nil {
		return nil, errors.New("none of the identities given is among the new recipients: the change would lock you out; keep your own recipient, or add the new one first and remove yours with its identity")
	}
	name := envelopeName(Hash(env), next.Generation)
	if err := r.store.Put(ctx, name, env); err != nil {
		// A put that timed out may have been stored all the same: the
		// change would be made while the caller is told it failed.
		if derr := r.store.Delete(ctx, name); derr != nil && !errors.Is(derr, ErrNotFound) {
			return nil, fmt.Errorf("write key envelope %s: %w; it may have been written all the same, and removing it failed (%v): run 'lifeboat key list'; if it is there, the change is in place: write its writer key with 'lifeboat key writer-key' and remove the older envelopes with 'lifeboat key cleanup'", name, err, derr)
		}
		return nil, fmt.Errorf("write key envelope %s: %w; nothing was changed", name, err)
	}
	// Two changes at once would leave two envelopes of one generation,
	// and which of them an identity opens would be chance: the change
	// that finds the other's withdraws its own.
	after, err := r.Envelopes(ctx)
	if err != nil {
		// Unchecked, the envelope must not stay: in place, it is the
		// change, made while the caller is told it failed and gets no
		// writer key of it.
		if derr := r.store.Delete(ctx, name); derr != nil && !errors.Is(derr, ErrNotFound) {
			return nil, fmt.Errorf("the key envelope %s of generation %d was written, but checking that no other change of recipients ran at the same time failed (%w), and withdrawing it failed too (%v): run 'lifeboat key list'; if it is the only envelope of generation %d, the change is in place: write its writer key with 'lifeboat key writer-key' and remove the older envelopes with 'lifeboat key cleanup'", name, next.Generation, err, derr, next.Generation)
		}
		return nil, fmt.Errorf("checking that no other change of recipients ran at the same time failed, so the key envelope written was withdrawn and nothing was changed: %w", err)
	}
	for _, e := range after {
		if e.Gen == next.Generation && e.Name != name && r.genuine(ctx, e) {
			if derr := r.store.Delete(ctx, name); derr != nil {
				return nil, fmt.Errorf("another change of recipients ran at the same time (%s and %s are both generation %d), and withdrawing this one failed (%v): run 'lifeboat key list' and remove the envelope that should not stay", e.Name, name, next.Generation, derr)
			}
			return nil, fmt.Errorf("another change of recipients ran at the same time (%s is generation %d too); this one was withdrawn: run 'lifeboat key list', then change the recipients again", e.Name, next.Generation)
		}
	}
	r.secrets = &next
	if _, err := r.RemoveOldEnvelopes(ctx); err != nil {
		return next.WriterSecrets(), fmt.Errorf("the new recipients are in place (%s), but %w; remove it with 'lifeboat key cleanup'", name, err)
	}
	return next.WriterSecrets(), nil
}

// pastInUse returns the sets in past whose generation some pack in the
// index is wrapped for: the only ones a reader needs (Stranded,
// PackKey's error).
func (r *Repository) pastInUse(ctx context.Context, past []RecipientSet) ([]RecipientSet, error) {
	if err := r.EnsureIndex(ctx); err != nil {
		return nil, err
	}
	if probs := r.IndexProblems(); len(probs) > 0 {
		return nil, fmt.Errorf("%w, and which past generations packs are wrapped for is not known: index file %s could not be read ('lifeboat repair index' replaces it); nothing was changed", errEnvelopeTooLarge, probs[0].Object)
	}
	used := map[uint32]bool{}
	for _, p := range r.index.Packs() {
		used[p.Gen] = true
	}
	var out []RecipientSet
	for _, p := range past {
		if used[p.Generation] {
			out = append(out, p)
		}
	}
	return out, nil
}

// errNotGenuine marks a key envelope that its name's hash or the
// repository's key signer does not vouch for.
var errNotGenuine = errors.New("not a genuine key envelope")

// envelopeReads holds, by name, what verifyEnvelope found of the
// envelopes one pass over keys/ read (verifyOnce): that one verifies or
// is not genuine, which its content, named by its hash, decides.
type envelopeReads map[string]error

// verifyOnce is verifyEnvelope, read once per pass through seen (nil:
// no memory). An envelope that could not be read (gone, or a failure of
// the store) is read again when asked again.
func (r *Repository) verifyOnce(ctx context.Context, seen envelopeReads, e Envelope) error {
	if err, ok := seen[e.Name]; ok {
		return err
	}
	err := r.verifyEnvelope(ctx, e)
	if seen != nil && (err == nil || errors.Is(err, errNotGenuine)) {
		seen[e.Name] = err
	}
	return err
}

// verifyEnvelope reads envelope e and checks it against its name's hash
// and the repository's key signer. An error wrapping errNotGenuine says
// it is not genuine; another (ErrNotFound if it is gone) that it could
// not be read.
func (r *Repository) verifyEnvelope(ctx context.Context, e Envelope) error {
	b, err := r.store.Get(ctx, e.Name, 0, -1)
	if err != nil {
		return fmt.Errorf("read %s: %w", e.Name, err)
	}
	if Hash(b) != e.Hash {
		return fmt.Errorf("%w: %s does not match its name's hash", errNotGenuine, e.Name)
	}
	if _, err := envelopeCiphertext(b, r.config, e.Gen); err != nil {
		return fmt.Errorf("%w: %s: %v", errNotGenuine, e.Name, err)
	}
	return nil
}

// EnvelopeProblem is a key envelope that every lifeboat ignores: its
// bytes do not match its name's hash or, in a repository with a key
// signer, its signature does not verify.
type EnvelopeProblem struct {
	Envelope
	Err error
}

// UnverifiedEnvelopes lists the key envelopes under keys/ that do not
// verify (EnvelopeProblem). Nothing opens them, but they are a sign:
// damage, or someone with write access to keys/ who cannot sign (a
// writer key holder) planting one. check reports them, key list marks
// them and key cleanup removes them.
func (r *Repository) UnverifiedEnvelopes(ctx context.Context) ([]EnvelopeProblem, error) {
	envs, err := r.Envelopes(ctx)
	if err != nil {
		return nil, err
	}
	return r.unverifiedAmong(ctx, envs, nil)
}

// unverifiedAmong is UnverifiedAmong, reading the envelopes through seen.
func (r *Repository) unverifiedAmong(ctx context.Context, envs []Envelope, seen envelopeReads) ([]EnvelopeProblem, error) {
	var out []EnvelopeProblem
	for _, e := range envs {
		switch err := r.verifyOnce(ctx, seen, e); {
		case err == nil, errors.Is(err, ErrNotFound):
		case errors.Is(err, errNotGenuine):
			out = append(out, EnvelopeProblem{Envelope: e, Err: err})
		default:
			return nil, err
		}
	}
	return out, nil
}

// genuine reports whether envelope e verifies against the repository's
// key signer (any envelope does in a repository without one): a planted
// one must not make a change withdraw itself. One that cannot be read
// counts as genuine: the cautious side.
func (r *Repository) genuine(ctx context.Context, e Envelope) bool {
	return !r.SignedEnvelopes() || !errors.Is(r.verifyEnvelope(ctx, e), errNotGenuine)
}

// RemoveUnverifiedEnvelopes removes the envelopes UnverifiedEnvelopes
// lists and returns them. It needs an identity of the repository's
// current generation, one that opened an envelope that verifies.
func (r *Repository) RemoveUnverifiedEnvelopes(ctx context.Context) ([]EnvelopeProblem, error) {
	if !r.CanRead() {
		return nil, errors.New("removing key envelopes needs an identity (--identity)")
	}
	bad, err := r.UnverifiedEnvelopes(ctx)
	if err != nil {
		return nil, err
	}
	for i, e := range bad {
		if err := r.store.Delete(ctx, e.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return bad[:i], fmt.Errorf("key envelope %s, which does not verify, could not be removed: %w", e.Name, err)
		}
	}
	return bad, nil
}

// RemoveOldEnvelopes removes the key envelopes of generations before the
// one the repository was opened with, and returns how many it removed.
// Rekey calls it; a Rekey interrupted before it finished leaves them for
// the next.
func (r *Repository) RemoveOldEnvelopes(ctx context.Context) (int, error) {
	envs, err := r.Envelopes(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range envs {
		if e.Gen >= r.secrets.Generation {
			continue
		}
		if err := r.store.Delete(ctx, e.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return n, fmt.Errorf("old key envelope %s could not be removed: %w", e.Name, err)
		}
		n++
	}
	return n, nil
}

// Stranded counts, by generation, the indexed packs that no recipient of
// next is known to open: packs of an older generation none of whose
// recipients is in next, and packs of an unknown generation. Removing
// recipients while there are such packs could leave their data to the
// removed identities alone; 'prune --rewrap' first wraps them to the
// current recipients. It uses the loaded index, GC-marked packs included
// (a prune may yet keep them).
func (r *Repository) Stranded(next []string) map[uint32]int {
	keep := map[string]bool{}
	next, _ = CanonicalRecipients(next)
	for _, k := range next {
		keep[k] = true
	}
	out := map[uint32]int{}
	reachable := map[uint32]bool{}
	for _, p := range r.index.Packs() {
		ok, seen := reachable[p.Gen]
		if !seen {
			rs, _ := r.secrets.RecipientsOf(p.Gen) // none for GenUnknown
			// Canonical, as next is: a generation written before
			// recipients were normalised may hold several in one entry.
			// One that does not parse counts as reaching no one.
			rs, _ = CanonicalRecipients(rs)
			for _, k := range rs {
				ok = ok || keep[k]
			}
			reachable[p.Gen] = ok
		}
		if !ok {
			out[p.Gen]++
		}
	}
	return out
}
