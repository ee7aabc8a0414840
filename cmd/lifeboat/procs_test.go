package main

import (
	"runtime"
	"testing"
)

func TestOneMoreProc(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // the test's own environment must not decide
	runtime.SetDefaultGOMAXPROCS()
	n := runtime.GOMAXPROCS(0)
	want := n
	if extraProc(n, runtime.NumCPU(), "") {
		want = n + 1
	}

	restore := oneMoreProc()
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("during the restore GOMAXPROCS = %d, want %d (default %d, %d CPUs)", got, want, n, runtime.NumCPU())
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != n {
		t.Fatalf("after the restore GOMAXPROCS = %d, want the default %d back", got, n)
	}
}

func TestExtraProc(t *testing.T) {
	for _, c := range []struct {
		procs, cpus int
		env         string
		want        bool
	}{
		{procs: 2, cpus: 2, want: true},
		{procs: 8, cpus: 8, want: true},
		{procs: 2, cpus: 8, want: false},             // a CPU quota of 2 on an 8-core host
		{procs: 2, cpus: 2, env: "2", want: false},   // set by the operator
		{procs: 16, cpus: 2, env: "16", want: false}, // set by the operator, above the cores
	} {
		if got := extraProc(c.procs, c.cpus, c.env); got != c.want {
			t.Errorf("extraProc(%d, %d, %q) = %v, want %v", c.procs, c.cpus, c.env, got, c.want)
		}
	}
}
