// Package bench holds the pieces of the restic comparison harness
// (`make bench`, driven by internal/bench/lbbench): a deterministic dataset
// generator, restore verification, S3 request counting from MinIO's metrics
// and the results table. stages_test.go holds micro-benchmarks of the CPU-bound
// pipeline stages.
package bench

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/zeebo/xxh3"
)

// GenVersion changes whenever the generator's output changes, so a stale
// dataset on disk is regenerated instead of reused.
const GenVersion = 1

// DefaultSizeMB is the default dataset size in MiB.
const DefaultSizeMB = 1300

// Params select a dataset. Equal params produce byte-identical datasets.
type Params struct {
	Version int    `json:"version"`
	Seed    uint64 `json:"seed"`
	SizeMB  int    `json:"size_mb"`
}

// FileEntry is one file of a dataset: its slash-separated path relative to
// the dataset root, its size and the xxh3-128 of its content.
type FileEntry struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Hash string `json:"xxh3"`
	Kind string `json:"kind"`
}

// Manifest describes a generated dataset. It is stored next to the dataset
// directory (DIR.manifest.json) and doubles as the reuse stamp.
type Manifest struct {
	Params Params      `json:"params"`
	Files  []FileEntry `json:"files"`
}

// TotalBytes returns the sum of all file sizes.
func (m *Manifest) TotalBytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// BytesByKind sums file sizes per kind (src, vendor, log, csv, bin, image).
func (m *Manifest) BytesByKind() map[string]int64 {
	out := map[string]int64{}
	for _, f := range m.Files {
		out[f.Kind] += f.Size
	}
	return out
}

// CountByKind counts files per kind.
func (m *Manifest) CountByKind() map[string]int {
	out := map[string]int{}
	for _, f := range m.Files {
		out[f.Kind]++
	}
	return out
}

// ManifestPath is where the manifest of the dataset in dir is kept.
func ManifestPath(dir string) string { return filepath.Clean(dir) + ".manifest.json" }

// LoadOrGenerate returns the manifest of the dataset in dir, generating the
// dataset first unless dir already holds one with the same params (the
// manifest matches and every listed file exists with its size). The second
// result reports whether the dataset was (re)generated.
func LoadOrGenerate(dir string, p Params, progress func(string)) (*Manifest, bool, error) {
	if m, err := loadManifest(dir); err == nil && m.Params == p && quickCheck(dir, m) == nil {
		return m, false, nil
	}
	if progress != nil {
		progress(fmt.Sprintf("generating %d MiB dataset (seed %d) in %s", p.SizeMB, p.Seed, dir))
	}
	m, err := Generate(dir, p)
	return m, true, err
}

func loadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(ManifestPath(dir))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// quickCheck stats every file: enough to notice a half-written or edited
// dataset without re-reading 1.3 GB.
func quickCheck(dir string, m *Manifest) error {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != len(m.Files) {
		return fmt.Errorf("%d files on disk, manifest lists %d", n, len(m.Files))
	}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return err
		}
		if st.Size() != f.Size {
			return fmt.Errorf("%s: size %d, manifest says %d", f.Path, st.Size(), f.Size)
		}
	}
	return nil
}

// job is one file to write.
type job struct {
	path string // relative, slash-separated
	kind string
	size int64
	seed uint64
	// image patching: the file is the "image" stream of base seed with
	// patches at the given offsets.
	patches []int64
}

// Generate writes the dataset for p into dir (removing whatever was there)
// and its manifest next to it.
//
// Composition at the default 1300 MiB (everything scales with SizeMB):
//   - src/: ~15,000 source-code-like files, 1–40 KiB (skewed small), in
//     nested directories, three language flavours, Zipf-distributed
//     identifiers, shared licence headers; compresses roughly 3–5× like
//     real code;
//   - vendor/: a second copy of ~13% of src (a vendored checkout), exact
//     whole-file duplicates;
//   - dumps/app.log (~200 MiB) and dumps/orders.csv (~100 MiB): log and CSV
//     lines with timestamps, ids, request ids, compressing ~4–8×;
//   - images/disk-v1.img and disk-v2.img (~128 MiB each): random bytes,
//     v2 is v1 with 24 scattered 4 KiB patches (content-defined chunking
//     dedups most of it);
//   - bin/: random-byte blobs of 10–200 MiB filling the rest.
func Generate(dir string, p Params) (*Manifest, error) {
	if p.SizeMB < 8 {
		return nil, fmt.Errorf("dataset size %d MiB is too small (minimum 8)", p.SizeMB)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	_ = os.Remove(ManifestPath(dir))
	jobs := plan(p)

	dirs := map[string]bool{}
	for _, j := range jobs {
		dirs[filepath.Dir(filepath.Join(dir, filepath.FromSlash(j.path)))] = true
	}
	for d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	// Largest first so the workers finish together.
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return jobs[order[a]].size > jobs[order[b]].size })

	entries := make([]FileEntry, len(jobs))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newGen()
			for i := range next {
				j := &jobs[i]
				sz, h, err := g.writeJob(filepath.Join(dir, filepath.FromSlash(j.path)), j)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", j.path, err)
					}
					mu.Unlock()
					continue
				}
				entries[i] = FileEntry{Path: j.path, Size: sz, Hash: hex.EncodeToString(h[:]), Kind: j.kind}
			}
		}()
	}
	for _, i := range order {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	m := &Manifest{Params: p, Files: entries}
	sort.Slice(m.Files, func(a, b int) bool { return m.Files[a].Path < m.Files[b].Path })
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	tmp := ManifestPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return nil, err
	}
	return m, os.Rename(tmp, ManifestPath(dir))
}

