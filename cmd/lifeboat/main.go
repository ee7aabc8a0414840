// Command lifeboat is the lifeboat backup CLI: it creates repositories,
// backs up paths, lists and restores snapshots and checks repositories.
// It holds no business logic: every command parses its flags, opens the
// repository and calls the chunkstore, snapshot and restore packages.
//
// Exit codes (also listed in `lifeboat --help`):
//
//	0  success
//	1  error, or problems found (check), or files that could not be restored
//	2  usage error: unknown command or flag, missing argument, bad flag value,
//	   no repository or credentials given
//	3  backup completed, but some files could not be read (the snapshot is partial)
//	4  cluster status: the answering node knows no leader (election or lost quorum)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitPartial = 3
	// exitNoLeader is cluster status's answer for a cluster without a
	// leader, so a script or monitoring check can tell it from an error.
	exitNoLeader = 4
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code. It is
// the one place that prints a command's error.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default behaviour so that a
		// second Ctrl-C ends the process at once.
		<-ctx.Done()
		stop()
	}()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	stopProfile := startProfile(stderr)
	err := root.ExecuteContext(ctx)
	stopProfile()
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if ctx.Err() != nil && !strings.Contains(err.Error(), "interrupted") {
		err = fmt.Errorf("interrupted: %w", err)
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "lifeboat: %s\n", msg)
	}
	if code == exitUsage {
		fmt.Fprintln(stderr, "Run 'lifeboat --help' or 'lifeboat COMMAND --help' for usage.")
	}
	return code
}

// exitErr carries the exit code a command wants; the message is printed
// by run.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

// usageError returns an error that exits with code 2.
func usageError(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// checkParallelism refuses a negative --parallelism (0 means the default).
func checkParallelism(n int) error {
	if n < 0 {
		return usageError("--parallelism must not be negative (0 means the default)")
	}
	return nil
}

// withCode attaches an exit code to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitErr{code: code, err: err}
}

// exitCode classifies an error returned by the command tree.
func exitCode(err error) int {
	if e, ok := errors.AsType[*exitErr](err); ok {
		return e.code
	}
	// Errors cobra produces itself before a command runs.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag",
		"invalid argument", "flag needs an argument", "bad flag syntax", "required flag",
		"accepts ", "requires at least", "requires at most", "received ", "if any flags in the group"} {
		if strings.HasPrefix(msg, p) {
			return exitUsage
		}
	}
	return exitError
}
