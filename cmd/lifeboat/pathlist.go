package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// readPathLists reads backup's --files-from files (one path per line;
// empty lines and lines starting with # are skipped) and
// --files-from-raw files (paths separated by NUL bytes, which no path
// holds, so any name can be listed). "-" reads standard input, once.
// A text list's lines may end in CRLF (a list written on Windows, or by a
// tool that writes CRLF): the CR is no part of the path, and kept it made
// every path one that does not exist, named in an error that looks just
// like the existing path. A name that does end in CR is listed raw.
func readPathLists(text, raw []string) ([]string, error) {
	var paths []string
	stdinRead := false
	read := func(name string) ([]byte, error) {
		if name != "-" {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("--files-from %s: %w", name, err)
			}
			return b, nil
		}
		if stdinRead {
			return nil, usageError("backup: standard input (-) can be read by one --files-from or --files-from-raw only")
		}
		stdinRead = true
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, fmt.Errorf("--files-from -: reading standard input: %w", err)
		}
		return b, nil
	}
	for _, name := range text {
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil, usageError("backup: --files-from %s holds a NUL byte: a list separated by NUL bytes (find -print0) is read with --files-from-raw", name)
		}
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			paths = append(paths, line)
		}
	}
	for _, name := range raw {
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		for p := range strings.SplitSeq(string(b), "\x00") {
			if p != "" {
				paths = append(paths, p)
			}
		}
	}
	return paths, nil
}
