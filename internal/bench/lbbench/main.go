// Command lbbench is the driver behind `make bench` (scripts/bench.sh): it
// generates (or reuses) the benchmark dataset, runs restic and lifeboat
// against fresh buckets on the same S3 server, counts their S3 requests
// from the server's own metrics, verifies both restores against the
// dataset and prints a markdown table comparing them with the DESIGN.md
// performance targets.
//
// It expects the S3 server in LIFEBOAT_TEST_S3_ENDPOINT,
// LIFEBOAT_TEST_S3_ACCESS_KEY and LIFEBOAT_TEST_S3_SECRET_KEY, as set by
// `scripts/minio.sh run`. See docs/benchmarks.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/lifeboat-backup/lifeboat/internal/bench"
	"github.com/lifeboat-backup/lifeboat/internal/sysinfo"
)

func main() {
	if child, err := pretouchChild(); child {
		if err != nil {
			fmt.Fprintf(os.Stderr, "lbbench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "lbbench: %v\n", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if v := os.Getenv(k); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

type config struct {
	dir, out         string
	sizeMB           int
	seed             uint64
	resticBin, lbBin string
	cleanupWait      time.Duration
	tools            map[string]bool
	order            string
	genOnly, keep    bool
	dropCaches       bool
	pretouchMiB      int
	runs             int
	endpoint, ak, sk string
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lbbench: "+format+"\n", args...)
}

func run() error {
	var c config
	var tools string
	flag.StringVar(&c.dir, "dir", envOr("BENCH_DIR", filepath.Join(os.TempDir(), "lifeboat-bench")), "base directory: dataset in DIR/data, scratch in DIR/work (env BENCH_DIR)")
	flag.IntVar(&c.sizeMB, "size-mb", envInt("BENCH_SIZE_MB", bench.DefaultSizeMB), "dataset size in MiB (env BENCH_SIZE_MB)")
	seed := flag.Uint64("seed", uint64(envInt("BENCH_SEED", 1)), "dataset PRNG seed (env BENCH_SEED)")
	flag.StringVar(&c.out, "out", "bench-results.md", "write the results table here")
	flag.StringVar(&c.resticBin, "restic", "restic", "restic binary")
	flag.StringVar(&c.lbBin, "lifeboat", "bin/lifeboat", "lifeboat binary")
	flag.DurationVar(&c.cleanupWait, "cleanup-wait", recentlyDeletedWindow, "after a cleanup of restored trees, wait this long before measuring (ext4 creates files slowly right after mass deletions); 0 = do not wait")
	flag.StringVar(&tools, "tools", envOr("BENCH_TOOLS", "restic,lifeboat"), "tools to run (env BENCH_TOOLS); restic is always the baseline")
	flag.StringVar(&c.order, "order", envOr("BENCH_ORDER", "alternating"), "alternating (each step: both tools, restic first in odd rounds and lifeboat first in even ones), interleaved (each step: restic then lifeboat) or sequential (all restic steps, then all lifeboat steps) (env BENCH_ORDER)")
	flag.IntVar(&c.runs, "runs", envInt("BENCH_RUNS", 1), "rounds to run; the report shows the median round per step (env BENCH_RUNS)")
	flag.BoolVar(&c.genOnly, "gen-only", false, "generate the dataset and exit")
	flag.BoolVar(&c.keep, "keep", false, "keep restore directories and logs")
	flag.BoolVar(&c.dropCaches, "drop-caches", envOr("BENCH_DROP_CACHES", "1") != "0", "before each round, drop the page cache (needs root; skipped with a note otherwise) and read the dataset again, so every round starts from the same memory state (env BENCH_DROP_CACHES=0 turns it off)")
	flag.IntVar(&c.pretouchMiB, "pretouch-mib", envInt("BENCH_PRETOUCH_MIB", 3072), "before each step, touch and free this much memory (at most a quarter of what is available), so that neither tool writes into pages a VM's balloon has handed back to the host (see pretouch.go); 0 = do not (env BENCH_PRETOUCH_MIB)")
	flag.Parse()
	c.seed = *seed
	c.tools = map[string]bool{}
	for _, t := range strings.Split(tools, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.tools[t] = true
		}
	}
	c.tools["restic"] = true
	if c.runs < 1 {
		return fmt.Errorf("-runs must be at least 1")
	}
	if c.order != "alternating" && c.order != "interleaved" && c.order != "sequential" {
		return fmt.Errorf("-order must be alternating, interleaved or sequential, not %q", c.order)
	}

	dataDir := filepath.Join(c.dir, "data")
	t0 := time.Now()
	m, regenerated, err := bench.LoadOrGenerate(dataDir, bench.Params{Version: bench.GenVersion, Seed: c.seed, SizeMB: c.sizeMB}, func(s string) { logf("%s", s) })
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	if regenerated {
		logf("dataset generated in %.1f s", time.Since(t0).Seconds())
	} else {
		logf("reusing dataset in %s (stamp %s matches)", dataDir, bench.ManifestPath(dataDir))
	}
	logf("dataset: %d files, %s: %s", len(m.Files), bench.FmtBytes(m.TotalBytes()), composition(m))
	if c.genOnly {
		return nil
	}

	c.endpoint = os.Getenv("LIFEBOAT_TEST_S3_ENDPOINT")
	c.ak = os.Getenv("LIFEBOAT_TEST_S3_ACCESS_KEY")
	c.sk = os.Getenv("LIFEBOAT_TEST_S3_SECRET_KEY")
	if c.endpoint == "" || c.ak == "" || c.sk == "" {
		return errors.New("LIFEBOAT_TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY not set: run under scripts/minio.sh run -- (scripts/bench.sh does)")
	}

	// Read the whole dataset once: it checks the files still match the
	// manifest and leaves them in the page cache, so both tools start
	// from the same (warm) cache state. With -drop-caches the rounds read
	// it again after each drop; this first read still comes before the
	// cleanup wait, so a damaged dataset fails the run at once.
	t0 = time.Now()
	if _, err := bench.VerifyTree(dataDir, m); err != nil {
		return fmt.Errorf("dataset on disk does not match its manifest (delete %s to regenerate): %w", bench.ManifestPath(dataDir), err)
	}
	logf("dataset verified and page cache warmed in %.1f s", time.Since(t0).Seconds())

	work := filepath.Join(c.dir, "work")
	stamp := filepath.Join(c.dir, "cleanup.stamp")
	if _, err := os.Stat(work); err == nil {
		if err := removeWork(work, stamp); err != nil {
			return err
		}
	}
	waitAfterCleanup(stamp, c.cleanupWait)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}

	counter := bench.NewS3Counter(c.endpoint, c.ak, c.sk)
	if _, err := counter.Snapshot(context.Background()); err != nil {
		return err
	}

	mc, err := minio.New(c.endpoint, &minio.Options{Creds: credentials.NewStaticV4(c.ak, c.sk, ""), Secure: false})
	if err != nil {
		return err
	}
	ctx := context.Background()
	load0 := loadAvg()
	var all [][]*bench.ToolResult // per tool, per round
	caches := "page cache kept between rounds (-drop-caches=false)"
	for round := 1; round <= c.runs; round++ {
		if c.runs > 1 {
			logf("round %d of %d", round, c.runs)
		}
		if c.dropCaches {
			if err := dropPageCache(dropCachesFile); err != nil {
				logf("page cache not dropped (run as root, or pass -drop-caches=false to silence this): rounds start from whatever memory state the last one left: %v", err)
				caches = fmt.Sprintf("page cache not dropped (%v)", err)
				c.dropCaches = false
			} else {
				t0 := time.Now()
				if _, err := bench.VerifyTree(dataDir, m); err != nil {
					return fmt.Errorf("dataset in %s changed during the run (delete %s to regenerate it, and run again): %w", dataDir, bench.ManifestPath(dataDir), err)
				}
				logf("page cache dropped, dataset read again in %.1f s", time.Since(t0).Seconds())
				caches = "page cache dropped before each round, then the dataset read again"
			}
		}
		res, err := c.round(ctx, mc, counter, work, dataDir, m, round)
		if err != nil {
			return err
		}
		for i, r := range res {
			if len(all) <= i {
				all = append(all, nil)
			}
			all[i] = append(all[i], r)
		}
	}

	rep := &bench.Report{
		Date:         time.Now(),
		Host:         hostInfo(),
		Order:        orderText(c.order) + "; " + caches + "; " + pretouchText(c.pretouchMiB),
		Load:         fmt.Sprintf("load average %s at start, %s at end", load0, loadAvg()),
		Runs:         c.runs,
		DatasetDir:   dataDir,
		DatasetFiles: len(m.Files),
		DatasetBytes: m.TotalBytes(),
		Composition:  composition(m),
		Restic:       bench.Median(all[0]),
		AllRestic:    all[0],
	}
	if len(all) > 1 {
		rep.Lifeboat = bench.Median(all[1])
		rep.AllLifeboat = all[1]
	}
	md := rep.Markdown()
	fmt.Println()
	fmt.Print(md)
	if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
		return err
	}
	abs, _ := filepath.Abs(c.out)
	logf("results written to %s", abs)
	if !c.keep {
		if err := removeWork(work, stamp); err != nil {
			logf("could not remove %s: %v (the next run tries again before it measures; free the space by hand if it is short)", work, err)
		}
	}
	return nil
}

// dropCachesFile is the kernel's knob for dropping clean caches.
const dropCachesFile = "/proc/sys/vm/drop_caches"

// dropPageCache writes back dirty pages and drops the clean page cache,
// dentries and inodes by writing 3 to file (dropCachesFile). A round then
// starts with free memory: taking pages the cache holds costs reclaim,
// and how much the cache holds depends on everything that ran before;
// without this, later rounds and later runs measured slower restores and
// backups (docs/benchmarks.md).
func dropPageCache(file string) error {
	syscall.Sync()
	return os.WriteFile(file, []byte("3\n"), 0o644)
}

// recentlyDeletedWindow is how long after a mass deletion file creation
// on ext4 stays slow. Without a journal (as on the development VM), ext4
// skips inodes freed in the last minute — the last six while their inode
// table block is dirty — when it allocates new ones, looking each
// candidate up in the buffer cache: for three minutes after a previous
// run had deleted its 100,000 restored files, both tools' restores spent
// 20-30 % of their time in find_inode_bit / recently_deleted even though
// the driver had synced. So a run that follows a cleanup waits this long
// (-cleanup-wait).
const recentlyDeletedWindow = 370 * time.Second

// removeWork deletes a previous run's work directory (restored trees,
// caches), syncs so the freed inodes' table blocks are clean, and notes
// the time in stamp for waitAfterCleanup. An empty one (a run stopped
// before its first step) is removed without a note: no inode was freed.
func removeWork(work, stamp string) error {
	if entries, err := os.ReadDir(work); err == nil && len(entries) == 0 {
		return os.Remove(work)
	}
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	syscall.Sync()
	return os.WriteFile(stamp, []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o644)
}

// waitAfterCleanup sleeps until recentlyDeletedWindow has passed since
// the last cleanup recorded in stamp (by this run or the previous one),
// so that neither tool's restore pays for files deleted before it.
func waitAfterCleanup(stamp string, window time.Duration) time.Duration {
	b, err := os.ReadFile(stamp)
	if err != nil {
		return 0
	}
	at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		logf("ignoring %s: %v", stamp, err)
		return 0
	}
	wait := time.Until(at.Add(window))
	if wait <= 0 {
		return 0
	}
	logf("waiting %.0f s after the last cleanup (ext4 allocates inodes slowly right after a mass deletion; see docs/benchmarks.md)", wait.Seconds())
	time.Sleep(wait)
	return wait
}

