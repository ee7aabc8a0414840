package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/agent"
	"github.com/lifeboat-backup/lifeboat/coordinator"
)

type serverFlags struct {
	id, dataDir, raftAddr, raftBind, httpAddr, advertise, peers string
	tlsCert, tlsKey, tlsCA                                      string
	dev                                                         bool
	devBackup                                                   string
	alertUnseen                                                 time.Duration
	alertDashboard                                              string
	verifySchedule                                              string
}

func newServerCmd(g *globals) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a coordinator node (--dev: a one-process playground)",
		Long: `Run one node of the coordinator cluster: Raft-replicated policies, agents,
jobs, the snapshot catalog and the audit log, the scheduler, and the HTTP API
(/v1/..., /metrics, /healthz, /readyz). Logs are JSON lines on stderr.

Nodes started with the same --peers form one cluster; it is bootstrapped once,
and restarting a node with its data dir rejoins it. A node started without
--peers waits to be added with 'lifeboat cluster join'. The first leader of a
new cluster writes an initial admin token to DATA_DIR/admin-token (mode 0600).

--dev runs a single-node cluster with a local repository and keys generated
under its data dir; --dev-backup PATH adds a demo policy backing PATH up
every minute and restore-drilling it every 10 minutes (the embedded agent
holds the dev identity, which makes it a drill runner).`,
		Example: `  lifeboat server --dev --dev-backup ~/Documents
  lifeboat server --id n1 --data-dir /var/lib/lifeboat --raft-addr 10.0.0.1:8421 --http-addr 0.0.0.0:8420 \
      --peers n1=10.0.0.1:8421,n2=10.0.0.2:8421,n3=10.0.0.3:8421`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServer(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "this node's ID, unique in the cluster and stable")
	fl.StringVar(&f.dataDir, "data-dir", "", "where this node keeps its state")
	fl.StringVar(&f.raftAddr, "raft-addr", "", "HOST:PORT other nodes reach this node's Raft at")
	fl.StringVar(&f.raftBind, "raft-bind", "", "address to listen for Raft on (default --raft-addr)")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8420", "HOST:PORT to serve the API on")
	fl.StringVar(&f.advertise, "advertise-http", "", "the API's URL as other nodes reach it (default from --http-addr)")
	fl.StringVar(&f.peers, "peers", "", "the cluster's voting members: ID=RAFTADDR,... (include this node)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "certificate (PEM) for the API (HTTPS) and Raft (mutual TLS)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate (PEM) that verifies the other nodes")
	fl.BoolVar(&f.dev, "dev", false, "run a single-node playground with a local repository")
	fl.StringVar(&f.devBackup, "dev-backup", "", "with --dev: back this path up every minute")
	fl.DurationVar(&f.alertUnseen, "alert-agent-unseen", 10*time.Minute, "alert when an agent has not been in touch for this long (0: the default 10m; negative: never)")
	fl.StringVar(&f.verifySchedule, "verify-schedule", coordinator.DefaultVerifySchedule, "when repository verification jobs run (cron or @every; \"off\" disables them)")
	fl.StringVar(&f.alertDashboard, "alert-dashboard-url", "", "URL sent with generic webhook alerts (e.g. the dashboard)")
	return cmd
}

