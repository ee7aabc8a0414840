package sysinfo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFDPath: an entry reached through FDPath is the one in the
// directory the descriptor holds, even after that directory is renamed;
// ExplainFDPath leaves errors alone while /proc is mounted.
func TestFDPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	moved := dir + "-moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(moved, dir)
	if b, err := os.ReadFile(FDPath(int(d.Fd()), "f")); err != nil || string(b) != "x" {
		t.Fatalf("through %s: %q, %v", FDPath(int(d.Fd()), "f"), b, err)
	}
	if fi, err := os.Stat(FDPath(int(d.Fd()), "")); err != nil || !fi.IsDir() {
		t.Fatalf("the descriptor's own entry: %v %v", fi, err)
	}
	_, err = os.ReadFile(FDPath(int(d.Fd()), "missing"))
	if got := ExplainFDPath(err, "reads"); !errors.Is(got, syscall.ENOENT) || strings.Contains(got.Error(), "not mounted") {
		t.Errorf("with /proc mounted: %v", got)
	}
}