// round runs every tool once through full backup, no-change backup and
// restore, each against a fresh bucket.
func (c *config) round(ctx context.Context, mc *minio.Client, counter *bench.S3Counter, work, dataDir string, m *bench.Manifest, round int) ([]*bench.ToolResult, error) {
	stamp := fmt.Sprintf("%s-%d", time.Now().UTC().Format("20060102-150405"), round)
	runners := []*runner{{name: "restic", bin: c.resticBin}}
	if c.tools["lifeboat"] {
		runners = append(runners, &runner{name: "lifeboat", bin: c.lbBin})
	}
	for _, r := range runners {
		r.bucket = "bench-" + r.name + "-" + stamp
		r.c, r.counter, r.data, r.m = c, counter, dataDir, m
		r.work = filepath.Join(work, fmt.Sprintf("%s-%d", r.name, round))
		if err := os.MkdirAll(r.work, 0o755); err != nil {
			return nil, err
		}
		if r.name == "restic" {
			// restic creates its bucket on init as well; lifeboat's
			// init creates its own (part of its contract).
			if err := mc.MakeBucket(ctx, r.bucket, minio.MakeBucketOptions{}); err != nil {
				return nil, fmt.Errorf("create bucket %s: %w", r.bucket, err)
			}
		}
		if err := r.init(); err != nil {
			return nil, err
		}
	}

	steps := []string{"full", "nochange", "restore"}
	doStep := func(r *runner, step string) error {
		if n := pretouchSize(c.pretouchMiB<<20, sysinfo.MemInfo("/proc/meminfo", "MemAvailable")); n > 0 {
			if err := pretouchInChild(n); err != nil {
				return fmt.Errorf("touch %d MiB of memory before the %s step (-pretouch-mib=0 skips it): %w", n>>20, step, err)
			}
		}
		var err error
		switch step {
		case "full":
			r.res.Full, err = r.backup("full backup")
		case "nochange":
			r.res.NoChange, err = r.backup("no-change backup")
			if err == nil {
				r.res.StoredBytes, r.res.StoredObjects, err = storedBytes(ctx, mc, r.bucket)
				logf("%s: bucket %s holds %s in %d objects", r.name, r.bucket, bench.FmtBytes(r.res.StoredBytes), r.res.StoredObjects)
			}
		case "restore":
			r.res.Restore, err = r.restore()
		}
		// Flush dirty pages (MinIO's objects, the restored files) so the
		// next tool does not pay for this one's writeback.
		syscall.Sync()
		return err
	}
	for _, sr := range schedule(c.order, round, len(runners), steps) {
		if err := doStep(runners[sr.runner], sr.step); err != nil {
			return nil, err
		}
	}
	out := make([]*bench.ToolResult, len(runners))
	for i, r := range runners {
		out[i] = &r.res
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// stepRun is one step of one tool (an index into the round's runners).
type stepRun struct {
	runner int
	step   string
}

// schedule orders a round's steps for n tools. "interleaved" runs each
// step for every tool before the next step, in the runners' order;
// "alternating" does the same but reverses the tools' order in even
// rounds; "sequential" runs all of one tool's steps before the next
// tool's.
//
// Going second is not neutral on the development VMs: a lifeboat
// restore right after a restic restore was measured 20 % slower than
// one right after another lifeboat restore (docs/benchmarks.md).
// Alternating gives each tool both places.
func schedule(order string, round, n int, steps []string) []stepRun {
	tools := make([]int, n)
	for i := range tools {
		tools[i] = i
	}
	if order == "alternating" && round%2 == 0 {
		slices.Reverse(tools)
	}
	var out []stepRun
	if order == "sequential" {
		for _, t := range tools {
			for _, s := range steps {
				out = append(out, stepRun{t, s})
			}
		}
		return out
	}
	for _, s := range steps {
		for _, t := range tools {
			out = append(out, stepRun{t, s})
		}
	}
	return out
}

func orderText(o string) string {
	switch o {
	case "alternating":
		return "interleaved per step (full backup, no-change backup, restore), restic first in odd rounds and lifeboat first in even rounds; warm page cache; sync between steps"
	case "interleaved":
		return "interleaved per step (restic then lifeboat for full backup, no-change backup, restore); warm page cache; sync between steps"
	}
	return "sequential (restic: full, no-change, restore; then lifeboat); warm page cache; sync between steps"
}

func pretouchText(mib int) string {
	if mib <= 0 {
		return "memory not touched before the steps (-pretouch-mib=0)"
	}
	return fmt.Sprintf("%d MiB of memory touched and freed before each step (at most a quarter of what is available)", mib)
}

func composition(m *bench.Manifest) string {
	by, cnt := m.BytesByKind(), m.CountByKind()
	var parts []string
	for _, k := range []string{"src", "vendor", "log", "csv", "image", "bin"} {
		if cnt[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d files %s", k, cnt[k], bench.FmtBytes(by[k])))
		}
	}
	return strings.Join(parts, "; ")
}

func hostInfo() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.Index(l, ":"); i >= 0 {
					model = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	mem := ""
	if total := sysinfo.MemInfo("/proc/meminfo", "MemTotal"); total > 0 {
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(total)/(1<<30))
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s/%s, driver built with %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func storedBytes(ctx context.Context, mc *minio.Client, bucket string) (int64, int, error) {
	var total int64
	n := 0
	for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return 0, 0, fmt.Errorf("list %s: %w", bucket, obj.Err)
		}
		total += obj.Size
		n++
	}
	return total, n, nil
}

// runner runs one tool's commands.
type runner struct {
	name, bin, bucket string
	c                 *config
	counter           *bench.S3Counter
	work, data        string
	m                 *bench.Manifest
	res               bench.ToolResult
	seq               int
	restores          int
}

func (r *runner) repo() string { return "s3:http://" + r.c.endpoint + "/" + r.bucket }

func (r *runner) env() []string {
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+r.c.ak,
		"AWS_SECRET_ACCESS_KEY="+r.c.sk,
	)
	if r.name == "restic" {
		env = append(env, "RESTIC_PASSWORD=lifeboat-bench", "RESTIC_REPOSITORY="+r.repo())
	}
	return env
}

