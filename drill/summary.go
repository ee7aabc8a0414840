package drill

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Summary is one line for humans:
//
//	passed: 1,234 files, 1.2 GiB restored and verified in 12.3s (RTO target 1h), snapshot 3h old (RPO target 24h)
//	FAILED (content, check): srv/db/base/1: content differs in chunk 2 of 9 ... (and 3 more)
func (r *Result) Summary() string {
	if r.Passed {
		var b strings.Builder
		fmt.Fprintf(&b, "passed: %s files, %s restored and verified", fmtCount(r.Files), fmtBytes(r.Bytes))
		if r.SamplePercent > 0 {
			fmt.Fprintf(&b, " (a %s%% sample of %s files)", strconv.FormatFloat(r.SamplePercent, 'f', -1, 64), fmtCount(r.SnapshotFiles))
		}
		fmt.Fprintf(&b, " in %s", fmtDuration(seconds(r.RTOSeconds)))
		switch {
		case r.TargetRTOSeconds > 0 && r.SamplePercent > 0 && r.RTOMet == nil:
			fmt.Fprintf(&b, " (RTO target %s: not judged by a sample)", fmtDuration(seconds(r.TargetRTOSeconds)))
		case r.TargetRTOSeconds > 0:
			fmt.Fprintf(&b, " (RTO target %s)", fmtDuration(seconds(r.TargetRTOSeconds)))
		}
		fmt.Fprintf(&b, ", snapshot %s old", fmtDuration(seconds(r.RPOSeconds)))
		if r.TargetRPOSeconds > 0 {
			fmt.Fprintf(&b, " (RPO target %s)", fmtDuration(seconds(r.TargetRPOSeconds)))
		}
		if w := r.warningText(); w != "" {
			b.WriteString("; " + w)
		}
		return b.String()
	}
	s := "FAILED (" + strings.Join(r.Reasons(), ", ") + ")"
	if len(r.Failures) == 0 {
		return s
	}
	s += ": " + r.Failures[0].Error()
	if n := len(r.Failures) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

// warningText joins the warnings of a drill: damaged packs it restored
// around, packs the storage failed to serve that it restored around,
// entries restored without all of their metadata.
func (r *Result) warningText() string {
	var ws []string
	chunks := plural(r.BlobsFromCopies, "1 chunk", fmtCount(r.BlobsFromCopies)+" chunks")
	switch {
	case len(r.DamagedPacks) > 0:
		ws = append(ws, fmt.Sprintf("warning: %s restored from other copies, %s damaged or missing (%s): run 'lifeboat check --read-data', then 'lifeboat repair packs'",
			chunks, plural(int64(len(r.DamagedPacks)), "1 pack", fmtCount(int64(len(r.DamagedPacks)))+" packs"), strings.Join(r.DamagedPacks, ", ")))
	case r.BlobsFromCopies > 0:
		// Not damage: reads that failed past the retries, or a pack the
		// identity cannot open (written for recipients it is not among).
		// The restore time includes the retries, so the RTO measured is
		// the one such a failure would give.
		ws = append(ws, fmt.Sprintf("warning: %s restored from other copies because %s could not be read (not damage: the storage failed, or the identity cannot open %s; the agent's log at debug level names the error)",
			chunks, plural(r.BlobsFromCopies, "its pack", "their packs"), plural(r.BlobsFromCopies, "it", "them")))
	}
	if w := r.metadataText(); w != "" {
		ws = append(ws, w)
	}
	return strings.Join(ws, "; ")
}

// plural is one if n is 1, else many.
func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// metadataText is the warning for entries restored without all of
// their metadata, naming the first; empty when there were none.
func (r *Result) metadataText() string {
	if r.MetadataErrors == 0 {
		return ""
	}
	s := fmt.Sprintf("warning: %s entries restored without all of their metadata", fmtCount(r.MetadataErrors))
	if r.MetadataErrors == 1 {
		s = "warning: 1 entry restored without all of its metadata"
	}
	if len(r.MetadataSamples) > 0 {
		w := r.MetadataSamples[0]
		s += " (" + w.Path + ": " + w.Message + ")"
	}
	return s
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// fmtCount renders n with thousands separators: 1,234,567.
func fmtCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtBytes renders n in binary units ("1.2 GiB").
func fmtBytes(n int64) string {
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

// fmtDuration renders d compactly: 850ms, 12.3s, 4m10s, 3h, 2d4h.
func fmtDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Millisecond:
		s = d.String()
	case d < time.Second:
		s = d.Round(time.Millisecond).String()
	case d < time.Minute:
		s = strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
		s = strings.Replace(s, ".0s", "s", 1)
	case d < time.Hour:
		d = d.Round(time.Second)
		s = fmt.Sprintf("%dm", d/time.Minute)
		if sec := d % time.Minute / time.Second; sec > 0 {
			s += fmt.Sprintf("%ds", sec)
		}
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		s = fmt.Sprintf("%dh", d/time.Hour)
		if m := d % time.Hour / time.Minute; m > 0 {
			s += fmt.Sprintf("%dm", m)
		}
	default:
		d = d.Round(time.Hour)
		s = fmt.Sprintf("%dd", d/(24*time.Hour))
		if h := d % (24 * time.Hour) / time.Hour; h > 0 {
			s += fmt.Sprintf("%dh", h)
		}
	}
	if neg {
		return "-" + s
	}
	return s
}
