package chunkstore_test

import (
	"slices"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// TestJoinRanges: neighbours within RangeGap share a range, a wider gap
// or passing the limit starts a new one, and a blob as long as the limit
// is a range of its own.
func TestJoinRanges(t *testing.T) {
	const limit = 1 << 20
	g := uint32(chunkstore.RangeGap)
	b := func(off, n uint32) chunkstore.Blob { return chunkstore.Blob{Offset: off, Length: n} }
	blobs := []chunkstore.Blob{
		b(0, 100),
		b(100+g, 100),           // RangeGap after the first: joined
		b(200+2*g+1, 100),       // one byte more: a new range
		b(300+2*g+1, 5000),      // adjacent: joined
		b(5300+2*g+1, limit),    // would pass the limit: alone
		b(5300+2*g+1+limit, 10), // adjacent, but that range is full
	}
	if got, want := chunkstore.JoinRanges(blobs, limit), []int{2, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("JoinRanges = %v, want %v", got, want)
	}
	if got := chunkstore.JoinRanges(nil, limit); len(got) != 0 {
		t.Fatalf("no blobs: %v", got)
	}
}
