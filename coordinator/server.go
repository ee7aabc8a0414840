package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ServerConfig configures one 'lifeboat server' process: a Node and its
// HTTP API.
type ServerConfig struct {
	ID       string
	DataDir  string
	RaftAddr string // advertised to the other nodes; also the listen address unless RaftBind is set
	RaftBind string
	HTTPAddr string // listen address of the API
	// AdvertiseURL is the API's base URL as other nodes reach it. Default:
	// http(s)://HTTPAddr, with an unspecified host replaced by RaftAddr's.
	AdvertiseURL string
	Peers        []Peer // bootstrap membership; empty to join an existing cluster

	// TLS: with TLSCert and TLSKey the API serves HTTPS and Raft traffic
	// is mutual TLS; TLSCA (required then) verifies peers.
	TLSCert, TLSKey, TLSCA string

	Logger  *slog.Logger
	Version string
	// AlertAgentUnseen is Config.Alerts.AgentUnseenAfter (0: default);
	// AlertDashboardURL is sent with generic webhook alerts.
	AlertAgentUnseen  time.Duration
	AlertDashboardURL string
	// VerifySchedule is Config.VerifySchedule ("" = DefaultVerifySchedule,
	// "off" = no scheduled verification).
	VerifySchedule string
	// Tune adjusts the node's configuration (tests: timeouts, clock).
	Tune func(*Config)
}

// Server is a running coordinator node with its API.
type Server struct {
	Node *Node
	API  *API

	cfg    ServerConfig
	log    *slog.Logger
	ln     net.Listener
	hs     *http.Server
	url    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// NewServer opens the node's data dir, starts Raft, and listens on the
// API address. Serving starts with Start.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.ID == "":
		return nil, errors.New("server: --id is required")
	case cfg.DataDir == "":
		return nil, errors.New("server: --data-dir is required")
	case cfg.RaftAddr == "":
		return nil, errors.New("server: --raft-addr is required")
	case cfg.HTTPAddr == "":
		return nil, errors.New("server: --http-addr is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := privateDir(cfg.DataDir, cfg.Logger); err != nil {
		return nil, err
	}
	serverTLS, clientTLS, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for the API on %s: %w", cfg.HTTPAddr, err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ln: ln}
	if serverTLS == nil {
		warnPlaintext(cfg, ln.Addr(), cfg.Logger)
	}
	s.url = cfg.AdvertiseURL
	if s.url == "" {
		s.url = advertiseURL(ln.Addr().String(), cfg.RaftAddr, serverTLS != nil)
	}
	nc := Config{Logger: cfg.Logger, Raft: RaftConfig{ID: cfg.ID, Addr: cfg.RaftAddr, BindAddr: cfg.RaftBind, DataDir: cfg.DataDir,
		Peers: cfg.Peers, Logger: cfg.Logger}}
	nc.Alerts.AgentUnseenAfter, nc.Notify.DashboardURL = cfg.AlertAgentUnseen, cfg.AlertDashboardURL
	nc.VerifySchedule = cfg.VerifySchedule
	if serverTLS != nil {
		rt := serverTLS.Clone()
		rt.ClientAuth = tls.RequireAndVerifyClientCert
		rt.RootCAs = clientTLS.RootCAs
		nc.Raft.TLS = rt
	}
	if cfg.Tune != nil {
		cfg.Tune(&nc)
	}
	node, err := NewNode(nc)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.Node = node
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = clientTLS
	transport.MaxIdleConnsPerHost = 64
	s.API = NewAPI(APIConfig{Node: node, Logger: cfg.Logger, Client: &http.Client{Transport: transport, Timeout: 6 * time.Minute},
		SelfURL: s.url, Version: cfg.Version, DataDir: cfg.DataDir})
	s.hs = newHTTPServer(s.API)
	s.hs.TLSConfig = serverTLS
	s.hs.ErrorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)
	return s, nil
}

// warnPlaintext logs, once, that a node without TLS is reachable from
// other machines: clients' API tokens, agents' credentials and join
// tokens (which followers forward to the leader), writer keys and
// storage environments (in the API and in Raft's log) cross the network
// in clear. It is allowed (a private network, a TLS-terminating proxy),
// so it is a warning, not a refusal.
func warnPlaintext(cfg ServerConfig, api net.Addr, log *slog.Logger) {
	raftAddr := cfg.RaftBind
	if raftAddr == "" {
		raftAddr = cfg.RaftAddr
	}
	apiOpen, raftOpen := !loopbackAddr(api.String()), !loopbackAddr(raftAddr)
	if !apiOpen && !raftOpen {
		return
	}
	log.Warn("serving without TLS on a non-loopback address: API tokens, agent credentials and join tokens "+
		"(forwarded by followers to the leader), writer keys and storage credentials cross the network in clear; "+
		"pass --tls-cert, --tls-key and --tls-ca to serve HTTPS and mutual-TLS Raft (see docs/security.md)",
		"http_addr", api.String(), "raft_addr", raftAddr)
}