func (r *runner) cacheDir() string { return filepath.Join(r.work, "cache") }

// exec runs the tool with args, logging its output to a file, and
// measures it.
func (r *runner) exec(label string, args ...string) (bench.Step, []byte, error) {
	r.seq++
	logPath := filepath.Join(r.work, fmt.Sprintf("%02d-%s.log", r.seq, strings.ReplaceAll(label, " ", "-")))
	lf, err := os.Create(logPath)
	if err != nil {
		return bench.Step{}, nil, err
	}
	defer lf.Close()
	var stdout bytes.Buffer
	cmd := exec.Command(r.bin, args...)
	cmd.Env = r.env()
	cmd.Stdout = io.MultiWriter(&stdout, lf)
	cmd.Stderr = lf
	fmt.Fprintf(lf, "$ %s %s\n", r.bin, strings.Join(args, " "))
	before, err := r.counter.Snapshot(context.Background())
	if err != nil {
		return bench.Step{}, nil, err
	}
	logf("%s: %s ...", r.name, label)
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	after, cerr := r.counter.Snapshot(context.Background())
	st := bench.Step{Wall: wall, S3: after.Sub(before)}
	if ps := cmd.ProcessState; ps != nil {
		st.UserCPU, st.SysCPU = ps.UserTime(), ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			st.MaxRSS = int64(ru.Maxrss) * 1024 // KiB on Linux
		}
	}
	if err != nil {
		return st, stdout.Bytes(), fmt.Errorf("%s %s failed: %v\n%s", r.name, label, err, tail(logPath, 30))
	}
	if cerr != nil {
		return st, stdout.Bytes(), cerr
	}
	logf("%s: %s took %.2f s, CPU %.1f s, peak RSS %s, %d S3 requests (%s)", r.name, label, wall.Seconds(), (st.UserCPU + st.SysCPU).Seconds(), bench.FmtBytes(st.MaxRSS), st.S3.Total(), st.S3.APIBreakdown())
	return st, stdout.Bytes(), nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func (r *runner) identity() string { return filepath.Join(r.work, "identity.txt") }
