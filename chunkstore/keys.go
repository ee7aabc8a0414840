package chunkstore

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/restic/chunker"

	"github.com/lifeboat-backup/lifeboat/internal/cdc"
)

// Secrets are the repository's symmetric secrets. A writer holds them in
// plaintext (its writer key); identity holders unwrap them from a key
// envelope under keys/. They let one compute chunk IDs and seal/open
// metadata, and nothing more: pack contents are sealed under per-pack data
// keys that only the recipients' identities can unwrap.
type Secrets struct {
	RepoID     string
	ChunkKey   [32]byte
	MetaKey    [32]byte
	Polynomial chunker.Pol
	ConfigHash ID
	Recipients []string
	// Generation counts the changes of Recipients ('lifeboat key add'
	// and 'key remove'); 0 is the set 'init' wrote. Packs record the
	// generation they were wrapped for (PackEntry.Gen), so that a prune
	// with Rewrap can find those an older set can still open.
	Generation uint32
	// Past are the recipients of the earlier generations, oldest first:
	// packs not yet rewrapped are wrapped to them. Generations no pack
	// was wrapped for may be left out (see Rekey).
	Past []RecipientSet
	// SigningKey is the Ed25519 seed that signs key envelopes (its public
	// key is the config's key_signer). Envelopes hold it; writer keys do
	// not, so a writer cannot plant an envelope identities would trust.
	SigningKey []byte
}

// WriterSecrets returns s without what only envelopes hold: what a writer
// key carries.
func (s *Secrets) WriterSecrets() *Secrets {
	w := *s
	w.SigningKey = nil
	return &w
}

// RecipientSet is the recipients of one generation.
type RecipientSet struct {
	Generation uint32   `json:"generation"`
	Recipients []string `json:"recipients"`
}

// RecipientsOf returns the recipients of generation gen, if known.
func (s *Secrets) RecipientsOf(gen uint32) ([]string, bool) {
	if gen == s.Generation {
		return s.Recipients, true
	}
	for _, p := range s.Past {
		if p.Generation == gen {
			return p.Recipients, true
		}
	}
	return nil, false
}

// secretsJSON is the wire form shared by key envelopes and writer keys.
type secretsJSON struct {
	Type       string         `json:"type"`
	Version    int            `json:"version"`
	RepoID     string         `json:"repo_id"`
	ChunkKey   string         `json:"chunk_key"`
	MetaKey    string         `json:"meta_key"`
	Polynomial string         `json:"polynomial"`
	ConfigHash ID             `json:"config_hash"`
	Recipients []string       `json:"recipients"`
	Generation uint32         `json:"generation,omitempty"`
	Past       []RecipientSet `json:"past_recipients,omitempty"`
	SigningKey string         `json:"signing_key,omitempty"`
	// Checksum is writerKeyChecksum of a writer key's secrets (hex).
	// Absent in writer keys written before it, which are not checked.
	Checksum string `json:"checksum,omitempty"`
}

const (
	writerKeyType = "lifeboat-writer-key"
	envelopeType  = "lifeboat-key-envelope"
)

func (s *Secrets) marshal(typ string) ([]byte, error) {
	signing, checksum := "", ""
	if typ == envelopeType && s.SigningKey != nil {
		signing = base64.StdEncoding.EncodeToString(s.SigningKey)
	}
	if typ == writerKeyType {
		c := writerKeyChecksum(s)
		checksum = hex.EncodeToString(c[:])
	}
	return json.MarshalIndent(secretsJSON{
		SigningKey: signing,
		Checksum:   checksum,
		Type:       typ,
		Version:    FormatVersion,
		RepoID:     s.RepoID,
		ChunkKey:   base64.StdEncoding.EncodeToString(s.ChunkKey[:]),
		MetaKey:    base64.StdEncoding.EncodeToString(s.MetaKey[:]),
		Polynomial: s.Polynomial.String(),
		ConfigHash: s.ConfigHash,
		Recipients: s.Recipients,
		Generation: s.Generation,
		Past:       s.Past,
	}, "", "  ")
}

// The degrees of chunker polynomial a repository may have: those the
// chunker accepts.
const (
	MinPolynomialDegree = cdc.MinDegree
	MaxPolynomialDegree = cdc.MaxDegree
)

