package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
)

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// unreachableOutput is what --json prints on stdout for a command that
// stopped because the store stopped answering.
type unreachableOutput struct {
	Error            string `json:"error"`
	StoreUnreachable bool   `json:"store_unreachable"`
}

// stoppedUnreachable returns err, which stopped a command, with what to
// do when the store stopped answering (chunkstore.ErrUnreachable):
// rerun says what running the command again does. With --json it also
// prints the error as JSON on stdout, where a script reads the result.
func stoppedUnreachable(g *globals, err error, rerun string) error {
	if !errors.Is(err, chunkstore.ErrUnreachable) {
		return err
	}
	err = fmt.Errorf("%w\n(once the store answers, %s)", err, rerun)
	if g.json {
		if jerr := printJSON(g.stdout, unreachableOutput{Error: err.Error(), StoreUnreachable: true}); jerr != nil {
			return errors.Join(err, jerr)
		}
	}
	return err
}

// report prints the result of a command that changes the repository
// step by step (rewrite, repair snapshots, unlock): as JSON or by print,
// or, when err stopped it part-way, what it did before (text only),
// with err wrapped in what.
func report[T any](g *globals, what string, res *T, err error, print func(io.Writer, *T)) error {
	if err != nil {
		if res != nil && !g.json {
			print(g.stdout, res)
		}
		return fmt.Errorf("%s: %w", what, storeError(g.repo, err))
	}
	if g.json {
		return printJSON(g.stdout, res)
	}
	print(g.stdout, res)
	return nil
}

// pathError is the JSON form of a path that failed.
type pathError struct {
	Path    string `json:"path"`
	PathB64 string `json:"path_b64,omitempty"` // see exactBytes
	Error   string `json:"error"`
	// Removal marks a restore's failures to remove (or, for --delete,
	// examine) an entry the target held and the snapshot does not.
	Removal bool `json:"removal,omitempty"`
}

func newPathError(p string, err error) pathError {
	return pathError{Path: p, PathB64: exactBytes(p), Error: err.Error()}
}

// exactBytes returns s in base64 when s is not valid UTF-8, and "" when
// it is. A JSON string cannot carry such bytes (encoding/json writes
// U+FFFD for each), so the fields of --json output that name an entry of
// a snapshot or a target (a path, a name, a link target) have a "_b64"
// twin, present only then, holding the exact bytes; the string beside
// it stays, readable but lossy. (The repository's trees follow the same
// rule with name_b64: docs/format.md.)
func exactBytes(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// warnf prints a warning on stderr. Warnings about data (unreadable
// files, damaged snapshots) are printed even with --quiet.
func warnf(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "lifeboat: warning: "+format+"\n", args...)
}

// formatBytes renders n in binary units ("1.5 MiB").
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatRate renders bytes per second in MiB/s.
func formatRate(n int64, d time.Duration) string {
	if d <= 0 {
		return "0.0 MiB/s"
	}
	return fmt.Sprintf("%.1f MiB/s", float64(n)/(1<<20)/d.Seconds())
}

// formatClock renders a duration as [h:]mm:ss.
func formatClock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// formatDuration renders an elapsed time for summaries.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Argument validators that turn cobra's messages into usage errors.

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%s takes no arguments, got %q", cmd.Name(), strings.Join(args, " "))
	}
	return nil
}

func argsBetween(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < lo:
			return usageError("%s: missing %s (usage: %s)", cmd.Name(), what, cmd.UseLine())
		case hi >= 0 && len(args) > hi:
			return usageError("%s: too many arguments %q (usage: %s)", cmd.Name(), strings.Join(args[hi:], " "), cmd.UseLine())
		}
		return nil
	}
}

// terminalSafe escapes control characters (C0, DEL, C1) in s as Go
// escapes (\x1b, \n, \u009b), so that a string another party wrote — an
// agent's error report — prints as text, not as terminal commands.
func terminalSafe(s string) string {
	isCtl := func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f }
	if !strings.ContainsFunc(s, isCtl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isCtl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
