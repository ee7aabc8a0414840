package chunkstore_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/mem"
	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
)

// TestCompareContent: a file is the snapshot's only when every chunk's
// keyed ID matches and nothing follows the last; otherwise the first
// chunk that differs or cannot be read is named.
func TestCompareContent(t *testing.T) {
	repo := storetest.InitRepos(t, mem.New()).Reader
	parts := [][]byte{[]byte("first chunk"), bytes.Repeat([]byte{7}, 1000), []byte("last")}
	var chunks []chunkstore.Chunk
	var whole []byte
	for _, p := range parts {
		chunks = append(chunks, chunkstore.Chunk{ID: repo.BlobID(p), Length: int64(len(p))})
		whole = append(whole, p...)
	}
	chunk := func(i int) chunkstore.Chunk { return chunks[i] }
	flipped := bytes.Clone(whole)
	flipped[len(parts[0])+500] ^= 1

	var buf []byte
	for _, tc := range []struct {
		name     string
		r        io.Reader
		chunk    int   // the chunk a *ContentError names, 0 for none
		readErr  error // the read error it carries
		contains string
	}{
		{"same", bytes.NewReader(whole), 0, nil, ""},
		{"one-byte-reads", iotest.OneByteReader(bytes.NewReader(whole)), 0, nil, ""},
		{"flipped", bytes.NewReader(flipped), 2, nil, "content differs in chunk 2 of 3 (bytes 11–1010)"},
		{"short", bytes.NewReader(whole[:len(whole)-1]), 3, io.ErrUnexpectedEOF, "reading chunk 3 of 3"},
		{"empty", bytes.NewReader(nil), 1, io.ErrUnexpectedEOF, "reading chunk 1 of 3"},
		{"longer", bytes.NewReader(append(bytes.Clone(whole), 0)), 0, nil, "holds more than the 1015 bytes"},
		{"read-error", iotest.TimeoutReader(bytes.NewReader(whole)), 2, iotest.ErrTimeout, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := repo.CompareContent(tc.r, len(chunks), chunk, &buf)
			if tc.contains == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("got %v, want an error saying %q", err, tc.contains)
			}
			var ce *chunkstore.ContentError
			if got := errors.As(err, &ce); got != (tc.chunk > 0) {
				t.Fatalf("*ContentError: %v, want %v", got, tc.chunk > 0)
			}
			if ce != nil && (ce.Chunk != tc.chunk || !errors.Is(err, tc.readErr) && tc.readErr != nil) {
				t.Fatalf("names chunk %d with %v, want chunk %d with %v", ce.Chunk, ce.Err, tc.chunk, tc.readErr)
			}
		})
	}
}
