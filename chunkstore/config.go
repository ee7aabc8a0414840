package chunkstore

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// FormatVersion is the repository format this code writes and reads.
const FormatVersion = 1

// Object names and prefixes in the store.
const (
	ConfigName      = "config"
	KeysPrefix      = "keys/"
	DataPrefix      = "data/"
	IndexPrefix     = "index/"
	SnapshotsPrefix = "snapshots/"
)

// Chunking and packing defaults (docs/format.md) for new repositories;
// an existing repository keeps the parameters in its config.
//
// A boundary is looked for only after the minimum, and then found after
// 2^ChunkAvgBits bytes on average, so chunks average min + 2^bits: 19 bits
// give the ~1 MiB average (measured on the benchmark dataset: 1.00 MiB),
// where 20 bits — restic's setting — give ~1.5 MiB (measured: 1.46-1.50
// MiB). Smaller chunks store less for a small change inside a large file:
// 8 MiB (1 %) less on the benchmark dataset, whose second disk image
// differs from the first in 24 scattered 4 KiB patches.
const (
	DefaultChunkMin     = 512 << 10
	DefaultChunkMax     = 8 << 20
	DefaultChunkAvgBits = 19
	DefaultPackSize     = 16 << 20
)

// Config is the plaintext "config" object: everything a reader needs
// before any key is available. Its SHA-256 is recorded inside the sealed
// secrets, so a tampered config is detected on open.
type Config struct {
	Format       string `json:"format"` // always "lifeboat"
	Version      int    `json:"version"`
	ID           string `json:"id"` // repository ID, 64 hex digits
	Created      string `json:"created"`
	ChunkMin     uint   `json:"chunk_min"`
	ChunkMax     uint   `json:"chunk_max"`
	ChunkAvgBits int    `json:"chunk_avg_bits"`
	PackSize     int    `json:"pack_size"`
	Compression  string `json:"compression"` // "zstd"
	// KeySigner is the Ed25519 public key (base64) that signs the key
	// envelopes; absent in repositories created before signed envelopes.
	// Its private half is in the envelopes only, never in a writer key.
	KeySigner string `json:"key_signer,omitempty"`
}

// errConfigUnsupported marks a config of a format version this lifeboat
// does not read: intact, but newer.
var errConfigUnsupported = errors.New("upgrade lifeboat")

// ParseConfig decodes and validates a config object.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("not a lifeboat repository: config is not valid JSON: %w", err)
	}
	if c.Format != "lifeboat" {
		return c, fmt.Errorf("not a lifeboat repository: config format is %q", c.Format)
	}
	if c.Version < 1 {
		// No lifeboat wrote it: damage (a flipped bit turns 1 into 0),
		// not a newer format.
		return c, fmt.Errorf("config: format version %d was never written by any lifeboat (the first is 1)", c.Version)
	}
	if c.Version != FormatVersion {
		return c, fmt.Errorf("repository format version %d is not supported by this lifeboat (supports %d); %w", c.Version, FormatVersion, errConfigUnsupported)
	}
	if _, err := ParseID(c.ID); err != nil {
		return c, fmt.Errorf("config: repository id: %w", err)
	}
	if c.ChunkMin < 64<<10 || c.ChunkMax < c.ChunkMin || c.ChunkMax > 64<<20 || c.ChunkAvgBits < 12 || c.ChunkAvgBits > 26 {
		return c, fmt.Errorf("config: chunker parameters out of range (min %d, max %d, avg bits %d)", c.ChunkMin, c.ChunkMax, c.ChunkAvgBits)
	}
	if c.PackSize < 1<<20 || c.PackSize > 512<<20 {
		return c, fmt.Errorf("config: pack size %d out of range", c.PackSize)
	}
	if c.KeySigner != "" {
		if _, err := c.signer(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// signer returns the envelope signer's public key, or nil for a
// repository created before signed envelopes.
func (c Config) signer() (ed25519.PublicKey, error) {
	if c.KeySigner == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(c.KeySigner)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("config: key_signer is not a base64 Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}
