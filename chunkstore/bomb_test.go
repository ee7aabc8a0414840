package chunkstore_test

import (
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// A tiny zstd frame that expands to 256 MiB, in a blob whose index entry
// says 1 MiB, must be refused without decoding it all.
func TestBlobPayloadZstdBombIsBounded(t *testing.T) {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	bomb := enc.EncodeAll(make([]byte, 256<<20), nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := chunkstore.DecodeBlobPayloadForTest(nil, 1, bomb, 1<<20)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a blob that decompresses past its recorded size was accepted")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("rejecting a %d-byte blob allocated %d MiB", len(bomb), n>>20)
	}
}

// The decoder gets some slack past the recorded size for speed; a frame
// that expands into that slack is still refused.
func TestBlobPayloadSlightlyTooLongIsRefused(t *testing.T) {
	enc, _ := zstd.NewWriter(nil)
	const limit = 512 << 10
	// Without a buffer (exact allocation) and with one that has the slack.
	for _, dst := range [][]byte{nil, make([]byte, 0, limit+256<<10)} {
		for _, extra := range []int{1, 100, 64 << 10, 129 << 10} {
			frame := enc.EncodeAll(make([]byte, limit+extra), nil)
			if out, err := chunkstore.DecodeBlobPayloadForTest(dst, 1, frame, limit); err == nil {
				t.Errorf("cap %d: a frame of %d bytes decoded with limit %d (%d bytes out)", cap(dst), limit+extra, limit, len(out))
			}
		}
		frame := enc.EncodeAll(make([]byte, limit), nil)
		if out, err := chunkstore.DecodeBlobPayloadForTest(dst, 1, frame, limit); err != nil || len(out) != limit {
			t.Errorf("cap %d: a frame of exactly the limit: %d bytes, %v", cap(dst), len(out), err)
		}
	}
}
