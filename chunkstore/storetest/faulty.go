package storetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Op names one method of chunkstore.Store, for fault injection.
type Op string

// The operations Faulty can fail.
const (
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpPut    Op = "put"
	OpDelete Op = "delete"
)

// ErrInjected is the transient error Faulty returns when no other error was
// given.
var ErrInjected = errors.New("injected fault")

// Faulty wraps a Store and injects failures on request. It is safe for
// concurrent use; faults are armed with its methods and consumed as calls
// arrive. Faults never touch the wrapped store's contents: a failed Put
// stores nothing.
type Faulty struct {
	chunkstore.Store

	mu        sync.Mutex
	failNext  map[Op][]error
	putPrefix map[string]error
	getName   map[string]error
	corrupt   map[string]func([]byte) []byte
	listAfter int // -1: disarmed
	listErr   error
	calls     map[Op]int
}

var _ chunkstore.Store = (*Faulty)(nil)

// NewFaulty returns a Faulty around s with no fault armed.
func NewFaulty(s chunkstore.Store) *Faulty {
	return &Faulty{
		Store:     s,
		failNext:  make(map[Op][]error),
		putPrefix: make(map[string]error),
		getName:   make(map[string]error),
		corrupt:   make(map[string]func([]byte) []byte),
		listAfter: -1,
		calls:     make(map[Op]int),
	}
}

// FailNext makes the next n calls of op fail with err (ErrInjected when nil)
// without reaching the wrapped store. Calls add up.
func (f *Faulty) FailNext(op Op, n int, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failNext[op] = append(f.failNext[op], err)
	}
}

// FailPuts makes every Put of a name starting with prefix fail with err
// (ErrInjected when nil) until Reset.
func (f *Faulty) FailPuts(prefix string, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putPrefix[prefix] = err
}

// FailGets makes every Get of name fail with err (ErrInjected when nil)
// until Reset, as a server that cannot reach one object's disks would.
func (f *Faulty) FailGets(name string, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.getName[name] = err
}

// TruncateGet makes every successful Get of name return its bytes minus
// the last n (or nothing, if fewer), as a store with a short read would.
func (f *Faulty) TruncateGet(name string, n int) {
	f.setCorrupt(name, func(b []byte) []byte { return b[:max(len(b)-n, 0)] })
}

// FlipGet makes every successful Get of name return its bytes with bit
// number bit (counting from bit 0 of the first returned byte, modulo the
// returned length) inverted.
func (f *Faulty) FlipGet(name string, bit int) {
	f.setCorrupt(name, func(b []byte) []byte {
		if len(b) > 0 {
			i := (bit / 8) % len(b)
			b[i] ^= 1 << (bit % 8)
		}
		return b
	})
}

func (f *Faulty) setCorrupt(name string, fn func([]byte) []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.corrupt[name] = fn
}

// FailListAfter makes the next List fail with err (ErrInjected when nil)
// after k objects have been passed to its callback. It fires once.
func (f *Faulty) FailListAfter(k int, err error) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listAfter, f.listErr = k, err
}

// Calls reports how many times op was called, faulty or not.
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Reset disarms every fault and zeroes the call counters.
func (f *Faulty) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.failNext)
	clear(f.putPrefix)
	clear(f.getName)
	clear(f.corrupt)
	clear(f.calls)
	f.listAfter, f.listErr = -1, nil
}

// enter counts a call of op and returns the injected error to fail it with, if any.
func (f *Faulty) enter(op Op, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if errs := f.failNext[op]; len(errs) > 0 {
		f.failNext[op] = errs[1:]
		return fmt.Errorf("%s %s: %w", op, name, errs[0])
	}
	if err := f.getName[name]; op == OpGet && err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if op == OpPut {
		for p, err := range f.putPrefix {
			if strings.HasPrefix(name, p) {
				return fmt.Errorf("%s %s: %w", op, name, err)
			}
		}
	}
	return nil
}

// Get implements chunkstore.Reader.
func (f *Faulty) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	if err := f.enter(OpGet, name); err != nil {
		return nil, err
	}
	b, err := f.Store.Get(ctx, name, offset, length)
	if err != nil {
		return b, err
	}
	f.mu.Lock()
	fn := f.corrupt[name]
	f.mu.Unlock()
	if fn != nil {
		b = fn(b)
	}
	return b, nil
}

