// Package agent is the node daemon ('lifeboat agent'): it enrolls with the
// coordinator, runs the backup jobs of the policies whose selector matches
// its labels, verify jobs for their repositories and — on drill runners —
// restore drills, and reports progress and outcomes.
//
// # Enrollment
//
// The first start exchanges a join token for a per-agent credential
// (POST /v1/agents), stored in DATA_DIR/credential.json with mode 0600.
// Later starts use the stored credential and need no token. The agent
// holds no identity and keeps no repository key: the writer key and S3
// credentials arrive with each leased job and live only in memory while
// the job runs.
//
// # The loop
//
// The agent long-polls any coordinator node for work
// (GET /v1/agents/NAME/work?wait=&ttl=); the node answers with a leased job
// or 204 after the wait. A node that is down, answers garbage or is in an
// election is skipped for the next address; when none answers, the agent
// backs off exponentially (with jitter, capped) and catches up when the
// cluster returns. At most MaxJobs jobs run at once.
//
// # Leases and fencing
//
// Each job comes with a fencing token and a lease of LeaseTTL. The agent
// keeps its own conservative deadline: the moment the poll was sent plus
// the TTL, moved to "renewal sent + TTL" by every accepted heartbeat. The
// lease is granted after the request leaves and renewed after the
// heartbeat leaves, so the coordinator's deadline is never earlier than
// the agent's. Heartbeats go every TTL/3 and carry progress (files, bytes,
// rate, and an ETA estimated from the size the previous run of the policy
// processed). When a renewal is refused (stale token, cancelled job,
// revoked agent), or TTL/6 before the local deadline passes without one,
// the job's context is cancelled: the backup stops before it writes its
// manifest, so nothing is committed, and its report is refused by the
// coordinator, which has taken the job back. Backups commit with the
// manifest (packs, then index, then manifest), so a cancelled backup
// leaves only packs that the retry adopts.
//
// The fencing is as good as the backup's reaction to cancellation: a
// manifest upload already in flight at the moment of cancellation can
// still land. Such a snapshot is complete and restorable, but the
// coordinator does not list it (its report is refused).
//
// # Crash recovery
//
// See interrupted.go: running jobs are recorded in DATA_DIR/state.json;
// a record found at start is reported as interrupted with its token, so
// the coordinator retries the job at once rather than after lease expiry,
// and the retry reuses the packs the killed run had uploaded. Hook and
// stream commands are tied to the agent (internal/tied: the kernel sends
// their shell SIGTERM when the agent dies), and each record lists the
// process groups of the job's commands running; the next start ends
// what is left of them (internal/procgroup) before it does anything else,
// so that the retry does not run a second dump beside the first.
//
// # Hooks
//
// Pre- and post-hooks are configured on the agent per policy (LoadHooks),
// never received from the coordinator. A failing or timed-out pre-hook
// fails the job with its output attached and the backup does not run; the
// post-hook always runs, with LIFEBOAT_JOB_STATUS and, after a commit,
// LIFEBOAT_SNAPSHOT_ID.
//
// A policy's entry may instead make its backup a stream (PolicyHooks.Stream):
// the output of a command (a database dump), read as it is produced
// (internal/streamcmd) and stored as the one file /FILENAME, which must be
// the policy's only path. The command runs in a process group of its own,
// ended when the job stops early; a command that fails fails the job with
// the end of its stderr, and nothing is committed.
//
// # Verify and drill jobs
//
// They run in one extra slot beside MaxJobs backups. A verify job (verify.go)
// needs only the writer key: it loads the index, lists the packs once, and
// streams each pack of its shards through SHA-256 and the structural checks
// a writer key allows; corruption and packs the index references but the
// bucket lacks are reported as damage, any other read error fails the job
// without a report so that it is retried. A drill job (drill.go) needs the
// identity given with --identity, which never leaves the process: the
// drill package restores and verifies, and the verdict goes back as
// evidence. Verify commands run only when listed in the runner's
// --drill-commands file, whatever the policy says.
//
// # Shutdown
//
// When Run's context ends (SIGTERM) the agent stops polling, lets running
// jobs finish within ShutdownGrace, and then cancels them without
// committing; their records stay in state.json only if the outcome could
// not be reported.
package agent