func mix(seed uint64, parts ...uint64) uint64 {
	h := xxh3.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	_, _ = h.Write(b[:])
	for _, p := range parts {
		binary.LittleEndian.PutUint64(b[:], p)
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// plan lays out every file of the dataset. Everything random here derives
// from p.Seed, so the plan (and the content) is reproducible.
func plan(p Params) []job {
	total := int64(p.SizeMB) * mib
	scale := float64(p.SizeMB) / DefaultSizeMB
	r := rand.New(rand.NewPCG(p.Seed, mix(p.Seed, 1)))
	var jobs []job

	// Source tree: 12 projects, each a tree of packages up to 4 deep.
	nSrc := max(int(15000*scale), 40)
	words := vocabulary(mix(p.Seed, 2))
	type proj struct {
		name string
		ext  string
		dirs []string
	}
	exts := []string{".go", ".py", ".c", ".go", ".ts", ".py", ".go", ".c", ".h", ".go", ".py", ".ts"}
	var projects []proj
	for i := 0; i < 12; i++ {
		pr := proj{name: fmt.Sprintf("%s-%s", words[r.IntN(200)], words[r.IntN(400)]), ext: exts[i]}
		nd := 30 + r.IntN(90)
		pr.dirs = []string{""}
		for k := 0; k < nd; k++ {
			parent := pr.dirs[r.IntN(len(pr.dirs))]
			if strings.Count(parent, "/") >= 4 {
				parent = ""
			}
			d := words[r.IntN(600)]
			if parent != "" {
				d = parent + "/" + d
			}
			pr.dirs = append(pr.dirs, d)
		}
		projects = append(projects, pr)
	}
	seen := map[string]bool{}
	var srcTotal int64
	for i := 0; i < nSrc; i++ {
		pr := projects[r.IntN(len(projects))]
		prefix := "src/" + pr.name + "/"
		if d := pr.dirs[r.IntN(len(pr.dirs))]; d != "" {
			prefix += d + "/"
		}
		name := words[r.IntN(2000)]
		if r.IntN(3) == 0 {
			name += "_" + words[r.IntN(2000)]
		}
		path := prefix + name + pr.ext
		for k := 2; seen[path]; k++ {
			path = fmt.Sprintf("%s%s%d%s", prefix, name, k, pr.ext)
		}
		seen[path] = true
		u := r.Float64()
		size := int64(1*kib + u*u*39*kib)
		jobs = append(jobs, job{path: path, kind: "src", size: size, seed: mix(p.Seed, 10, uint64(i))})
		srcTotal += size
	}
	// vendor/: exact copies of ~13% of the source files (same seed and
	// size give the same bytes).
	nVendor := nSrc * 13 / 100
	var vendorTotal int64
	for i := 0; i < nVendor; i++ {
		src := jobs[r.IntN(nSrc)]
		path := "vendor/" + strings.TrimPrefix(src.path, "src/")
		if seen[path] {
			continue
		}
		seen[path] = true
		jobs = append(jobs, job{path: path, kind: "vendor", size: src.size, seed: src.seed})
		vendorTotal += src.size
	}

	logSize := int64(200 * scale * mib)
	csvSize := int64(100 * scale * mib)
	jobs = append(jobs,
		job{path: "dumps/app.log", kind: "log", size: logSize, seed: mix(p.Seed, 20)},
		job{path: "dumps/orders.csv", kind: "csv", size: csvSize, seed: mix(p.Seed, 21)},
	)

	imgSize := int64(128*scale*mib) &^ (4*kib - 1)
	imgSeed := mix(p.Seed, 30)
	var patches []int64
	for k := 0; k < 24; k++ {
		patches = append(patches, (r.Int64N(imgSize/(4*kib)))*4*kib)
	}
	sort.Slice(patches, func(a, b int) bool { return patches[a] < patches[b] })
	jobs = append(jobs,
		job{path: "images/disk-v1.img", kind: "image", size: imgSize, seed: imgSeed},
		job{path: "images/disk-v2.img", kind: "image", size: imgSize, seed: imgSeed, patches: patches},
	)

	rest := total - srcTotal - vendorTotal - logSize - csvSize - 2*imgSize
	binSizes := []int64{200, 150, 100, 60, 40, 20, 10}
	for k := 0; rest > 0; k++ {
		s := int64(float64(binSizes[k%len(binSizes)]) * scale * mib)
		s = max(s, 64*kib)
		if s > rest || k == len(binSizes)-1 {
			s = rest
		}
		name := fmt.Sprintf("bin/%s-%02d.bin", words[r.IntN(300)], k)
		jobs = append(jobs, job{path: name, kind: "bin", size: s, seed: mix(p.Seed, 40, uint64(k))})
		rest -= s
	}
	return jobs
}