// Stat implements chunkstore.Reader.
func (f *Faulty) Stat(ctx context.Context, name string) (chunkstore.ObjectInfo, error) {
	if err := f.enter(OpStat, name); err != nil {
		return chunkstore.ObjectInfo{}, err
	}
	return f.Store.Stat(ctx, name)
}

// List implements chunkstore.Reader.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if err := f.enter(OpList, prefix); err != nil {
		return err
	}
	f.mu.Lock()
	k, listErr := f.listAfter, f.listErr
	f.listAfter, f.listErr = -1, nil
	f.mu.Unlock()
	if k < 0 {
		return f.Store.List(ctx, prefix, fn)
	}
	injected := fmt.Errorf("list %s: %w", prefix, listErr)
	n := 0
	err := f.Store.List(ctx, prefix, func(oi chunkstore.ObjectInfo) error {
		if n == k {
			return injected
		}
		n++
		return fn(oi)
	})
	if err == nil {
		// k or fewer objects: fail at the end all the same.
		err = injected
	}
	return err
}

// Put implements chunkstore.Store.
func (f *Faulty) Put(ctx context.Context, name string, data []byte) error {
	if err := f.enter(OpPut, name); err != nil {
		return err
	}
	return f.Store.Put(ctx, name, data)
}

// Delete implements chunkstore.Store.
func (f *Faulty) Delete(ctx context.Context, name string) error {
	if err := f.enter(OpDelete, name); err != nil {
		return err
	}
	return f.Store.Delete(ctx, name)
}

// Hiding leaves one object (Hide) out of Store's listings, as a store
// whose listings lag behind its writes may; everything else passes
// through.
type Hiding struct {
	chunkstore.Store
	Hide string
}

// List lists Store's objects under prefix, except Hide.
func (h Hiding) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	return h.Store.List(ctx, prefix, func(oi chunkstore.ObjectInfo) error {
		if oi.Name == h.Hide {
			return nil
		}
		return fn(oi)
	})
}

// Unshared returns a view of s that lists only the packs and index files
// written through it, as if other writers' ones were not there yet: a
// backup through it stores again what others stored, as two hosts' first
// backups of the same files running at once do, leaving blobs the index
// lists twice.
func Unshared(s chunkstore.Store) chunkstore.Store {
	return &unshared{Store: s, own: map[string]bool{}}
}

type unshared struct {
	chunkstore.Store
	mu  sync.Mutex
	own map[string]bool
}

func (s *unshared) Put(ctx context.Context, name string, data []byte) error {
	s.mu.Lock()
	s.own[name] = true
	s.mu.Unlock()
	return s.Store.Put(ctx, name, data)
}

func (s *unshared) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, func(oi chunkstore.ObjectInfo) error {
		s.mu.Lock()
		hide := (strings.HasPrefix(oi.Name, "index/") || strings.HasPrefix(oi.Name, "data/")) && !s.own[oi.Name]
		s.mu.Unlock()
		if hide {
			return nil
		}
		return fn(oi)
	})
}

// FlipBlob flips the bits of mask in the middle byte of the blob at l, in
// the pack file of the local repository at root (a bit-rotted disk), and
// returns the pack's object name.
func FlipBlob(t testing.TB, root string, l chunkstore.Location, mask byte) string {
	t.Helper()
	name := chunkstore.PackName(l.Pack.ID)
	p := filepath.Join(root, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[int(l.Blob.Offset)+int(l.Blob.Length)/2] ^= mask
	if err := os.Chmod(p, 0o600); err != nil { // packs are written read-only
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// UnsharedWriter opens, through Unshared(st), a second writer of the
// repository w writes to: what it backs up is stored again.
func UnsharedWriter(t testing.TB, st chunkstore.Store, w *chunkstore.Repository) *chunkstore.Repository {
	t.Helper()
	r, err := chunkstore.Open(context.Background(), Unshared(st), chunkstore.Credentials{Writer: w.Secrets()}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
