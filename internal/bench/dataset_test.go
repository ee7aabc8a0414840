package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateDeterministic generates a small dataset twice and checks
// that the manifests agree, that the restore verifier accepts the
// dataset itself and rejects a tampered copy.
func TestGenerateDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 16 MiB")
	}
	p := Params{Version: GenVersion, Seed: 7, SizeMB: 8}
	d1 := filepath.Join(t.TempDir(), "a")
	d2 := filepath.Join(t.TempDir(), "b")
	m1, err := Generate(d1, p)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Generate(d2, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(m1.Files) != len(m2.Files) {
		t.Fatalf("file counts differ: %d vs %d", len(m1.Files), len(m2.Files))
	}
	for i := range m1.Files {
		if m1.Files[i] != m2.Files[i] {
			t.Fatalf("file %d differs: %+v vs %+v", i, m1.Files[i], m2.Files[i])
		}
	}
	if got, want := m1.TotalBytes(), int64(p.SizeMB)<<20; got < want*9/10 || got > want*11/10 {
		t.Errorf("total %d bytes, want about %d", got, want)
	}
	m3, regen, err := LoadOrGenerate(d1, p, nil)
	if err != nil || regen || len(m3.Files) != len(m1.Files) {
		t.Fatalf("reuse: regen=%v err=%v", regen, err)
	}

	// A "restore" laid out like restic's (absolute path under the target)
	// is found and verified; a changed byte and an extra file are caught.
	if root, err := FindRestoredRoot(filepath.Dir(d2), d2, m1); err != nil || root != d2 {
		t.Fatalf("FindRestoredRoot = %q, %v", root, err)
	}
	if _, err := VerifyTree(d2, m1); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(d2, filepath.FromSlash(m1.Files[len(m1.Files)/2].Path))
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d2, "extra"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyTree(d2, m1)
	if err == nil || !strings.Contains(err.Error(), "content differs") || !strings.Contains(err.Error(), "extra: unexpected") {
		t.Fatalf("VerifyTree on a tampered tree: %v", err)
	}
}
