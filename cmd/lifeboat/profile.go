package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile of the whole command to the file named
// by LIFEBOAT_CPUPROFILE, and an allocation profile to LIFEBOAT_MEMPROFILE
// when the command ends, for developers measuring the pipelines (`go tool
// pprof bin/lifeboat FILE`). It returns the function that stops them.
func startProfile(stderr io.Writer) func() {
	stopCPU := startCPUProfile(stderr)
	return func() {
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
	path := os.Getenv("LIFEBOAT_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "lifeboat: LIFEBOAT_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "lifeboat: LIFEBOAT_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "lifeboat: LIFEBOAT_CPUPROFILE: %v\n", err)
		}
	}
}