func (g *globals) serverLogger(cmd *cobra.Command) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case g.verbose:
		level = slog.LevelDebug
	case g.quiet:
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.logFormat == "text" {
		return slog.New(slog.NewTextHandler(g.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(g.stderr, opts))
}

func runServer(cmd *cobra.Command, g *globals, f serverFlags) error {
	if f.devBackup != "" && !f.dev {
		return usageError("--dev-backup needs --dev")
	}
	if f.dev {
		if f.id == "" {
			f.id = "dev"
		}
		if f.dataDir == "" {
			f.dataDir = defaultDevDir()
		}
		if f.raftAddr == "" {
			f.raftAddr = "127.0.0.1:8421"
		}
		if f.peers == "" {
			f.peers = f.id + "=" + f.raftAddr
		}
	}
	for _, req := range []struct{ flag, val string }{{"id", f.id}, {"data-dir", f.dataDir}, {"raft-addr", f.raftAddr}} {
		if req.val == "" {
			return usageError("server needs --%s (or --dev)", req.flag)
		}
	}
	peers, err := coordinator.ParsePeers(f.peers)
	if err != nil {
		return usageError("--peers: %v", err)
	}
	log := g.serverLogger(cmd)
	if len(peers) == 0 {
		log.Warn("no --peers: this node waits to be added with 'lifeboat cluster join " + f.id + " " + f.raftAddr + "'")
	}
	srv, err := coordinator.NewServer(coordinator.ServerConfig{ID: f.id, DataDir: f.dataDir, RaftAddr: f.raftAddr, RaftBind: f.raftBind,
		HTTPAddr: f.httpAddr, AdvertiseURL: f.advertise, Peers: peers, TLSCert: f.tlsCert, TLSKey: f.tlsKey, TLSCA: f.tlsCA,
		Logger: log, Version: versionString(), AlertAgentUnseen: f.alertUnseen, AlertDashboardURL: f.alertDashboard,
		VerifySchedule: f.verifySchedule})
	if err != nil {
		return err
	}
	srv.Start()
	defer srv.Close()
	var agentDone chan error // the embedded agent's end (--dev)
	if f.dev {
		info, err := coordinator.SetupDev(cmd.Context(), srv, f.devBackup)
		if err != nil {
			return err
		}
		join, err := coordinator.DevJoinToken(cmd.Context(), srv)
		if err != nil {
			return err
		}
		// The playground's agent holds the dev identity, so that the demo
		// policy's drills have a runner. In a real deployment only
		// designated drill runners do.
		ids, err := loadIdentity(info.IdentityFile)
		if err != nil {
			return fmt.Errorf("dev agent: %w", err)
		}
		ag, err := agent.New(agent.Config{Servers: []string{srv.URL()}, JoinToken: join, DataDir: filepath.Join(f.dataDir, "agent"),
			Name: coordinator.DevAgent, Version: versionString(), ShutdownGrace: 10 * time.Second, Logger: log.With("component", "agent"),
			Identity: ids})
		if err != nil {
			return fmt.Errorf("dev agent: %w", err)
		}
		agentDone = make(chan error, 1)
		go func() { agentDone <- ag.Run(cmd.Context()) }()
		printDevInfo(g, srv.URL(), f, info)
	}
	select {
	case <-cmd.Context().Done():
		if agentDone != nil {
			<-agentDone // its running job finishes or stops without committing
		}
	case err := <-agentDone:
		log.Error("the embedded agent stopped", "err", err)
		<-cmd.Context().Done()
	}
	log.Info("shutting down")
	return nil
}

func defaultDevDir() string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		if home, err := os.UserHomeDir(); err == nil {
			base = filepath.Join(home, ".local", "share")
		} else {
			base = os.TempDir()
		}
	}
	return filepath.Join(base, "lifeboat", "dev")
}

func printDevInfo(g *globals, api string, f serverFlags, info coordinator.DevInfo) {
	w := g.stdout
	fmt.Fprintf(w, "lifeboat dev server is running: a single-node coordinator (data in %s)\n\n", f.dataDir)
	fmt.Fprintf(w, "  API:          %s   (metrics: %s/metrics)\n", api, api)
	fmt.Fprintf(w, "  admin token:  %s\n", info.AdminToken)
	fmt.Fprintf(w, "  repository:   %s  (registered as %q with its writer key)\n", info.Repository, coordinator.DevRepository)
	fmt.Fprintf(w, "  identity:     %s  (reads the backups; the coordinator never sees it)\n", info.IdentityFile)
	if info.Policy != "" {
		fmt.Fprintf(w, "  demo policy:  %s backs up %s every minute and drills a restore every 10 minutes\n", info.Policy, f.devBackup)
	}
	fmt.Fprintf(w, "\nTry, in another terminal:\n")
	fmt.Fprintf(w, "  export LIFEBOAT_ADDR=%s LIFEBOAT_TOKEN=%s\n", api, info.AdminToken)
	fmt.Fprintf(w, "  lifeboat cluster status\n  lifeboat policy list\n  lifeboat job list\n  lifeboat status\n")
	fmt.Fprintf(w, "  lifeboat snapshots --repo %s --identity %s\n", info.Repository, info.IdentityFile)
	if info.Policy != "" {
		fmt.Fprintf(w, "  lifeboat drill run %s --wait   # once the first backup is done (at the next minute; 'job list' shows it)\n  lifeboat drill report\n  lifeboat repo coverage\n", info.Policy)
	}
	fmt.Fprintf(w, "\nAn embedded agent %q runs the jobs (its state is in %s).\nStop with Ctrl-C; everything is kept for the next --dev.\n", coordinator.DevAgent, filepath.Join(f.dataDir, "agent"))
}
