package bench

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/zeebo/xxh3"
)

// FindRestoredRoot locates the copy of the dataset directory datasetDir
// inside a restore target. Tools differ in where they put it: restic
// recreates the absolute path under the target, others may use the base
// name or restore the directory's contents directly. The candidate that
// holds the manifest's first file wins.
func FindRestoredRoot(target, datasetDir string, m *Manifest) (string, error) {
	abs, err := filepath.Abs(datasetDir)
	if err != nil {
		return "", err
	}
	if len(m.Files) == 0 {
		return "", errors.New("empty manifest")
	}
	probe := filepath.FromSlash(m.Files[0].Path)
	candidates := []string{
		filepath.Join(target, abs),
		filepath.Join(target, filepath.Base(abs)),
		target,
	}
	for _, c := range candidates {
		if _, err := os.Lstat(filepath.Join(c, probe)); err == nil {
			return c, nil
		}
	}
	// Last resort: search a few levels for the probe's parent chain.
	var found string
	_ = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipAll
		}
		if d.IsDir() {
			if strings.Count(strings.TrimPrefix(p, target), string(filepath.Separator)) > 8 {
				return filepath.SkipDir
			}
			if _, err := os.Lstat(filepath.Join(p, probe)); err == nil {
				found = p
				return filepath.SkipAll
			}
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("restored dataset not found under %s (looked for %s)", target, m.Files[0].Path)
	}
	return found, nil
}

// VerifyResult summarises a restore verification.
type VerifyResult struct {
	Files int
	Bytes int64
}

// VerifyTree checks that root holds exactly the files of m (no missing,
// no extra regular files) with the same sizes and xxh3-128 hashes. It
// returns an error describing up to ten differences.
func VerifyTree(root string, m *Manifest) (VerifyResult, error) {
	want := make(map[string]*FileEntry, len(m.Files))
	for i := range m.Files {
		want[m.Files[i].Path] = &m.Files[i]
	}
	var (
		problems []string
		mu       sync.Mutex
		res      VerifyResult
	)
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	type item struct {
		path string
		fe   *FileEntry
	}
	work := make(chan item, 256)
	var wg sync.WaitGroup
	for w := 0; w < max(2, runtime.GOMAXPROCS(0)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := xxh3.New()
			buf := make([]byte, 1<<20)
			for it := range work {
				f, err := os.Open(it.path)
				if err != nil {
					report("%s: %v", it.fe.Path, err)
					continue
				}
				h.Reset()
				n, err := io.CopyBuffer(h, f, buf)
				f.Close()
				if err != nil {
					report("%s: %v", it.fe.Path, err)
					continue
				}
				sum := h.Sum128().Bytes()
				switch {
				case n != it.fe.Size:
					report("%s: %d bytes, want %d", it.fe.Path, n, it.fe.Size)
				case hex.EncodeToString(sum[:]) != it.fe.Hash:
					report("%s: content differs", it.fe.Path)
				}
				mu.Lock()
				res.Files++
				res.Bytes += n
				mu.Unlock()
			}
		}()
	}
	seen := make(map[string]bool, len(m.Files))
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fe := want[rel]
		if fe == nil {
			report("%s: unexpected %s", rel, d.Type())
			return nil
		}
		if !d.Type().IsRegular() {
			report("%s: is %s, want a regular file", rel, d.Type())
			return nil
		}
		seen[rel] = true
		work <- item{path: p, fe: fe}
		return nil
	})
	close(work)
	wg.Wait()
	if walkErr != nil {
		problems = append(problems, walkErr.Error())
	}
	for _, f := range m.Files {
		if !seen[f.Path] {
			problems = append(problems, f.Path+": missing")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		n := len(problems)
		if n > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", n-10))
		}
		return res, fmt.Errorf("restore differs from the dataset in %d places:\n  %s", n, strings.Join(problems, "\n  "))
	}
	return res, nil
}
