package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/agent"
	"github.com/lifeboat-backup/lifeboat/coordinator"
)

type agentFlags struct {
	servers, joinToken, cacert, dataDir, name, host, listen, hooks string
	drillCommands                                                  string
	uploadLimit                                                    string
	labels                                                         []string
	maxJobs, parallelism                                           int
	nice                                                           bool
	leaseTTL, pollWait, grace                                      time.Duration
}

func newAgentCmd(g *globals) *cobra.Command {
	var f agentFlags
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "agent --server ADDR[,ADDR...] --data-dir DIR [--join-token TOKEN]",
		Short: "Run the node agent, or manage agents (token create, list, revoke)",
		Long: `Run the node agent: it enrolls with the coordinator, runs the backup jobs of
the policies whose selector matches its labels, and reports their progress.

The first start exchanges --join-token for the agent's own credential, kept in
DATA_DIR/credential.json (mode 0600); later starts need no token. The writer
key and storage credentials arrive with each job. Any coordinator address may
be given; the agent fails over between them and backs off while none answers.

Every agent also runs verify jobs: it lists the repository's packs and reads
those of the shards it is given, checking each against its SHA-256 name and
its sealed trailer with the writer key. Started with --identity FILE (or
LIFEBOAT_IDENTITY; a protected file's passphrase from LIFEBOAT_PASSPHRASE or
the terminal), the agent is also a drill runner: it tells the coordinator it
can run restore drills, restores the policy's snapshot into scratch space
(drill.scratch, default DATA_DIR/drill-scratch), verifies it, runs the
policy's drill.verify commands that --drill-commands FILE allows and reports
the verdict. FILE lists the verify commands this runner may run, one a line,
exactly as the policies write them (blank lines and # comments ignored); any
other command is refused and fails the drill (reason check) without running:
the allow-list on the runner, not the coordinator's policy, decides what runs
where the identity is. Without --drill-commands no verify command runs. The
identity never leaves the node; the coordinator only learns that the agent
holds one. An agent started without it stops being given drills. Besides
--max-jobs backups, one verify, drill or prune job may run at a time. A
drill runner also runs the prunes of the policies whose retention sets
prune (and 'lifeboat policy prune').

Hooks run on the agent, from a file given with --hooks:
  POLICY:                      # or "*" for every other policy
    pre:  {command: "pg_dump -Fc -f /var/backups/db.dump app", timeout: 10m}
    post: {command: "rm -f /var/backups/db.dump"}
Hooks get LIFEBOAT_POLICY, LIFEBOAT_JOB_ID, LIFEBOAT_AGENT, LIFEBOAT_PATHS; the
post-hook also LIFEBOAT_JOB_STATUS and LIFEBOAT_SNAPSHOT_ID. A failing pre-hook
fails the job with its output; the post-hook always runs. A pre-hook that
takes a filesystem snapshot for the backup to read says "takes_snapshot: true":
the snapshot is then dated when the hook started (backup --time). Instead of a dump
file, a policy's backup can be a command's output, streamed into the
repository (the policy's paths must then be exactly [/NAME]):
  orders:
    stream: {command: "pg_dump -Fc orders", filename: orders.dump}
A stream command that exits non-zero fails the job with its stderr, and no
snapshot is saved.

Resource controls: --upload-limit caps what all jobs together upload
("20MiB/s", "500kB/s", bytes; 0 = unlimited; bursts of one 16 MiB pack).
--parallelism N bounds the directories walked, files read, blobs sealed and
packs uploaded at once per job (0 = a walker, a reader and a sealer per
core up to 8 each, at least 2 walkers, 2 uploaders; each uploader holds a
pack in memory). --nice (default on; --nice=false to turn
off) lowers the agent's CPU priority to nice 10 and its IO priority to the
lowest best-effort level at start; hooks inherit both. Per policy, the hooks
file may add "upload_limit: 5MiB/s" (a further cap within --upload-limit) and
"parallelism: 2" (instead of --parallelism).

SIGTERM stops taking work and lets a running job finish within
--shutdown-grace; after that it is cancelled without committing and retried.
Logs are JSON lines on stderr.`,
		Example: `  lifeboat agent token create --ttl 24h       # on an admin's machine
  lifeboat agent --server 10.0.0.1:8420,10.0.0.2:8420 --join-token lbj_... \
      --data-dir /var/lib/lifeboat-agent --label role=db --label env=prod`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.servers, "server", "", "coordinator API addresses, comma-separated (env LIFEBOAT_ADDR)")
	fl.StringVar(&f.cacert, "cacert", "", "CA certificate that signed the coordinators' certificates, their --tls-ca (env LIFEBOAT_CACERT)")
	fl.StringVar(&f.joinToken, "join-token", "", "join token for the first start (env LIFEBOAT_JOIN_TOKEN)")
	fl.StringVar(&f.dataDir, "data-dir", "", "where the agent keeps its credential, job records and files caches")
	fl.StringVar(&f.name, "name", "", "the agent's name (default: the host name)")
	fl.StringVar(&f.host, "host", "", "host name recorded in snapshots (default: the host name)")
	fl.StringArrayVar(&f.labels, "label", nil, "label KEY=VALUE that policies select on (repeatable)")
	fl.StringVar(&f.listen, "listen", "", "HOST:PORT to serve /metrics and /healthz on (default: none)")
	fl.StringVar(&f.hooks, "hooks", "", "YAML file of pre/post hooks by policy")
	fl.IntVar(&f.maxJobs, "max-jobs", 1, "backup jobs run at once (one verify, drill or prune job may run beside them)")
	fl.StringVar(&g.identity, "identity", "", "identity FILE: makes the agent a drill runner; it never leaves the node (env LIFEBOAT_IDENTITY, passphrase LIFEBOAT_PASSPHRASE)")
	fl.StringVar(&f.drillCommands, "drill-commands", "", "FILE of the drill verify commands this runner may run, one a line, exactly as in the policy (default: none)")
	fl.StringVar(&f.uploadLimit, "upload-limit", "0", "RATE: upload bandwidth of all jobs together, like 20MiB/s, 500kB/s or bytes; 0 = unlimited")
	fl.IntVar(&f.parallelism, "parallelism", 0, "directories walked, files read, blobs sealed and packs uploaded at once per job; 0 = default")
	fl.BoolVar(&f.nice, "nice", true, "lower the agent's CPU (nice 10) and IO (best-effort, lowest) priority")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 2*time.Minute, "lease asked for each job (heartbeats every third of it)")
	fl.DurationVar(&f.pollWait, "poll-wait", 30*time.Second, "how long one poll for work waits")
	fl.DurationVar(&f.grace, "shutdown-grace", 5*time.Minute, "on SIGTERM, how long a running job may still take")

	// Administration: an admin (or operator) token, like the other
	// coordinator commands.
	admin := &cobra.Command{Use: "token", Short: "Create join tokens for agents"}
	var ttl time.Duration
	var maxUses int
	var tokLabels []string
	var drillRunner, fixedLabels bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a join token (printed alone on the last line)",
		Long: `Create a join token. An agent enrolled with it gets its --label labels
on top of those the agent asks for (the token's win). With --fixed-labels the
agent gets exactly the token's labels and an agent that asks for any other
label is refused: use it when the machines that hold the token must not
choose which policies, and so which repositories' writer keys, they get.`,
		Example: "  lifeboat agent token create --ttl 24h --label site=fra1\n  lifeboat agent token create --label tier=web --fixed-labels",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 || maxUses < 0 {
				return usageError("--ttl and --max-uses must not be negative")
			}
			labels, err := parseLabels(tokLabels)
			if err != nil {
				return err
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			var res coordinator.TokenCreateResult
			req := coordinator.JoinTokenRequest{Labels: labels, TTL: coordinator.Duration(ttl), MaxUses: maxUses, FixedLabels: fixedLabels}
			if drillRunner {
				req.Grants = []string{coordinator.CapDrill}
			}
			if err := c.Post(cmd.Context(), "/v1/join-tokens", req, &res); err != nil {
				return apiErr(err)
			}
			if g.json {
				return printJSON(g.stdout, res)
			}
			if !g.quiet {
				exp := "never expires"
				if !res.Expires.IsZero() {
					exp = "expires " + res.Expires.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(g.stdout, "join token %s (%s); it is shown only now. Start an agent with --join-token:\n", res.ID, exp)
			}
			fmt.Fprintln(g.stdout, res.Token)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime; 0 = no expiry")
	create.Flags().BoolVar(&drillRunner, "drill-runner", false, "agents enrolled with it may run restore drills (when started with --identity)")
	create.Flags().IntVar(&maxUses, "max-uses", 0, "agents that may enroll with it; 0 = no limit")
	create.Flags().StringArrayVar(&tokLabels, "label", nil, "label KEY=VALUE given to every agent enrolled with it (repeatable)")
	create.Flags().BoolVar(&fixedLabels, "fixed-labels", false, "agents enrolled with it get exactly its --label labels and may not set others")
	admin.AddCommand(create)
	admin.AddCommand(&cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: it enrolls no more agents (those it enrolled keep their credentials)",
		Args:  argsBetween(1, 1, "join token ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), "/v1/join-tokens/"+url.PathEscape(args[0]), nil); err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(g.stdout, "join token %s revoked\n", args[0])
			return nil
		},
	})

	list := &cobra.Command{
		Use:   "list",
		Short: "List agents: name, labels, version, last seen, running jobs, health",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			as, done, err := fetch[[]coordinator.AgentView](cmd, g, &cf, "/v1/agents")
			if done || err != nil {
				return err
			}
			tw := newTable(g.stdout, "NAME", "LABELS", "VERSION", "LAST SEEN", "RUNNING", "DRILLS", "HEALTH")
			for _, a := range as {
				health := "connected"
				switch {
				case a.Revoked:
					health = "revoked"
				case !a.Connected:
					health = "disconnected"
				}
				drills := "-"
				switch {
				case slices.Contains(a.Capabilities, coordinator.CapDrill):
					drills = "runner"
				case slices.Contains(a.Grants, coordinator.CapDrill):
					drills = "granted, no identity"
				}
				labels := orDash(formatLabels(a.Labels))
				if a.FixedLabels {
					labels += " (fixed)"
				}
				row(tw, a.Name, labels, orDash(a.Version), ago(a.LastSeen), orDash(strings.Join(a.Running, ",")), drills, health)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an agent: it gets no more work and its reports are refused",
		Args:  argsBetween(1, 1, "agent NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			if err := c.Post(cmd.Context(), "/v1/agents/"+args[0]+"/revoke", nil, nil); err != nil {
				return apiErr(err)
			}
			if !g.quiet {
				fmt.Fprintf(g.stdout, "agent %s revoked\n", args[0])
			}
			return nil
		},
	}
	var grantDrill bool
	grant := &cobra.Command{
		Use:   "grant NAME --drill-runner[=false]",
		Short: "Allow (or no longer allow) an enrolled agent to run restore drills",
		Long: `A drill runner's verdict is evidence, so only an admin decides which agents
may run drills: with this command, or by enrolling them with a join token made
with 'lifeboat agent token create --drill-runner'. The agent must also be
started with --identity. --drill-runner=false withdraws the grant at once.`,
		Args: argsBetween(1, 1, "agent NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("drill-runner") {
				return usageError("say --drill-runner or --drill-runner=false")
			}
			c, err := cf.client(cmd)
			if err != nil {
				return err
			}
			req := coordinator.GrantRequest{Grants: []string{}}
			if grantDrill {
				req.Grants = []string{coordinator.CapDrill}
			}
			if err := c.Post(cmd.Context(), "/v1/agents/"+url.PathEscape(args[0])+"/grants", req, nil); err != nil {
				return apiErr(err)
			}
			if !g.quiet {
				if grantDrill {
					fmt.Fprintf(g.stdout, "agent %s may run drills once it announces an identity (restart it with --identity if it runs without)\n", args[0])
				} else {
					fmt.Fprintf(g.stdout, "agent %s may no longer run drills\n", args[0])
				}
			}
			return nil
		},
	}
	grant.Flags().BoolVar(&grantDrill, "drill-runner", false, "allow restore drills")
	for _, sub := range []*cobra.Command{admin, list, revoke, grant} {
		cf.register(sub)
		cmd.AddCommand(sub)
	}
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageError("--label %q: want KEY=VALUE", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func runAgent(cmd *cobra.Command, g *globals, f agentFlags) error {
	pick := func(flag, val, env string) string {
		if cmd.Flags().Changed(flag) {
			return val
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return val
	}
	servers := coordinator.ParseAddrs(pick("server", f.servers, "LIFEBOAT_ADDR"))
	if len(servers) == 0 {
		return usageError("no coordinator address: pass --server ADDR[,ADDR...] or set LIFEBOAT_ADDR")
	}
	if f.dataDir == "" {
		return usageError("--data-dir is required")
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return err
	}
	var hooks agent.Hooks
	if f.hooks != "" {
		if hooks, err = agent.LoadHooks(f.hooks); err != nil {
			return usageError("--hooks: %v", err)
		}
	}
	uploadLimit, err := agent.ParseRate(f.uploadLimit)
	if err != nil {
		return usageError("--upload-limit: %v", err)
	}
	if err := checkParallelism(f.parallelism); err != nil {
		return err
	}
	if f.maxJobs < 1 {
		return usageError("--max-jobs must be at least 1 (got %d)", f.maxJobs)
	}
	var verifyCommands []string
	if f.drillCommands != "" {
		if verifyCommands, err = agent.LoadVerifyCommands(f.drillCommands); err != nil {
			return usageError("--drill-commands %s: %v", f.drillCommands, err)
		}
	}
	var identity []age.Identity
	if g.identity != "" {
		if identity, err = loadIdentity(g.identity); err != nil {
			return err
		}
	}
	log := g.serverLogger(cmd)
	if identity != nil {
		log.Info("drill runner", "verify_commands_allowed", len(verifyCommands), "drill_commands", f.drillCommands)
	}
	if f.nice {
		agent.LowerPriority(log)
	}
	joinToken := pick("join-token", f.joinToken, "LIFEBOAT_JOIN_TOKEN")
	// Hooks and drill verify commands inherit the agent's environment:
	// they need not see its secrets.
	for _, k := range []string{"LIFEBOAT_JOIN_TOKEN", "LIFEBOAT_TOKEN", "LIFEBOAT_PASSPHRASE"} {
		os.Unsetenv(k)
	}
	a, err := agent.New(agent.Config{
		Servers: servers, JoinToken: joinToken, DataDir: f.dataDir,
		Name: f.name, Host: f.host, Labels: labels, Version: versionString(), MaxJobs: f.maxJobs,
		LeaseTTL: f.leaseTTL, PollWait: f.pollWait, ShutdownGrace: f.grace, Hooks: hooks, Logger: log,
		UploadLimit: uploadLimit, Parallelism: f.parallelism, Identity: identity,
		VerifyCommands: verifyCommands, VerifyCommandsFile: f.drillCommands,
		CAFile: pick("cacert", f.cacert, "LIFEBOAT_CACERT"),
	})
	if err != nil {
		return usageError("%v", err)
	}
	if f.listen != "" {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", f.listen, err)
		}
		hs := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener stopped", "err", err)
			}
		}()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = hs.Shutdown(ctx)
		}()
		log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	}
	if uploadLimit > 0 || f.parallelism > 0 {
		log.Info("resource limits", "upload_limit", agent.FormatRate(uploadLimit), "parallelism", f.parallelism)
	}
	if err := a.Run(cmd.Context()); err != nil {
		if errors.Is(err, agent.ErrRevoked) {
			return fmt.Errorf("%w: enroll it again under a new --name with a new join token and a fresh --data-dir", err)
		}
		return err
	}
	return nil
}
