// Command manyfiles generates a tree of many small files, the shape of a
// mail spool, a source monorepo or a package cache, for
// scripts/manyfiles-bench.sh: it measures what a backup and a restore cost
// per file rather than per byte (docs/benchmarks.md, "Many small files").
//
//	go run ./internal/bench/manyfiles -dir DIR [-files 1000000] [-per-dir 1000] [-max-size 2048] [-seed 1]
//	go run ./internal/bench/manyfiles -verify -dir RESTORED [same flags]
//
// File sizes are drawn from 0 to -max-size bytes (one in sixteen empty),
// contents are pseudo-random text, so they compress somewhat and never
// deduplicate by accident; the same flags give the same tree, byte for
// byte. An existing DIR is refused: remove it first. With -verify, DIR is
// compared with the tree the flags describe instead: every file's bytes,
// and no entry more or less.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

func main() {
	dir := flag.String("dir", "", "directory to create (must not exist)")
	files := flag.Int("files", 1_000_000, "number of files")
	perDir := flag.Int("per-dir", 1000, "files per directory")
	maxSize := flag.Int("max-size", 2048, "largest file size in bytes")
	seed := flag.Uint64("seed", 1, "seed of the sizes and contents")
	verify := flag.Bool("verify", false, "compare DIR with the tree instead of writing it")
	flag.Parse()
	if *dir == "" || *files < 1 || *perDir < 1 || *maxSize < 0 {
		fmt.Fprintln(os.Stderr, "manyfiles: -dir is required; -files and -per-dir must be at least 1, -max-size at least 0")
		os.Exit(2)
	}
	t := tree{root: *dir, files: *files, perDir: *perDir, maxSize: *maxSize, seed: *seed, verify: *verify}
	if t.verify {
		if fi, err := os.Stat(t.root); err != nil || !fi.IsDir() {
			fmt.Fprintf(os.Stderr, "manyfiles: -verify: %s is not a directory (%v)\n", t.root, err)
			os.Exit(1)
		}
	} else if err := os.Mkdir(*dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "manyfiles: %v (the directory must not exist yet)\n", err)
		os.Exit(1)
	}
	dirs := (*files + *perDir - 1) / *perDir
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for d := range work {
				if err := t.dir(d); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for d := range dirs {
		work <- d
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Fprintf(os.Stderr, "manyfiles: %v\n", err)
		os.Exit(1)
	default:
	}
	if t.verify {
		if err := t.noExtraTopLevel(dirs); err != nil {
			fmt.Fprintf(os.Stderr, "manyfiles: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("manyfiles: %s matches: %d files in %d directories\n", *dir, *files, dirs)
		return
	}
	fmt.Printf("manyfiles: %d files in %d directories under %s\n", *files, dirs, *dir)
}

type tree struct {
	root                   string
	files, perDir, maxSize int
	seed                   uint64
	verify                 bool
}

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 \n"

// dir writes (or verifies) directory d's files; each directory's
// generator is seeded from the seed and d alone, so the tree does not
// depend on the order the workers take them in.
func (t tree) dir(d int) error {
	rng := rand.New(rand.NewPCG(t.seed, uint64(d)))
	sub := filepath.Join(t.root, group(d), fmt.Sprintf("d%06d", d))
	if !t.verify {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
	}
	buf := make([]byte, t.maxSize)
	n := 0
	for i := d * t.perDir; i < min(t.files, (d+1)*t.perDir); i++ {
		size := rng.IntN(t.maxSize + 1)
		if rng.IntN(16) == 0 {
			size = 0
		}
		for j := range size {
			buf[j] = alphabet[rng.IntN(len(alphabet))]
		}
		name := filepath.Join(sub, fmt.Sprintf("f%07d.txt", i))
		n++
		if !t.verify {
			if err := os.WriteFile(name, buf[:size], 0o644); err != nil {
				return err
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, buf[:size]) {
			return fmt.Errorf("%s: %d bytes differ from the %d generated", name, len(got), size)
		}
	}
	if t.verify {
		ents, err := os.ReadDir(sub)
		if err != nil {
			return err
		}
		if len(ents) != n {
			return fmt.Errorf("%s holds %d entries, want %d", sub, len(ents), n)
		}
	}
	return nil
}

func group(d int) string { return fmt.Sprintf("d%04d", d/100) }

// noExtraTopLevel checks that the root and each group directory hold
// only the directories the tree has.
func (t tree) noExtraTopLevel(dirs int) error {
	want := map[string]int{}
	for d := range dirs {
		want[group(d)]++
	}
	top, err := os.ReadDir(t.root)
	if err != nil {
		return err
	}
	if len(top) != len(want) {
		return fmt.Errorf("%s holds %d entries, want %d", t.root, len(top), len(want))
	}
	for g, n := range want {
		ents, err := os.ReadDir(filepath.Join(t.root, g))
		if err != nil {
			return err
		}
		if len(ents) != n {
			return fmt.Errorf("%s holds %d entries, want %d", filepath.Join(t.root, g), len(ents), n)
		}
	}
	return nil
}
