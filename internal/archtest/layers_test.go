package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/lifeboat-backup/lifeboat/"

// TestLayering lists each package's transitive imports with 'go list'
// and fails on a forbidden edge.
func TestLayering(t *testing.T) {
	higher := []string{"snapshot", "restore", "drill", "coordinator", "agent", "cmd"}
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{"chunkstore/...", higher},
		{"snapshot/...", higher[1:]},
		{"restore/...", higher[2:]},
		{"drill/...", higher[3:]},
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../../"+tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 3 {
				t.Fatalf("go list returned too little: %q", deps)
			}
			for _, d := range deps {
				for _, f := range tc.forbidden {
					if d == mod+f || strings.HasPrefix(d, mod+f+"/") {
						t.Errorf("%s depends on %s, a higher layer", tc.pkg, d)
					}
				}
			}
		})
	}
}
