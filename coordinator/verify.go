package coordinator

import (
	"encoding/hex"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Verification coverage. Packs are named by the SHA-256 of their bytes, so
// anyone who can read the bucket can verify one by downloading it and
// hashing it: no identity needed, and no lock, so verification never blocks
// a backup. The coordinator schedules verify jobs so that every pack is read
// at least once every VerifyEvery (a policy setting; a repository uses the
// shortest of its policies', DefaultVerifyEvery if none sets one).
//
// Work is split into VerifyShards shards by the first byte of the pack ID.
// Each verify job reads every pack of the shards it is given (the ones
// verified longest ago) and reports, per pack, its size and whether it
// verified, together with the pack count of every shard from its listing.
// The coordinator keeps per-pack last-verified times, the shards' last
// verification, and the damaged packs. A shard verified at T covers every
// pack that existed at T; a pack written after T is at most now-T old, so
// when no shard is older than VerifyEvery no pack older than VerifyEvery
// has gone unverified for longer than that. Each run verifies enough shards
// to go round all of them in half of VerifyEvery, which leaves room for
// failed runs.

// VerifyShards is the number of shards (the first byte of a pack ID).
const VerifyShards = 256

// DefaultVerifyEvery is the verification period of a repository whose
// policies set none.
const DefaultVerifyEvery = 30 * 24 * time.Hour

// DefaultVerifySchedule is when verify jobs run unless the node is told
// otherwise (Config.VerifySchedule).
const DefaultVerifySchedule = "@daily"

// VerifyParams is what a verify job checks.
type VerifyParams struct {
	Shards []int `json:"shards"` // shard numbers in [0, VerifyShards)
}

// ShardOf returns the shard of a pack ID in hex, or -1.
func ShardOf(packID string) int {
	if len(packID) < 2 {
		return -1
	}
	b, err := hex.DecodeString(packID[:2])
	if err != nil {
		return -1
	}
	return int(b[0])
}

// PackCheck is one pack a verify job read.
type PackCheck struct {
	ID    string `json:"id"`
	Size  int64  `json:"size"`
	Error string `json:"error,omitempty"` // empty: the pack verified
}

// ShardCount is one shard's packs in the verifying agent's listing.
type ShardCount struct {
	Shard int   `json:"shard"`
	Packs int   `json:"packs"`
	Bytes int64 `json:"bytes"`
}

// VerifyReport is what an agent reports with a verify job
// (CompleteJob.Verify). Packs lists every pack of the job's shards that the
// listing showed; Inventory counts every shard's packs.
type VerifyReport struct {
	Shards    []int        `json:"shards"`
	Packs     []PackCheck  `json:"packs"`
	Inventory []ShardCount `json:"inventory"`
	// Snapshots are the IDs of the snapshot objects in the repository,
	// listed after the job's lease; SnapshotsListed says the list is
	// complete (an agent that could not list, or an older one, leaves it
	// false and the catalog as it is). See reconcileCatalog.
	Snapshots       []string `json:"snapshots,omitempty"`
	SnapshotsListed bool     `json:"snapshots_listed,omitempty"`
}

// VerifySummary is what a finished verify job shows.
type VerifySummary struct {
	Shards  int      `json:"shards"`
	Packs   int      `json:"packs"`
	Bytes   int64    `json:"bytes"`
	Damaged []string `json:"damaged,omitempty"` // pack IDs
	// CatalogDropped are catalog entries whose snapshot the repository no
	// longer holds (forgotten outside the coordinator): removed.
	CatalogDropped []string `json:"catalog_dropped,omitempty"`
}

// PackState is what the coordinator knows of one pack.
type PackState struct {
	Size     int64     `json:"size"`
	Verified time.Time `json:"verified,omitzero"` // last successful verification
	Damaged  string    `json:"damaged,omitempty"` // the last verification's error
	FailedAt time.Time `json:"failed_at,omitzero"`
}

// Coverage is a repository's verification state.
type Coverage struct {
	// Packs holds every pack seen in a verified shard, by ID.
	Packs map[string]*PackState `json:"packs"`
	// ShardVerified is when each shard was last verified (zero: never);
	// ShardPacks and ShardBytes are the shard sizes from the newest listing.
	ShardVerified []time.Time `json:"shard_verified"`
	ShardPacks    []int       `json:"shard_packs"`
	ShardBytes    []int64     `json:"shard_bytes"`
	ListedAt      time.Time   `json:"listed_at,omitzero"`
}

func newCoverage() *Coverage {
	return &Coverage{Packs: map[string]*PackState{}, ShardVerified: make([]time.Time, VerifyShards),
		ShardPacks: make([]int, VerifyShards), ShardBytes: make([]int64, VerifyShards)}
}

func (r *VerifyReport) validate(params *VerifyParams) error {
	if params != nil && !slices.Equal(sortedInts(r.Shards), sortedInts(params.Shards)) {
		return invalid("verify report covers shards %v, the job asked for %v", r.Shards, params.Shards)
	}
	want := map[int]bool{}
	for _, sh := range r.Shards {
		if sh < 0 || sh >= VerifyShards {
			return invalid("verify report: shard %d out of range", sh)
		}
		want[sh] = true
	}
	for _, p := range r.Packs {
		if sh := ShardOf(p.ID); sh < 0 || !want[sh] || len(p.ID) != 64 {
			return invalid("verify report: pack %q is not in a verified shard", p.ID)
		}
		if p.Size < 0 {
			return invalid("verify report: pack %s has a negative size", p.ID)
		}
	}
	for _, c := range r.Inventory {
		if c.Shard < 0 || c.Shard >= VerifyShards || c.Packs < 0 || c.Bytes < 0 {
			return invalid("verify report: bad inventory entry %+v", c)
		}
	}
	if len(r.Snapshots) > 0 && !r.SnapshotsListed {
		return invalid("verify report: snapshots given without snapshots_listed")
	}
	for _, id := range r.Snapshots {
		if checkHash(id) != nil || id != strings.ToLower(id) {
			return invalid("verify report: snapshot ID %q is not 64 lower-case hex digits", id)
		}
	}
	return nil
}

// reconcileCatalog removes repo's catalog entries whose snapshot is not in
// listed, the repository's snapshot objects as a verify job listed them
// after its lease at leaseIndex. Only entries added before the lease are
// considered: their snapshot was committed before the job completion that
// added them, so a listing after the lease shows it unless it was
// forgotten ('lifeboat forget', another tool). Entries added since may
// belong to snapshots the listing was too early for. An empty listing
// changes nothing: a repository emptied of snapshots is far less likely
// than an agent that reached another copy of it (a local path that is a
// different disk on that host). It returns the IDs removed, sorted.
func (s *State) reconcileCatalog(repo string, listed []string, leaseIndex uint64) []string {
	if len(listed) == 0 {
		return nil
	}
	have := make(map[string]bool, len(listed))
	for _, id := range listed {
		have[id] = true
	}
	var dropped []string
	for _, id := range sortedKeys(s.Catalog) {
		e := s.Catalog[id]
		if e.Repository != repo || e.AddedIndex >= leaseIndex || have[id] {
			continue
		}
		delete(s.Catalog, id)
		dropped = append(dropped, id)
	}
	return dropped
}

func sortedInts(v []int) []int {
	c := slices.Clone(v)
	slices.Sort(c)
	return slices.Compact(c)
}

// applyVerify folds a verify report into repo's coverage and returns the
// job's summary. listed is when the job started (its listing is at least
// that recent; the packs it verified and the shards it covered count as
// verified then, which errs on the safe side), now when it reported.
func (s *State) applyVerify(repo string, r *VerifyReport, listed, now time.Time) *VerifySummary {
	t := listed
	cov := s.Coverage[repo]
	if cov == nil {
		cov = newCoverage()
		s.Coverage[repo] = cov
	}
	sum := &VerifySummary{Shards: len(r.Shards)}
	seen := map[string]bool{}
	for _, p := range r.Packs {
		seen[p.ID] = true
		ps := cov.Packs[p.ID]
		if ps == nil {
			ps = &PackState{}
			cov.Packs[p.ID] = ps
		}
		ps.Size = p.Size
		sum.Packs++
		sum.Bytes += p.Size
		if p.Error == "" {
			ps.Verified, ps.Damaged, ps.FailedAt = t, "", time.Time{}
		} else {
			ps.Damaged, ps.FailedAt = p.Error, now
			sum.Damaged = append(sum.Damaged, p.ID)
		}
	}
	shards := map[int]bool{}
	for _, sh := range r.Shards {
		shards[sh] = true
		cov.ShardVerified[sh] = t
	}
	// Packs of a verified shard that the listing no longer shows were
	// deleted (pruned): forget them. (Deleting from the map in any order
	// gives the same state, so the walk need not be sorted.)
	for id := range cov.Packs {
		if shards[ShardOf(id)] && !seen[id] {
			delete(cov.Packs, id)
		}
	}
	if len(r.Inventory) > 0 {
		clear(cov.ShardPacks)
		clear(cov.ShardBytes)
		for _, c := range r.Inventory {
			cov.ShardPacks[c.Shard], cov.ShardBytes[c.Shard] = c.Packs, c.Bytes
		}
		cov.ListedAt = t
	}
	sort.Strings(sum.Damaged)
	return sum
}

// CoverageReport says how much of a repository was verified recently.
type CoverageReport struct {
	Repository string   `json:"repository"`
	Every      Duration `json:"every"` // the verification period
	Packs      int      `json:"packs"` // packs in the newest listing
	Bytes      int64    `json:"bytes"`
	// VerifiedPacks were verified successfully within Every; Ratio is
	// VerifiedPacks / Packs (1 for an empty repository, 0 for one never
	// listed by a verification: ListedAt is zero then).
	VerifiedPacks int     `json:"verified_packs"`
	Ratio         float64 `json:"ratio"`
	// OverduePacks are in shards not verified within Every (every pack of
	// such a shard counts: its age is not known).
	OverduePacks  int       `json:"overdue_packs"`
	OverdueShards []int     `json:"overdue_shards,omitempty"`
	Damaged       []Damaged `json:"damaged,omitempty"`
	// OldestShard is the oldest shard verification (zero: a shard was
	// never verified); ListedAt when the packs were last counted.
	OldestShard time.Time `json:"oldest_shard,omitzero"`
	ListedAt    time.Time `json:"listed_at,omitzero"`
}

// Damaged is a pack whose last verification failed.
type Damaged struct {
	Pack     string    `json:"pack"`
	Error    string    `json:"error"`
	FailedAt time.Time `json:"failed_at"`
}

// Report computes the coverage of repo at now.
func (c *Coverage) Report(repo string, every time.Duration, now time.Time) CoverageReport {
	rep := CoverageReport{Repository: repo, Every: Duration(every)}
	if c == nil {
		c = newCoverage()
	}
	rep.ListedAt = c.ListedAt
	cutoff := now.Add(-every)
	for sh := 0; sh < VerifyShards; sh++ {
		rep.Packs += c.ShardPacks[sh]
		rep.Bytes += c.ShardBytes[sh]
		v := c.ShardVerified[sh]
		if sh == 0 || v.Before(rep.OldestShard) {
			rep.OldestShard = v
		}
		if v.Before(cutoff) {
			rep.OverduePacks += c.ShardPacks[sh]
			rep.OverdueShards = append(rep.OverdueShards, sh)
		}
	}
	// Counting needs no order (this runs on every scrape and status
	// call; the packs can number in the hundred thousands); only the
	// damaged ones are listed, sorted.
	for id, ps := range c.Packs {
		if ps.Damaged != "" {
			rep.Damaged = append(rep.Damaged, Damaged{Pack: id, Error: ps.Damaged, FailedAt: ps.FailedAt})
		} else if !ps.Verified.Before(cutoff) {
			rep.VerifiedPacks++
		}
	}
	sort.Slice(rep.Damaged, func(i, j int) bool { return rep.Damaged[i].Pack < rep.Damaged[j].Pack })
	switch {
	case c.ListedAt.IsZero():
		rep.Ratio = 0 // never listed: nothing is known to be verified
	case rep.Packs == 0:
		rep.Ratio = 1
	default:
		rep.Ratio = math.Min(1, float64(rep.VerifiedPacks)/float64(rep.Packs))
	}
	return rep
}

// VerifyEvery returns repo's verification period: the shortest
// verify_every of the policies that use it, or DefaultVerifyEvery.
func (s *State) VerifyEvery(repo string) time.Duration {
	every := time.Duration(0)
	for _, name := range s.PolicyNames() {
		p := s.Policies[name].Policy
		if p.Repository == repo && p.VerifyEvery > 0 && (every == 0 || time.Duration(p.VerifyEvery) < every) {
			every = time.Duration(p.VerifyEvery)
		}
	}
	if every == 0 {
		every = DefaultVerifyEvery
	}
	return every
}

// CoverageOf reports every registered repository's coverage at now.
func (s *State) CoverageOf(now time.Time) []CoverageReport {
	var out []CoverageReport
	for _, name := range sortedKeys(s.Repositories) {
		out = append(out, s.Coverage[name].Report(name, s.VerifyEvery(name), now))
	}
	return out
}

// VerifyAgents returns the agents that may verify repo at t: connected,
// not revoked, and selected by a policy that uses repo (so they can reach
// its storage). Sorted.
func (s *State) VerifyAgents(repo string, t time.Time, timeout time.Duration) []string {
	var out []string
	for _, name := range s.AgentNames() {
		a := s.Agents[name]
		if a.Revoked || t.Sub(a.LastSeen) > timeout {
			continue
		}
		for _, pn := range s.PolicyNames() {
			p := s.Policies[pn].Policy
			if p.Repository == repo && SelectorMatches(p.Agents, a.Labels) {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// ShardsPerRun is how many shards one verify run reads so that all of them
// are verified within every/2 when runs come interval apart.
func ShardsPerRun(every, interval time.Duration) int {
	if every <= 0 || interval <= 0 {
		return VerifyShards
	}
	runs := int(every / 2 / interval)
	if runs < 1 {
		return VerifyShards
	}
	return (VerifyShards + runs - 1) / runs
}

// DueShards returns the n shards of repo verified longest ago (never
// verified first), lowest shard number first among equals.
func (c *Coverage) DueShards(n int) []int {
	if c == nil {
		c = newCoverage()
	}
	order := make([]int, VerifyShards)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return c.ShardVerified[order[a]].Before(c.ShardVerified[order[b]]) })
	out := slices.Clone(order[:min(n, VerifyShards)])
	slices.Sort(out)
	return out
}

// VerifyJobID is the deterministic ID of repo's scheduled verify run at
// instant.
func VerifyJobID(repo string, instant time.Time) string {
	return maintenanceJobID("vf-", "verify", repo, instant)
}

// VerifyPlan is what PlanVerify returns.
type VerifyPlan struct {
	Jobs  []NewJob
	Fired map[string]time.Time // repository -> new watermark
	// Unassigned lists repositories whose run found no agent to verify
	// them (no connected agent selected by a policy using them).
	Unassigned []string
}

// PlanVerify plans the verify jobs due at now under schedule: one per
// repository that some policy uses, per instant (missed instants are not
// caught up: the next run picks the oldest shards anyway). A repository
// still running a verify job gets no second one. Pure, like Plan.
func PlanVerify(s *State, sched Schedule, now time.Time, agentTimeout time.Duration) VerifyPlan {
	out := VerifyPlan{Fired: map[string]time.Time{}}
	interval := sched.Interval()
	if interval <= 0 {
		interval = 24 * time.Hour
	}
	for _, repo := range sortedKeys(s.Repositories) {
		used := false
		for _, pn := range s.PolicyNames() {
			if s.Policies[pn].Policy.Repository == repo {
				used = true
				break
			}
		}
		if !used {
			continue
		}
		start, ok := s.VerifyFired[repo]
		if !ok {
			start = s.Repositories[repo].AddedAt
		}
		due, _ := dueInstants(sched, start.UTC(), now, 1)
		if len(due) == 0 {
			continue
		}
		inst := due[len(due)-1]
		out.Fired[repo] = inst
		if s.verifyRunning(repo) {
			continue
		}
		agents := s.VerifyAgents(repo, now, agentTimeout)
		if len(agents) == 0 {
			out.Unassigned = append(out.Unassigned, repo)
			continue
		}
		id := VerifyJobID(repo, inst)
		if s.Jobs[id] != nil {
			continue
		}
		n := ShardsPerRun(s.VerifyEvery(repo), interval)
		out.Jobs = append(out.Jobs, NewJob{ID: id, Kind: KindVerify, Trigger: TriggerSchedule, Repository: repo,
			Agent: pickAgent(agents, id), ScheduledAt: inst, NotBefore: inst,
			Verify: &VerifyParams{Shards: s.Coverage[repo].DueShards(n)}})
	}
	return out
}

// verifyRunning reports whether repo has a pending or running verify job.
func (s *State) verifyRunning(repo string) bool {
	for _, j := range s.Jobs {
		if j.Kind == KindVerify && j.Repository == repo && !j.State.Final() {
			return true
		}
	}
	return false
}

// AllShards returns every shard number, for a full verification.
func AllShards() []int {
	out := make([]int, VerifyShards)
	for i := range out {
		out[i] = i
	}
	return out
}