func (r *runner) key() string      { return filepath.Join(r.work, "writer.key") }

func (r *runner) init() error {
	if out, err := exec.Command(r.bin, "version").CombinedOutput(); err == nil {
		r.res.Version = strings.TrimSpace(string(out))
	} else if out, err := exec.Command(r.bin, "--version").CombinedOutput(); err == nil {
		r.res.Version = strings.TrimSpace(string(out))
	} else {
		r.res.Version = r.bin
	}
	r.res.Version = strings.SplitN(r.res.Version, "\n", 2)[0]
	r.res.Tool = r.name
	var err error
	switch r.name {
	case "restic":
		_, _, err = r.exec("init", "init", "--cache-dir", r.cacheDir())
	default:
		_, _, err = r.exec("init", "init", "--repo", r.repo(), "--identity-out", r.identity(), "--key-out", r.key())
	}
	return err
}

func (r *runner) backup(label string) (bench.Step, error) {
	var (
		st  bench.Step
		out []byte
		err error
	)
	switch r.name {
	case "restic":
		st, out, err = r.exec(label, "backup", "--cache-dir", r.cacheDir(), "--json", r.data)
	default:
		st, out, err = r.exec(label, "backup", "--repo", r.repo(), "--key", r.key(), "--cache-dir", r.cacheDir(), "--json", r.data)
	}
	if err != nil {
		return st, err
	}
	if s := summary(out); s != "" {
		r.res.Notes = append(r.res.Notes, label+": "+s)
	}
	return st, nil
}