func unmarshalSecrets(b []byte, typ string) (*Secrets, error) {
	var w secretsJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	if w.Type != typ {
		return nil, fmt.Errorf("decode %s: file is a %q", typ, w.Type)
	}
	if w.Version != FormatVersion {
		return nil, fmt.Errorf("decode %s: unsupported version %d", typ, w.Version)
	}
	if _, err := ParseID(w.RepoID); err != nil {
		return nil, fmt.Errorf("decode %s: repository id: %w", typ, err)
	}
	if w.ConfigHash == (ID{}) {
		// Compared with the repository's config at open: without it the
		// repository would be blamed for the file's damage.
		return nil, fmt.Errorf("decode %s: no config_hash: the file is damaged or was not written by lifeboat; use an intact copy", typ)
	}
	s := &Secrets{RepoID: w.RepoID, ConfigHash: w.ConfigHash, Recipients: w.Recipients, Generation: w.Generation, Past: w.Past}
	if err := decodeKey(w.ChunkKey, &s.ChunkKey); err != nil {
		return nil, fmt.Errorf("decode %s: chunk key: %w", typ, err)
	}
	if err := decodeKey(w.MetaKey, &s.MetaKey); err != nil {
		return nil, fmt.Errorf("decode %s: metadata key: %w", typ, err)
	}
	// Pol.String writes "0x…"; fmt's %x would stop at the 'x' and read 0.
	pol, err := strconv.ParseUint(strings.TrimPrefix(w.Polynomial, "0x"), 16, 64)
	if err != nil {
		return nil, fmt.Errorf("decode %s: polynomial %q: %w", typ, w.Polynomial, err)
	}
	s.Polynomial = chunker.Pol(pol)
	if typ == writerKeyType && w.Checksum != "" {
		c := writerKeyChecksum(s)
		if w.Checksum != hex.EncodeToString(c[:]) {
			return nil, fmt.Errorf("decode %s: %w: it is damaged or was edited; use an intact copy, or write a new one with 'lifeboat key writer-key' (with an identity)", typ, ErrWriterKeyChecksum)
		}
	}
	if w.SigningKey != "" && typ == envelopeType {
		k, err := base64.StdEncoding.DecodeString(w.SigningKey)
		if err != nil || len(k) != ed25519.SeedSize {
			return nil, fmt.Errorf("decode %s: signing key is not a base64 Ed25519 seed", typ)
		}
		s.SigningKey = k
	}
	// Checked here, where the file is read, rather than when a backup
	// first makes its chunkers.
	if err := cdc.CheckPolynomial(s.Polynomial); err != nil {
		return nil, fmt.Errorf("decode %s: %w, which the chunker needs: the file is damaged or was not written by lifeboat; use an intact copy", typ, err)
	}
	if len(s.Recipients) == 0 {
		return nil, fmt.Errorf("decode %s: no recipients", typ)
	}
	if _, err := s.ParsedRecipients(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return s, nil
}

// ErrWriterKeyChecksum is ParseWriterKey's error for a file that does
// not match its checksum (writerKeyChecksum).
var ErrWriterKeyChecksum = errors.New("the file does not match its checksum")

// writerKeyChecksum is the SHA-256 of a writer key's secrets, which its
// file records. Nothing else checks them before they are used: a
// damaged chunk key would name the blobs of every backup so that no
// identity could restore them, while the backups themselves and check
// with the writer key find nothing wrong; a damaged metadata key would
// seal manifests no one can open. It is taken over the decoded values,
// not the file's text, so reformatting the JSON keeps it valid.
func writerKeyChecksum(s *Secrets) [32]byte {
	h := sha256.New()
	str := func(v string) {
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(v))))
		h.Write([]byte(v))
	}
	strs := func(vs []string) {
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(vs))))
		for _, v := range vs {
			str(v)
		}
	}
	str("lifeboat writer key checksum v1")
	str(s.RepoID)
	h.Write(s.ChunkKey[:])
	h.Write(s.MetaKey[:])
	h.Write(binary.LittleEndian.AppendUint64(nil, uint64(s.Polynomial)))
	h.Write(s.ConfigHash[:])
	strs(s.Recipients)
	h.Write(binary.LittleEndian.AppendUint32(nil, s.Generation))
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s.Past))))
	for _, p := range s.Past {
		h.Write(binary.LittleEndian.AppendUint32(nil, p.Generation))
		strs(p.Recipients)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func decodeKey(s string, dst *[32]byte) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b) != 32 {
		return fmt.Errorf("want 32 bytes, got %d", len(b))
	}
	copy(dst[:], b)
	return nil
}

// ParsedRecipients parses the recipients' public keys. X25519 ("age1...")
// and post-quantum hybrid ("age1pq1...") keys are accepted.
func (s *Secrets) ParsedRecipients() ([]age.Recipient, error) {
	return ParseRecipients(s.Recipients)
}

