package chunkstore

import (
	"fmt"
	"io"
)

// Chunk is one chunk of a file's content as a snapshot records it: its
// keyed ID and its length in bytes.
type Chunk struct {
	ID     ID
	Length int64
}

// ContentError is what CompareContent returns for the first chunk of a
// file that is not the snapshot's: Err is set when the chunk could not
// be read (a short file among them), Got otherwise.
type ContentError struct {
	Chunk, Chunks int   // which chunk (from 1), of how many
	Off, Len      int64 // where it is in the file
	Got, Want     ID
	Err           error
}

func (e *ContentError) Error() string {
	where := fmt.Sprintf("chunk %d of %d (bytes %d–%d)", e.Chunk, e.Chunks, e.Off, e.Off+e.Len-1)
	if e.Err != nil {
		return fmt.Sprintf("reading %s: %v", where, e.Err)
	}
	return fmt.Sprintf("content differs in %s: its keyed ID is %s, the snapshot records %s", where, e.Got.Short(), e.Want.Short())
}

func (e *ContentError) Unwrap() error { return e.Err }

// CompareContent reads a file's content from f, chunk by chunk, and
// compares each of its n chunks' keyed ID with the one chunk(i) gives. It
// returns a *ContentError for the first that differs or cannot be read,
// an error naming the length when f holds more than the chunks, and nil
// when f holds exactly the recorded content. buf is a read buffer kept
// (and grown) between calls.
func (r *Repository) CompareContent(f io.Reader, n int, chunk func(i int) Chunk, buf *[]byte) error {
	var off int64
	for i := range n {
		c := chunk(i)
		if int64(cap(*buf)) < c.Length {
			*buf = make([]byte, c.Length)
		}
		b := (*buf)[:c.Length]
		if _, err := io.ReadFull(f, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return &ContentError{Chunk: i + 1, Chunks: n, Off: off, Len: c.Length, Err: err}
		}
		if got := r.BlobID(b); got != c.ID {
			return &ContentError{Chunk: i + 1, Chunks: n, Off: off, Len: c.Length, Got: got, Want: c.ID}
		}
		off += c.Length
	}
	var one [1]byte
	if k, _ := f.Read(one[:]); k > 0 {
		return fmt.Errorf("the file holds more than the %d bytes the snapshot records", off)
	}
	return nil
}
