package restore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// verifyWorkers files are read back at once, by findIdentical and by
// verify.
const verifyWorkers = 4

// verify reads back each file of files the restore wrote and did not
// fail, and fails those whose size or chunks differ from the snapshot's.
// Files found identical before the restore were checked the same way
// then and are counted without being read again. It returns how many
// files were found intact; the error is set only if ctx ends.
func (r *restorer) verify(ctx context.Context, files []*fileState) (int64, error) {
	var ok atomic.Int64
	bufs := make(readBufs, verifyWorkers)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyWorkers)
	for _, f := range files {
		if f.failed != nil || f.keep {
			continue
		}
		if f.skip {
			ok.Add(1)
			continue
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if err := bufs.check(r, f, nil, true); err != nil {
				r.setFailed(f, fmt.Errorf("read back after restoring (--verify): %w", err))
				return nil
			}
			ok.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return ok.Load(), err
}

// readBufs holds the read buffers of the workers that read files back.
type readBufs chan []byte

// check runs r.checkContent for f with a buffer from b.
func (b readBufs) check(r *restorer, f *fileState, st *unix.Stat_t, lendRead bool) error {
	var buf []byte
	select {
	case buf = <-b:
	default:
	}
	err := r.checkContent(f, st, &buf, lendRead)
	select {
	case b <- buf:
	default:
	}
	return err
}

// checkContent compares the file at f.path in the target with the
// snapshot's: a regular file of f.size bytes whose every chunk has the
// keyed ID the snapshot records. st is the file's lstat, when the caller
// has it; buf is a reusable read buffer.
func (r *restorer) checkContent(f *fileState, st *unix.Stat_t, buf *[]byte, lendRead bool) error {
	if st == nil {
		s, err := r.t.lstat(f.path)
		if err != nil {
			return err
		}
		st = &s
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("not a regular file")
	}
	if st.Size != f.size {
		return fmt.Errorf("%d bytes, the snapshot has %d", st.Size, f.size)
	}
	// O_NONBLOCK: should the file have been swapped for a FIFO since
	// st, the open does not wait for a writer (and the Fstat below
	// refuses to read it).
	fh, err := r.t.openFile(f.path, unix.O_RDONLY|unix.O_NONBLOCK)
	if lendRead && errors.Is(err, unix.EACCES) && int(st.Uid) == r.t.uid {
		// Its restored mode denies its owner reading (0200, 0000):
		// lend the owner read access for the check, then give the mode back.
		if pf, perr := r.t.openFile(f.path, unix.O_PATH); perr == nil {
			self := sysinfo.FDPath(int(pf.Fd()), "") // the file itself, never a symlink
			mode := st.Mode & 0o7777
			if unix.Chmod(self, mode|0o400) == nil {
				fh, err = r.t.openFile(f.path, unix.O_RDONLY|unix.O_NONBLOCK)
				_ = unix.Chmod(self, mode)
			}
			pf.Close()
		}
	}
	if err != nil {
		return err
	}
	defer fh.Close()
	// The file opened must be the one st describes: one swapped in since
	// (a FIFO with a writer that never writes, say) could block a read.
	var now unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &now); err != nil {
		return err
	}
	if now.Mode&unix.S_IFMT != unix.S_IFREG || now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("replaced while it was being read")
	}
	return r.repo.CompareContent(fh, len(f.chunks), func(i int) chunkstore.Chunk {
		return chunkstore.Chunk{ID: f.chunks[i].loc.Blob.ID, Length: f.chunks[i].length}
	}, buf)
}
