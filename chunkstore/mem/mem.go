// Package mem is an in-memory chunkstore.Store for tests and the
// one-process playground. Objects live in a map guarded by a mutex; data is
// copied on the way in and on the way out, so callers can never alias the
// stored bytes.
package mem

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// Store is an in-memory object store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	objects map[string][]byte
	times   map[string]time.Time
}

var _ chunkstore.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string][]byte), times: make(map[string]time.Time)}
}

// Get implements chunkstore.Reader.
func (s *Store) Get(ctx context.Context, name string, offset, length int64) ([]byte, error) {
	if err := check(ctx, name); err != nil {
		return nil, err
	}
	s.mu.RLock()
	data, ok := s.objects[name]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, chunkstore.ErrNotFound)
	}
	size := int64(len(data))
	if length < 0 {
		length = size - offset
	}
	if offset < 0 || length < 0 || offset > size || length > size-offset {
		return nil, chunkstore.Permanent(fmt.Errorf("get %s: range [%d, +%d) outside object of %d bytes: %w", name, offset, length, size, chunkstore.ErrOutOfRange))
	}
	return append([]byte{}, data[offset:offset+length]...), nil
}

// Stat implements chunkstore.Reader.
func (s *Store) Stat(ctx context.Context, name string) (chunkstore.ObjectInfo, error) {
	if err := check(ctx, name); err != nil {
		return chunkstore.ObjectInfo{}, err
	}
	s.mu.RLock()
	data, ok := s.objects[name]
	mt := s.times[name]
	s.mu.RUnlock()
	if !ok {
		return chunkstore.ObjectInfo{}, fmt.Errorf("stat %s: %w", name, chunkstore.ErrNotFound)
	}
	return chunkstore.ObjectInfo{Name: name, Size: int64(len(data)), ModTime: mt}, nil
}

// List implements chunkstore.Reader. It takes a snapshot of the matching
// names first and calls fn without holding the lock, so fn may use the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(chunkstore.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	var infos []chunkstore.ObjectInfo
	for name, data := range s.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, chunkstore.ObjectInfo{Name: name, Size: int64(len(data)), ModTime: s.times[name]})
		}
	}
	s.mu.RUnlock()
	for _, oi := range infos {
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

// Put implements chunkstore.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, name); err != nil {
		return err
	}
	c := append(make([]byte, 0, len(data)), data...)
	s.mu.Lock()
	s.objects[name] = c
	s.times[name] = time.Now()
	s.mu.Unlock()
	return nil
}

// Delete implements chunkstore.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, name)
	delete(s.times, name)
	s.mu.Unlock()
	return nil
}

// Location implements chunkstore.Store.
func (s *Store) Location() string { return fmt.Sprintf("mem:%p", s) }

func check(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return chunkstore.CheckName(name)
}
