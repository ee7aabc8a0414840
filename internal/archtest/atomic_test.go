package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// wordAtomic matches the sync/atomic functions on 64-bit words, which
// panic on 386 and 32-bit ARM when the word is not 8-byte aligned, as a
// field after a pointer or an int32 often is there.
var wordAtomic = regexp.MustCompile(`^(Add|Load|Store|Swap|CompareAndSwap)(Int64|Uint64)$`)

// TestNoUnalignedAtomics: the module uses atomic.Int64 and atomic.Uint64,
// which the compiler aligns, never the functions on a plain int64 field
// (one made every restore panic on 386).
func TestNoUnalignedAtomics(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "../.." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		name := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"sync/atomic"` {
				name = "atomic"
				if imp.Name != nil {
					name = imp.Name.Name
				}
			}
		}
		if name == "" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == name && wordAtomic.MatchString(sel.Sel.Name) {
				t.Errorf("%s: %s.%s: use atomic.Int64 or atomic.Uint64, which stay aligned on 32-bit platforms", fset.Position(sel.Pos()), name, sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("walked only %d Go files: not the module", files)
	}
}
