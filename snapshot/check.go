package snapshot

import (
	"context"
	"errors"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Check loads every snapshot and, with an identity, walks every tree and
// checks that each referenced blob is in the index. Without an identity it
// checks only that manifests decrypt and their root trees are indexed.
// The index must be loaded.
func Check(ctx context.Context, repo *chunkstore.Repository) ([]chunkstore.Problem, error) {
	return nil, errors.New("not implemented yet")
}
