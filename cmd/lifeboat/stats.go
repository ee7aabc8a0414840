package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newStatsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show the repository's size, deduplication and compression",
		Long: `Show what the repository holds: its snapshots (per host, oldest and newest),
the size of the files they back up, the unique data stored for them before and
after compression, and the packs on storage, including any that no index lists
yet (left by an interrupted backup, reused by the next one, or removed by
prune).

Works with the writer key: it reads the index and the snapshot manifests, not
the trees. Deduplication is the snapshots' file bytes over the unique data
(×10: ten times as much backed up as stored before compression); compression
is that unique data over what it takes stored.`,
		Example: `  lifeboat stats --repo s3:https://s3.example.net/backups/prod --key writer.key
  lifeboat stats --json | jq .dedup_ratio`,
		Args: argsBetween(0, 0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error { return runStats(cmd.Context(), g) },
	}
}

type statsJSON struct {
	Snapshots        int            `json:"snapshots"`
	Hosts            map[string]int `json:"hosts"` // snapshots per host
	Oldest           *time.Time     `json:"oldest,omitempty"`
	Newest           *time.Time     `json:"newest,omitempty"`
	LogicalBytes     uint64         `json:"logical_bytes"` // the snapshots' file bytes, summed
	DataBlobs        int            `json:"data_blobs"`
	DataRawBytes     int64          `json:"data_raw_bytes"`
	DataStoredBytes  int64          `json:"data_stored_bytes"`
	TreeBlobs        int            `json:"tree_blobs"`
	TreeRawBytes     int64          `json:"tree_raw_bytes"`
	TreeStoredBytes  int64          `json:"tree_stored_bytes"`
	DuplicateBlobs   int            `json:"duplicate_blobs"`
	Packs            int            `json:"packs"`
	PackBytes        int64          `json:"pack_bytes"`
	UnindexedPacks   int            `json:"unindexed_packs"`
	UnindexedBytes   int64          `json:"unindexed_bytes"`
	DedupRatio       float64        `json:"dedup_ratio"`       // logical_bytes / data_raw_bytes
	CompressionRatio float64        `json:"compression_ratio"` // data_raw_bytes / data_stored_bytes
}

func runStats(ctx context.Context, g *globals) error {
	repo, err := g.openRepo(ctx, "stats", anyAccess)
	if err != nil {
		return err
	}
	list, err := listSnapshots(ctx, g, repo)
	if err != nil {
		return err
	}
	snaps := list.all
	if err := repo.LoadIndex(ctx); err != nil {
		return storeError(g.repo, err)
	}
	present, err := repo.ListPacks(ctx)
	if err != nil {
		return storeError(g.repo, err)
	}
	ix := repo.Index().Stats()
	out := statsJSON{Snapshots: len(snaps), Hosts: map[string]int{},
		DataBlobs: ix.Data.Blobs, DataRawBytes: ix.Data.RawBytes, DataStoredBytes: ix.Data.StoredBytes,
		TreeBlobs: ix.Tree.Blobs, TreeRawBytes: ix.Tree.RawBytes, TreeStoredBytes: ix.Tree.StoredBytes,
		DuplicateBlobs: ix.Duplicates, Packs: ix.Packs, PackBytes: ix.PackBytes}
	for _, s := range snaps {
		out.Hosts[s.Host]++
		out.LogicalBytes += s.Summary.BytesProcessed
		if out.Oldest == nil || s.Time.Before(*out.Oldest) {
			t := s.Time
			out.Oldest = &t
		}
		if out.Newest == nil || s.Time.After(*out.Newest) {
			t := s.Time
			out.Newest = &t
		}
	}
	for id, size := range present {
		if !repo.Index().HasPack(id) {
			out.UnindexedPacks++
			out.UnindexedBytes += size
		}
	}
	if out.DataRawBytes > 0 {
		out.DedupRatio = float64(out.LogicalBytes) / float64(out.DataRawBytes)
	}
	if out.DataStoredBytes > 0 {
		out.CompressionRatio = float64(out.DataRawBytes) / float64(out.DataStoredBytes)
	}
	if g.json {
		return printJSON(g.stdout, out)
	}
	w := g.stdout
	fmt.Fprintf(w, "Repository:   %s\n", repo.Store().Location())
	hosts := make([]string, 0, len(out.Hosts))
	for h := range out.Hosts {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	per := make([]string, len(hosts))
	for i, h := range hosts {
		per[i] = fmt.Sprintf("%s %d", h, out.Hosts[h])
	}
	fmt.Fprintf(w, "Snapshots:    %d", out.Snapshots)
	if out.Snapshots > 0 {
		fmt.Fprintf(w, " (%s), %s to %s", strings.Join(per, ", "),
			out.Oldest.Local().Format("2006-01-02 15:04"), out.Newest.Local().Format("2006-01-02 15:04"))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Backed up:    %s of files in all snapshots\n", formatBytes(int64(out.LogicalBytes)))
	fmt.Fprintf(w, "Unique data:  %s in %d chunks, stored as %s", formatBytes(out.DataRawBytes), out.DataBlobs, formatBytes(out.DataStoredBytes))
	if out.DedupRatio > 0 {
		fmt.Fprintf(w, " (deduplication ×%.1f, compression ×%.2f)", out.DedupRatio, out.CompressionRatio)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Trees:        %s in %d blobs, stored as %s\n", formatBytes(out.TreeRawBytes), out.TreeBlobs, formatBytes(out.TreeStoredBytes))
	fmt.Fprintf(w, "Packs:        %d indexed, %s", out.Packs, formatBytes(out.PackBytes))
	if out.UnindexedPacks > 0 {
		fmt.Fprintf(w, "; %d not indexed, %s (an interrupted backup's: the next backup reuses them, prune removes them)", out.UnindexedPacks, formatBytes(out.UnindexedBytes))
	}
	fmt.Fprintln(w)
	if out.DuplicateBlobs > 0 {
		fmt.Fprintf(w, "Duplicates:   %d chunks stored more than once (prune repacks them)\n", out.DuplicateBlobs)
	}
	return nil
}
