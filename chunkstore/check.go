package chunkstore

import (
	"context"
	"errors"
	"fmt"
)

// CheckOptions select how deep Check goes.
type CheckOptions struct {
	// ReadData downloads packs and verifies their hash, structure and
	// (with an identity) every blob's keyed ID. ReadDataFraction in (0,1]
	// limits that to a random subset of packs; 0 means all.
	ReadData         bool
	ReadDataFraction float64
	// Progress, if set, is called after each pack is read.
	Progress func(done, total int)
}

// Problem is one defect found by a check.
type Problem struct {
	Object string // object name or snapshot path the problem concerns
	Err    error
}

func (p Problem) Error() string { return fmt.Sprintf("%s: %v", p.Object, p.Err) }

// CheckReport is the outcome of Check.
type CheckReport struct {
	Packs, IndexFiles, Blobs int
	PacksRead                int
	BytesRead                int64
	Problems                 []Problem
}

// Check verifies the repository's structure without any lock: every
// index file decrypts and parses, every indexed pack exists with the
// recorded size, and, with ReadData, pack contents. It does not look at
// snapshots (see snapshot.Check).
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	return nil, errors.New("not implemented yet")
}
