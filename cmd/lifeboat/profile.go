package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfile writes a CPU profile of the whole command to the file named
// by LIFEBOAT_CPUPROFILE, an execution trace to LIFEBOAT_TRACE (where the
// goroutines wait: `go tool trace FILE`), and an allocation profile to
// LIFEBOAT_MEMPROFILE when the command ends, for developers measuring the
// pipelines (`go tool pprof bin/lifeboat FILE`). It returns the function
// that stops them.
func startProfile(stderr io.Writer) func() {
	stopCPU := startCPUProfile(stderr)
	stopTrace := startTrace(stderr)
	return func() {
		stopTrace()
		stopCPU()
		if path := os.Getenv("LIFEBOAT_MEMPROFILE"); path != "" {
			if err := writeAllocs(path); err != nil {
				fmt.Fprintf(stderr, "lifeboat: LIFEBOAT_MEMPROFILE: %v\n", err)
			}
		}
	}
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func startCPUProfile(stderr io.Writer) func() {
	return startToFile(stderr, "LIFEBOAT_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
}

func startTrace(stderr io.Writer) func() {
	return startToFile(stderr, "LIFEBOAT_TRACE", trace.Start, trace.Stop)
}

// startToFile runs start with the file named by the environment
// variable env, if set, and returns the function that stops it and
// closes the file. Failures are reported on stderr, never fatal.
func startToFile(stderr io.Writer, env string, start func(io.Writer) error, stop func()) func() {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "lifeboat: %s: %v\n", env, err)
		return func() {}
	}
	if err := start(f); err != nil {
		fmt.Fprintf(stderr, "lifeboat: %s: %v\n", env, err)
		f.Close()
		return func() {}
	}
	return func() {
		stop()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "lifeboat: %s: %v\n", env, err)
		}
	}
}
