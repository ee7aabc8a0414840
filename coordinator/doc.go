// Package coordinator is lifeboat's control plane: a Raft-replicated state
// machine that knows the policies, repositories, agents, jobs, the snapshot
// catalog and an audit log, and a leader that turns schedules into jobs and
// hands them to agents under fencing leases.
//
// # Replicated state
//
// Everything durable lives in State and changes only through FSM.Apply,
// one Command per Raft log entry. Apply is a pure function of the state and
// the command: the command carries its own time (the proposer's clock) and
// every ID, and Apply never reads a clock, draws a random number or lets
// map order decide anything (it walks sorted keys). Replaying the same log
// on any node therefore gives byte-identical JSON snapshots, which is what
// FSM snapshots store and what the tests check.
//
// Each command has a Version and a Type. A node rejects a type it does not
// know or a version newer than CommandVersion with ErrUnsupportedCommand,
// and a rejected command changes nothing: every transition checks all of
// its preconditions before it mutates anything. Rejections are ordinary
// results, returned to the proposer, never panics.
//
// # Exactly-once scheduling
//
// Only the leader schedules. When a node becomes leader it first waits on
// a Raft barrier, so its state includes every committed entry, then ticks
// every Config.TickInterval of its Clock. A tick asks the pure planner
// (Plan) for the jobs due between each policy's watermark (State.LastFired)
// and now, and proposes them in one jobs.create command together with the
// advanced watermarks. Job IDs are a hash of (policy, instant, agent).
//
// If the leader dies before the command commits, the next leader finds the
// old watermark and plans the same instants again, with the same IDs. If
// it dies after, the watermark has moved and nothing is planned twice. If
// the outcome is unknown to everyone (the command committed, but the old
// leader never heard), the new leader's barrier makes it visible before
// planning. As a last line, jobs.create skips an ID that exists and an
// instant at or before the watermark, and a watermark never moves back, so
// re-proposing a plan is harmless. A tick missed during an election runs
// once, on the new leader.
//
// # Leases and fencing
//
// An agent takes a pending job with a lease: a fencing token (a counter in
// the state, so tokens only grow), a holder and a deadline. Heartbeats
// (job.renew) must present the current token and extend the deadline; a
// completion must present the current token before the deadline, measured
// in command time. When a deadline passes, the leader proposes job.expire;
// the job goes back to pending after a backoff, or fails once it has used
// its attempts. A paused or partitioned agent that wakes up later holds a
// token that is no longer current: its renewals and its result are refused
// with ErrStaleLease, so its snapshot never enters the catalog. A job is
// leased only to the agent it was planned for, not before its not-before
// time (jitter, backoff), and only within the agent's and the policy's
// concurrency limits.
//
// # Drills, verification and alerts
//
// The same leader loop plans maintenance (drills.go, verify.go): a policy's
// drill schedule yields one drill job per instant (only the newest missed
// one), leased to one of its runners, agents an admin granted CapDrill that
// announced holding an identity; each repository gets a verify job per
// verification instant covering the shards (first byte of the pack ID)
// verified longest ago. Both run in an agent's maintenance slot, beside its
// backups. A drill job ends in exactly one DrillRecord (the runner's
// verdict, which is final, or a "runner" record when it could not run);
// verify reports fold into per-pack coverage. Commands that carry this
// meaning are stamped version 2, so an older node refuses them instead of
// applying them its way. Alerts (alert_eval.go) are a pure function of the
// state and the time; the leader proposes their open/resolve transitions in
// one alerts.sync command and delivers them (notify.go), recording each
// delivery in the log so that a new leader does not send it again.
//
// # Raft
//
// raft.go wraps hashicorp/raft once: a BoltDB log and stable store and a
// file snapshot store under DATA_DIR/raft, TCP (optionally TLS) transport,
// idempotent bootstrap from --peers, and checks that refuse a data dir of
// another node, a directory of foreign files, or --peers that match neither
// the bootstrap membership nor the current one. Writes on a follower fail
// fast with *NotLeaderError (naming the leader) or, during an election,
// ErrNoLeader; a write whose leader lost leadership mid-commit fails with
// ErrLeadershipLost. All three are Retryable, and commands are designed to
// be retried. Snapshots every SnapshotThreshold entries keep the log
// bounded (TrailingLogs entries stay for slow followers).
//
// Reads are served by any node from its own FSM (Node.View, Node.State):
// they may trail the leader by the replication delay.
package coordinator