// ParseRecipients parses age public keys, one per element.
func ParseRecipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, k := range keys {
		k = strings.TrimSpace(k)
		rs, err := age.ParseRecipients(strings.NewReader(k))
		if err != nil {
			return nil, fmt.Errorf("recipient %s: %w", shorten(k), err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// NormalizeRecipients checks recipients a user gave (init, key add and
// remove) and returns them in their canonical form, the age library's
// spelling of each public key: one key per element, not the lines of a
// recipients file (they would be stored as one recipient that no later
// 'key remove' of one of them matches), each once. A secret key given by
// mistake is refused without being repeated in the error.
func NormalizeRecipients(keys []string) ([]string, error) {
	out := make([]string, 0, len(keys))
	firstPQ := false // whether out[0] is post-quantum
	for i, k := range keys {
		t := strings.TrimSpace(k)
		up := strings.ToUpper(t)
		switch {
		case strings.HasPrefix(up, "AGE-SECRET-KEY-") || strings.HasPrefix(up, "AGE-PLUGIN-"):
			return nil, fmt.Errorf("recipient %d is a secret key (an identity), not a public key: do not pass it on a command line; 'age-keygen -y FILE' prints the public key of an identity file", i+1)
		case t == "":
			return nil, fmt.Errorf("recipient %d is empty", i+1)
		case strings.ContainsAny(t, "\r\n") || strings.HasPrefix(t, "#"):
			return nil, fmt.Errorf("recipient %d (%s) is not one public key: give each recipient on its own (--recipient age1... --recipient age1...), not the lines of a recipients file", i+1, shorten(t))
		}
		rs, err := age.ParseRecipients(strings.NewReader(t))
		if err != nil {
			return nil, fmt.Errorf("recipient %s: %w", shorten(t), err)
		}
		c, err := canonicalRecipient(rs[0], t)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, c) {
			return nil, fmt.Errorf("recipient %s is given twice", c)
		}
		_, pq := rs[0].(*age.HybridRecipient)
		if len(out) == 0 {
			firstPQ = pq
		} else if pq != firstPQ {
			return nil, fmt.Errorf("recipients %s and %s are of different kinds: post-quantum (age1pq1...) and classic (age1...) recipients cannot be mixed, since a classic one would undo the post-quantum protection; make them all of one kind", shorten(out[0]), shorten(c))
		}
		out = append(out, c)
	}
	return out, nil
}

// CanonicalRecipients is a stored recipient list in canonical form, each
// key once: repositories written before NormalizeRecipients may hold a
// key twice, or several in one element.
func CanonicalRecipients(stored []string) ([]string, error) {
	var out []string
	for _, k := range stored {
		rs, err := age.ParseRecipients(strings.NewReader(strings.TrimSpace(k)))
		if err != nil {
			return nil, fmt.Errorf("stored recipient %s: %w", shorten(k), err)
		}
		for _, r := range rs {
			c, err := canonicalRecipient(r, k)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func canonicalRecipient(r age.Recipient, given string) (string, error) {
	s, ok := r.(fmt.Stringer)
	if !ok {
		return "", fmt.Errorf("recipient %s: a kind of recipient lifeboat cannot store", shorten(given))
	}
	return s.String(), nil
}

// shorten quotes a recipient for an error message, cut to a length that
// names it without filling the screen.
func shorten(s string) string {
	const max = 24
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}

// newSecrets generates fresh secrets for a new repository.
func newSecrets(repoID string, recipients []string) (*Secrets, error) {
	s := &Secrets{RepoID: repoID, Recipients: recipients}
	if _, err := rand.Read(s.ChunkKey[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(s.MetaKey[:]); err != nil {
		return nil, err
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return nil, fmt.Errorf("generate chunker polynomial: %w", err)
	}
	s.Polynomial = pol
	return s, nil
}

// WriterKey is the backup-only credential: the repository secrets in
// plaintext. It can create backups and read metadata; it cannot decrypt
// packs, trees or file names.
type WriterKey struct{ Secrets *Secrets }

// MarshalWriterKey encodes s as a writer key file.
func MarshalWriterKey(s *Secrets) ([]byte, error) {
	b, err := s.marshal(writerKeyType)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseWriterKey decodes a writer key file.
func ParseWriterKey(b []byte) (*Secrets, error) {
	b = bytes.TrimPrefix(b, []byte("\ufeff")) // as an editor may save it
	if looksLikeIdentity(b) {
		return nil, errors.New("this is an age identity, not a writer key: pass it with --identity")
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a lifeboat writer key (the JSON file `lifeboat init --key-out` writes)")
	}
	if !json.Valid(b) {
		// Cut short (a copy interrupted, a paste missing its end) or
		// edited: json's own words ("unexpected end of JSON input")
		// say nothing of which file or what to do.
		return nil, errors.New("damaged writer key: the file is not complete JSON (cut short or edited); use an intact copy, or write a new one with 'lifeboat key writer-key' (with an identity)")
	}
	return unmarshalSecrets(b, writerKeyType)
}

// envelopeMagic starts a signed key envelope: magic, the Ed25519
// signature (envelopeSigned), then the age ciphertext. Envelopes of
// repositories without a key_signer are the age ciphertext alone.
const envelopeMagic = "LBENV1\n\x00"

// envelopeSigned is what an envelope's signature covers: its repository,
// its generation and its ciphertext.
func envelopeSigned(repoID string, gen uint32, ciphertext []byte) []byte {
	h := sha256.Sum256(ciphertext)
	m := append([]byte("lifeboat key envelope\x00"), repoID...)
	m = binary.LittleEndian.AppendUint32(m, gen)
	return append(m, h[:]...)
}

// sealEnvelope encrypts the secrets to the recipients for keys/, and
// signs the result when the secrets hold a signing key.
func sealEnvelope(s *Secrets) ([]byte, error) {
	plain, err := s.marshal(envelopeType)
	if err != nil {
		return nil, err
	}
	rs, err := s.ParsedRecipients()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rs...)
	if err != nil {
		return nil, fmt.Errorf("encrypt key envelope: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	if s.SigningKey != nil {
		sig := ed25519.Sign(ed25519.NewKeyFromSeed(s.SigningKey), envelopeSigned(s.RepoID, s.Generation, out))
		out = append(append([]byte(envelopeMagic), sig...), out...)
	}
	// Every lifeboat ignores a larger object under keys/ (Envelopes):
	// written, it would open for no one.
	if len(out) > maxEnvelope {
		return nil, fmt.Errorf("%w: it would be %d bytes, and lifeboat reads at most %d", errEnvelopeTooLarge, len(out), maxEnvelope)
	}
	return out, nil
}

// errEnvelopeTooLarge is sealEnvelope's error for secrets whose envelope
// no lifeboat would read: too many recipients, or past recipients.
var errEnvelopeTooLarge = errors.New("the key envelope is too large")

// ErrUnsignedEnvelope is an object under keys/ that the repository's
// key_signer did not sign.
var ErrUnsignedEnvelope = errors.New("key envelope not signed by the repository's key signer")

// envelopeCiphertext checks an envelope object of generation gen against
// the config's signer and returns its age ciphertext.
func envelopeCiphertext(b []byte, cfg Config, gen uint32) ([]byte, error) {
	signer, err := cfg.signer()
	if err != nil {
		return nil, err
	}
	signed := bytes.HasPrefix(b, []byte(envelopeMagic))
	switch {
	case signer == nil && signed:
		return nil, fmt.Errorf("%w: a signed envelope in a repository without a key signer", ErrCorrupt)
	case signer == nil:
		return b, nil
	case !signed || len(b) < len(envelopeMagic)+ed25519.SignatureSize:
		return nil, ErrUnsignedEnvelope
	}
	sig := b[len(envelopeMagic) : len(envelopeMagic)+ed25519.SignatureSize]
	ct := b[len(envelopeMagic)+ed25519.SignatureSize:]
	if !ed25519.Verify(signer, envelopeSigned(cfg.ID, gen, ct), sig) {
		return nil, ErrUnsignedEnvelope
	}
	return ct, nil
}

// openEnvelope checks and decrypts a key envelope object of generation
// gen with the identities. It returns an error wrapping
// age.ErrIncorrectIdentity (via *age.NoIdentityMatchError) when none of
// them is a recipient.
func openEnvelope(b []byte, cfg Config, gen uint32, ids []age.Identity) (*Secrets, error) {
	ct, err := envelopeCiphertext(b, cfg, gen)
	if err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(ct), ids...)
	if err != nil {
		return nil, err
	}
	plain, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("decrypt key envelope: %w", err)
	}
	s, err := unmarshalSecrets(plain, envelopeType)
	if err != nil {
		return nil, err
	}
	if s.Generation != gen {
		return nil, fmt.Errorf("%w: the envelope holds recipients of generation %d, its name says %d", ErrCorrupt, s.Generation, gen)
	}
	if signer, _ := cfg.signer(); signer != nil {
		if s.SigningKey == nil || !bytes.Equal(ed25519.NewKeyFromSeed(s.SigningKey).Public().(ed25519.PublicKey), signer) {
			return nil, fmt.Errorf("%w: the envelope's signing key is not the config's key signer", ErrCorrupt)
		}
	}
	return s, nil
}

// ErrPassphraseRequired is returned by ParseIdentityFile for a
// passphrase-protected identity when no passphrase function is given.
var ErrPassphraseRequired = errors.New("identity file is passphrase-protected: set LIFEBOAT_PASSPHRASE or run on a terminal")

// ErrWrongPassphrase is returned when a passphrase does not open the file.
var ErrWrongPassphrase = errors.New("wrong passphrase for identity file")

// ParseIdentityFile parses an age identity file: one or more
// "AGE-SECRET-KEY-1..." (X25519) or "AGE-SECRET-KEY-PQ-1..." (hybrid) lines,
// optionally encrypted with a passphrase (age -p, binary or armored). For
// an encrypted file, passphrase is called once to get the passphrase.
func ParseIdentityFile(b []byte, passphrase func() (string, error)) ([]age.Identity, error) {
	b, _, err := DecryptIdentityFile(b, passphrase)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(b, []byte(`"`+writerKeyType+`"`)) {
		return nil, errors.New("this is a lifeboat writer key, not an identity: it can back up but cannot restore or list files; pass it with --key, and use the identity file for reading")
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		if looksLikeRecipients(b) {
			return nil, errors.New("this holds age public keys (recipients), not an identity: they encrypt, and cannot decrypt; pass the identity file, with AGE-SECRET-KEY-1... lines, as `lifeboat init --identity-out` or age-keygen write it")
		}
		return nil, fmt.Errorf("not an age identity file (as `lifeboat init --identity-out` or age-keygen write it): %w", err)
	}
	return ids, nil
}

// DecryptIdentityFile returns the plaintext of an identity file: b
// itself, or, for a passphrase-protected file (protected), what it
// decrypts to with the passphrase that passphrase returns (called once).
// It does not parse the identities (ParseIdentityFile).
func DecryptIdentityFile(b []byte, passphrase func() (string, error)) (plain []byte, protected bool, err error) {
	// A byte order mark, which some editors add when saving, is not
	// part of the file's first line.
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	trimmed := bytes.TrimSpace(b)
	if !bytes.HasPrefix(trimmed, []byte("age-encryption.org/")) && !bytes.HasPrefix(trimmed, []byte(armor.Header)) {
		return b, false, nil
	}
	if passphrase == nil {
		return nil, true, ErrPassphraseRequired
	}
	pass, err := passphrase()
	if err != nil {
		return nil, true, err
	}
	sid, err := age.NewScryptIdentity(pass)
	if err != nil {
		return nil, true, err
	}
	var src io.Reader = bytes.NewReader(trimmed)
	if bytes.HasPrefix(trimmed, []byte(armor.Header)) {
		src = armor.NewReader(src)
	}
	r, err := age.Decrypt(src, sid)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) || errors.Is(err, age.ErrIncorrectIdentity) {
			return nil, true, ErrWrongPassphrase
		}
		return nil, true, fmt.Errorf("decrypt identity file: %w", err)
	}
	inner, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, true, fmt.Errorf("decrypt identity file: %w", err)
	}
	return inner, true, nil
}

// looksLikeRecipients reports whether every line of b that is not a
// comment is an age public key: a recipients file, given for an identity.
func looksLikeRecipients(b []byte) bool {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := age.ParseRecipients(strings.NewReader(line)); err != nil {
			return false
		}
		n++
	}
	return n > 0
}

func looksLikeIdentity(b []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "AGE-SECRET-KEY-") || strings.HasPrefix(line, "age-encryption.org/") || strings.HasPrefix(line, armor.Header) {
			return true
		}
	}
	return false
}

// NewIdentity generates an identity: X25519 by default, or the
// post-quantum hybrid kind when pq is set. It returns the identity file
// text and the public recipient.
func NewIdentity(pq bool) (file []byte, recipient string, err error) {
	var secret string
	if pq {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return nil, "", err
		}
		secret, recipient = id.String(), id.Recipient().String()
	} else {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, "", err
		}
		secret, recipient = id.String(), id.Recipient().String()
	}
	file = fmt.Appendf(nil, "# lifeboat identity: full read access to the repository (restore, check --read-data, drills).\n# Keep it offline or in a secret manager; never give it to agents or the coordinator.\n# public key: %s\n%s\n", recipient, secret)
	return file, recipient, nil
}

// ProtectIdentityFile encrypts an identity file with a passphrase, in the
// armored form `age -p -a` produces.
func ProtectIdentityFile(file []byte, passphrase string) ([]byte, error) {
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(file); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