// loopbackAddr reports whether HOST:PORT listens on loopback only:
// a loopback IP or "localhost". An unspecified host (0.0.0.0, ::, "")
// listens on every interface.
func loopbackAddr(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		host = hostPort
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// privateDir makes an existing data dir mode 0700. It holds the node
// secret, every repository's writer key and storage environment and the
// initial admin token, and Raft writes its snapshots (the whole state)
// with the umask's mode: a dir made beforehand with 0755 (an install
// script, a service manager's state directory) let every local user read
// them.
func privateDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory: pass a directory to --data-dir", dir)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s is mode %04o, readable by other users, and cannot be made 0700 (%w): run 'chmod 700 %s' as its owner", dir, fi.Mode().Perm(), err, dir)
	}
	log.Warn("data dir was readable by other users: made it mode 0700", "path", dir, "was", fmt.Sprintf("%04o", fi.Mode().Perm()))
	return nil
}

// newHTTPServer is the API's HTTP server with its timeouts. ReadTimeout
// bounds reading a whole request, so that a client trickling a body cannot
// hold a connection and a buffer: 2 minutes fits the largest body
// (MaxReportBody, a job completion) at about 140 KB/s. net/http lifts the
// read deadline once the body is read (for a GET, once the headers are),
// so it does not cancel an agent's long poll. There is no WriteTimeout:
// it runs from the end of the headers, and a long poll answers only after
// up to MaxWait (5 minutes by default), plus a forward to the leader.
// The API sets each answer's write deadline itself instead (API.ServeHTTP,
// APIConfig.WriteTimeout), longer for the routes that wait.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
}

// loadTLS builds the API's server config and the config this node dials
// other nodes with.
func loadTLS(cfg ServerConfig) (server, client *tls.Config, err error) {
	if cfg.TLSCert == "" && cfg.TLSKey == "" && cfg.TLSCA == "" {
		return nil, nil, nil
	}
	if cfg.TLSCert == "" || cfg.TLSKey == "" || cfg.TLSCA == "" {
		return nil, nil, errors.New("server: TLS needs --tls-cert, --tls-key and --tls-ca together (the CA verifies the other nodes)")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(cfg.TLSCA)
	if err != nil {
		return nil, nil, fmt.Errorf("read TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("TLS CA %s: no PEM certificate found", cfg.TLSCA)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client, nil
}

func advertiseURL(listen, raftAddr string, secure bool) string {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return scheme + "://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if rh, _, err := net.SplitHostPort(raftAddr); err == nil && rh != "" {
			host = rh
		} else {
			host = "127.0.0.1"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Start serves the API and runs the cluster bookkeeping until Close.
func (s *Server) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		var err error
		if s.hs.TLSConfig != nil {
			err = s.hs.ServeTLS(s.ln, "", "")
		} else {
			err = s.hs.Serve(s.ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.API.Maintain(ctx)
	}()
	s.log.Info("coordinator node started", "id", s.cfg.ID, "api", s.url, "raft", s.cfg.RaftAddr, "data_dir", s.cfg.DataDir)
}

// URL is the API's advertised base URL.
func (s *Server) URL() string { return s.url }

// AdminTokenPath is where the initial admin token is, if this node wrote it.
func (s *Server) AdminTokenPath() string { return filepath.Join(s.cfg.DataDir, AdminTokenFile) }

// AdminToken returns the initial admin token if this node holds it, once
// the cluster it admits to is initialized. (The token file is written
// before the cluster's initialization commits: returning it earlier let
// callers send a token the cluster did not know yet.)
func (s *Server) AdminToken() string {
	if t := s.API.InitialAdminToken(); t != "" {
		return t
	}
	initialized := false
	s.Node.View(func(st *State) { initialized = st.Cluster != nil })
	if !initialized {
		return ""
	}
	b, err := os.ReadFile(s.AdminTokenPath())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Close stops serving (in-flight requests get up to 5 s) and stops the node.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s.cancel != nil {
			_ = s.hs.Shutdown(ctx)
		} else {
			_ = s.ln.Close()
		}
		s.wg.Wait()
		err = s.Node.Close()
	})
	return err
}
