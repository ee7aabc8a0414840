package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat-backup/lifeboat/chunkstore/storetest"
	"github.com/lifeboat-backup/lifeboat/internal/fixture"
)

// TestStreamToS3 backs up a command's output (a "database dump" of 40 MiB,
// several packs) to MinIO and reads it back with dump: the bytes are the
// same, a second dump of the same data adds almost nothing, and a command
// that fails leaves no snapshot.
func TestStreamToS3(t *testing.T) {
	repo := initCLI(t, storetest.MinIORepoURL(t))
	dir := t.TempDir()
	src := filepath.Join(dir, "dump.sql")
	data := append(fixture.Random(11, 24<<20), bytes.Repeat([]byte("INSERT INTO orders VALUES (42, 'lifeboat');\n"), 400_000)...)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w := repo.writer(t)
	// The credentials go before "--": what follows is the command.
	backup := func(command ...string) []string {
		return append([]string{"backup", "--json", "--repo", repo.url, "--key", repo.key,
			"--stdin-from-command", "--stdin-filename", "orders.sql", "--"}, command...)
	}

	first := parseSummary(t, w.ok(backup("cat", src)...))
	if first.BytesProcessed != int64(len(data)) || first.FilesNew != 1 {
		t.Errorf("first backup %+v: want one new file of %d bytes", first, len(data))
	}
	second := parseSummary(t, w.ok(backup("cat", src)...))
	if second.BytesAdded > 64<<10 {
		t.Errorf("the same dump again added %s, want only its tree", mib(second.BytesAdded))
	}

	r := w.run(backup("sh", "-c", `head -c 5000000 "$1"; echo "pg_dump: error: connection lost (code $((40+2)))" >&2; exit 1`, "sh", src)...)
	wantFail(t, r, "exit status 1", "no snapshot was written", "(code 42)") // the command's stderr, passed on

	var snaps []struct {
		ID    string   `json:"id"`
		Paths []string `json:"paths"`
	}
	if err := json.Unmarshal([]byte(w.ok("snapshots", "--json").Stdout), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots, want the two complete dumps: %+v", len(snaps), snaps)
	}

	rd := repo.reader(t)
	out := filepath.Join(dir, "restored.sql")
	rd.ok("dump", "--output", out, snaps[0].ID[:8], "/orders.sql")
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Errorf("dump --output: %d bytes differing from the %d dumped", len(got), len(data))
	}
	if r := rd.ok("dump", "latest", "/orders.sql"); r.Stdout != string(data) {
		t.Errorf("dump to stdout: %d bytes differing from the %d dumped", len(r.Stdout), len(data))
	}
	rd.ok("check", "--read-data")
}