// summary picks the interesting fields out of a tool's JSON backup
// output: restic's final "summary" message, lifeboat's single object.
func summary(out []byte) string {
	var last map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var v map[string]any
		if json.Unmarshal(line, &v) != nil {
			continue
		}
		if mt, ok := v["message_type"]; ok && mt != "summary" {
			continue
		}
		last = v
	}
	if last == nil {
		// lifeboat may pretty-print its object over several lines.
		var v map[string]any
		if i := bytes.IndexByte(out, '{'); i >= 0 && json.Unmarshal(out[i:], &v) == nil {
			last = v
		}
	}
	if last == nil {
		return ""
	}
	var parts []string
	for _, k := range []string{"snapshot_id", "files_new", "files_changed", "files_unmodified", "files_unchanged", "data_added", "data_added_packed", "bytes_added", "bytes_stored", "total_bytes_processed", "bytes_processed"} {
		if v, ok := last[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, fmtJSON(v)))
		}
	}
	return strings.Join(parts, " ")
}

func fmtJSON(v any) string {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return fmt.Sprint(v)
}

func (r *runner) restore() (bench.Step, error) {
	// Every restore gets a fresh directory and none is deleted until the
	// next run starts: ext4 avoids reusing recently freed inodes by
	// scanning for others, so deleting one tool's 17k restored files right
	// before the other tool's restore makes the second one pay several
	// seconds of kernel time for the first one's cleanup.
	r.restores++
	target := filepath.Join(r.work, fmt.Sprintf("restore-%d", r.restores))
	if err := os.MkdirAll(target, 0o755); err != nil {
		return bench.Step{}, err
	}
	var (
		st  bench.Step
		err error
	)
	switch r.name {
	case "restic":
		st, _, err = r.exec("restore", "restore", "latest", "--cache-dir", r.cacheDir(), "--target", target)
	default:
		st, _, err = r.exec("restore", "restore", "latest", "--repo", r.repo(), "--identity", r.identity(), "--cache-dir", r.cacheDir(), "--target", target)
	}
	if err != nil {
		return st, err
	}
	// Restores leave different amounts of write-back behind (restic all
	// of it, lifeboat at most its write-behind window and its small
	// files): time it, so the report can also compare the time until the
	// data is on disk.
	t := time.Now()
	syscall.Sync()
	st.Sync = time.Since(t)
	logf("%s: sync after the restore took %.1f s", r.name, st.Sync.Seconds())
	root, err := bench.FindRestoredRoot(target, r.data, r.m)
	if err != nil {
		return st, fmt.Errorf("%s restore: %w", r.name, err)
	}
	t0 := time.Now()
	vr, err := bench.VerifyTree(root, r.m)
	if err != nil {
		return st, fmt.Errorf("%s RESTORE VERIFICATION FAILED (%s): %w", r.name, root, err)
	}
	logf("%s: restore verified: %d files, %s, all xxh3-128 hashes match (%.1f s)", r.name, vr.Files, bench.FmtBytes(vr.Bytes), time.Since(t0).Seconds())
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("restore verified: %d files, %d bytes, content hashes match", vr.Files, vr.Bytes))
	return st, nil
}
