package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/atomicfile"
)

// Clock is the agent's time source (the coordinator's Clock: Now and
// After). Tests drive lease deadlines and backoff with it.
type Clock = coordinator.Clock

// Config configures an Agent.
type Config struct {
	// Servers are the API addresses of any coordinator nodes.
	Servers []string
	// JoinToken enrolls the agent the first time; afterwards the
	// credential stored in DataDir is used and the token is not needed.
	JoinToken string
	// DataDir holds the credential, the running-jobs record and the
	// files caches. Created with mode 0700.
	DataDir string
	// Name is the agent's name (default: the host name).
	Name   string
	Labels map[string]string
	// Host is recorded in snapshots (default: the host name).
	Host    string
	Version string
	// MaxJobs is how many backup jobs run at once (default 1). One
	// maintenance job (verify, drill or prune) may run beside them: the
	// coordinator leases at most one at a time.
	MaxJobs int

	// Identity, when set, makes the agent a drill runner: it announces
	// the drill capability and restores drills' snapshots with it. It
	// never leaves this process: the coordinator only learns that the
	// agent holds one.
	Identity []age.Identity
	// VerifyCommands are the drill verify commands this runner may run,
	// exactly as policies write them; nil or empty allows none. A policy
	// comes from the coordinator: the list, kept on the runner, is what
	// stops whoever controls the coordinator (or an admin token) from
	// running anything else where the identity is. See LoadVerifyCommands.
	VerifyCommands []string
	// VerifyCommandsFile names where VerifyCommands came from, for the
	// message of a refused command.
	VerifyCommandsFile string

	// LeaseTTL is the lease asked for with each job; heartbeats are sent
	// every third of it (default 2m).
	LeaseTTL time.Duration
	// PollWait is how long one long poll waits for work (default 30s).
	PollWait time.Duration
	// ShutdownGrace is how long a running job may go on after Run's
	// context ends before it is cancelled without committing (default 5m).
	ShutdownGrace time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts to reach
	// an unreachable cluster (default 1s and 1m).
	BackoffMin, BackoffMax time.Duration

	// Hooks are the pre/post hooks of policies, by policy name ("*"
	// applies to every policy without its own entry). See LoadHooks.
	Hooks Hooks

	// UploadLimit caps the bytes per second all jobs together upload
	// (0 = unlimited); a policy may set a lower one in Hooks.
	UploadLimit int64
	// Parallelism bounds the files read, the blobs sealed and the packs
	// uploaded at once by a job (0 = the defaults: snapshot.DefaultWorkers
	// readers and sealers, 2 uploaders). Hooks may set it per policy.
	Parallelism int

	Clock      Clock        // default: the wall clock
	Logger     *slog.Logger // default: discard
	HTTPClient *http.Client // default: a client with sane timeouts
	// CAFile is a PEM file of the CA that signed the coordinators'
	// certificates (their --tls-ca): the default HTTPClient trusts it
	// instead of the system's roots.
	CAFile string

	// wrapStore wraps the store a job writes to (tests: slow uploads).
	wrapStore func(chunkstore.Store) chunkstore.Store
	// keepLeftovers makes Run end none of the commands a previous
	// process left running (tests that play a killed agent whose
	// commands, and the agent itself, still run).
	keepLeftovers bool
}

// ErrRevoked is returned by Run when the coordinator has revoked the agent.
var ErrRevoked = errors.New("agent revoked")

// Agent is the node daemon.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	c     *client
	state *stateFile
	m     *metrics

	uploadLimit *chunkstore.UploadLimiter // nil: unlimited

	mu           sync.Mutex
	policyLimits map[string]*chunkstore.UploadLimiter
	running      map[string]*runningJob
	lastContact  time.Time
	lastErr      string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// New checks cfg and prepares the data dir; Run does the rest.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = coordinator.SystemClock
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: --data-dir is required")
	}
	if cfg.Name == "" || cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: cannot determine the host name (%w): pass --name", err)
		}
		if cfg.Name == "" {
			cfg.Name = h
		}
		if cfg.Host == "" {
			cfg.Host = h
		}
	}
	if !nameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("agent: name %q: want 1-63 letters, digits, '.', '_' or '-' (pass --name)", cfg.Name)
	}
	if cfg.UploadLimit < 0 || cfg.Parallelism < 0 {
		return nil, errors.New("agent: --upload-limit and --parallelism must not be negative")
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = 1
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 2 * time.Minute
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 30 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Minute
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(time.Minute, cfg.BackoffMin)
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 0 // long polls
		if cfg.CAFile != "" {
			pool, err := loadCAFile(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	addrs, err := normalizeAddrs(cfg.Servers)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: create data dir: %w", err)
	}
	st, err := openState(filepath.Join(cfg.DataDir, stateFileName))
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("agent", cfg.Name), clock: cfg.Clock,
		c: &client{addrs: addrs, hc: cfg.HTTPClient}, state: st, running: map[string]*runningJob{},
		policyLimits: map[string]*chunkstore.UploadLimiter{}}
	if cfg.UploadLimit > 0 {
		a.uploadLimit = chunkstore.NewUploadLimiter(cfg.UploadLimit)
	}
	a.m = newMetrics(a)
	return a, nil
}

// loadCAFile returns the certificates of the PEM file name, the roots the
// agent then trusts (as the CLI's --cacert).
func loadCAFile(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("agent: read the coordinators' CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("agent: CA file %s: no PEM certificate", name)
	}
	return pool, nil
}

// Name is the agent's name.
func (a *Agent) Name() string { return a.cfg.Name }

// Run ends the hook and stream commands a previous run left running,
// enrolls (once), reports jobs that run left interrupted, and
// then polls for work and runs it until ctx ends. On the end of ctx it
// takes no more work and gives running jobs ShutdownGrace to finish;
// after that they are cancelled without committing and reported as
// interrupted. Run returns nil after a shutdown, ErrRevoked if the agent
// was revoked, or an error when it could not enroll.
func (a *Agent) Run(ctx context.Context) error {
	a.endLeftovers()
	if err := a.enroll(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := a.announce(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		a.log.Error("agent stopped", "err", err)
		return err
	}
	a.log.Info("agent started", "servers", a.c.addrs, "max_jobs", a.cfg.MaxJobs, "capabilities", a.capabilities(), "data_dir", a.cfg.DataDir)

	jobsCtx, cancelJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelJobs(nil)
	var wg sync.WaitGroup
	// MaxJobs backups and the one maintenance job (verify, drill, prune) the
	// coordinator may lease beside them; which kind comes is its call.
	slots := make(chan struct{}, a.cfg.MaxJobs+1)
	bo := backoff{min: a.cfg.BackoffMin, max: a.cfg.BackoffMax}
	var runErr error
loop:
	for ctx.Err() == nil {
		if err := a.reportInterrupted(ctx); err != nil {
			if errors.Is(err, ErrRevoked) {
				runErr = err
				break
			}
			a.contactFailed(err)
			if !a.sleep(ctx, bo.next()) {
				break
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		item, err := a.poll(ctx)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, ErrRevoked) {
				runErr = err
				break
			}
			a.contactFailed(err)
			if !a.sleep(ctx, bo.next()) {
				break
			}
			continue
		}
		a.contactOK()
		bo.reset()
		if item == nil {
			<-slots
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			a.runJob(jobsCtx, item)
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	default:
		a.log.Info("shutting down: waiting for running jobs", "grace", a.cfg.ShutdownGrace, "jobs", a.runningIDs())
		select {
		case <-done:
		case <-a.clock.After(a.cfg.ShutdownGrace):
			a.log.Warn("shutdown grace period over: cancelling running jobs without committing", "jobs", a.runningIDs())
			cancelJobs(errShutdown)
			<-done
		}
	}
	if runErr != nil {
		a.log.Error("agent stopped", "err", runErr)
		return runErr
	}
	a.log.Info("agent stopped")
	return nil
}

// errShutdown cancels jobs that outlived the shutdown grace period.
var errShutdown = errors.New("the agent is shutting down and the job did not finish within the grace period")

// sleep waits d or until ctx ends; it reports whether the wait was full.
func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-a.clock.After(d):
		return true
	}
}

func (a *Agent) contactOK() {
	a.mu.Lock()
	a.lastContact, a.lastErr = a.clock.Now(), ""
	a.mu.Unlock()
}

func (a *Agent) contactFailed(err error) {
	a.m.pollErrors.Inc()
	a.mu.Lock()
	a.lastErr = err.Error()
	a.mu.Unlock()
	a.log.Warn("coordinator unreachable or refusing; backing off", "err", err)
}

func (a *Agent) runningIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, 0, len(a.running))
	for id := range a.running {
		ids = append(ids, id)
	}
	return ids
}

// ---- enrollment ------------------------------------------------------------

// credentialFile is DATA_DIR/credential.json: the agent's name and the
// credential enrollment gave it (mode 0600).
const credentialFile = "credential.json"

type storedCredential struct {
	Name       string    `json:"name"`
	Credential string    `json:"credential"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// enroll loads the stored credential or exchanges the join token for one.
// A cluster that cannot be reached is retried with backoff; a refused
// token is an error (nothing this process can fix).
func (a *Agent) enroll(ctx context.Context) error {
	path := filepath.Join(a.cfg.DataDir, credentialFile)
	if b, err := os.ReadFile(path); err == nil {
		var sc storedCredential
		if err := json.Unmarshal(b, &sc); err != nil || sc.Credential == "" {
			return fmt.Errorf("agent: credential file %s is damaged (%v): remove it and enroll again with a join token", path, err)
		}
		if sc.Name != a.cfg.Name {
			return fmt.Errorf("agent: %s holds the credential of agent %q, not %q: use --name %s, or another --data-dir", path, sc.Name, a.cfg.Name, sc.Name)
		}
		a.c.setCredential(sc.Credential)
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: read credential: %w", err)
	}
	if a.cfg.JoinToken == "" {
		return fmt.Errorf("agent: not enrolled yet (no %s): pass --join-token (create one with 'lifeboat agent token create')", path)
	}
	bo := backoff{min: a.cfg.BackoffMin, max: a.cfg.BackoffMax}
	for {
		var res coordinator.EnrollResult
		_, err := a.c.call(ctx, http.MethodPost, "/v1/agents", a.cfg.JoinToken,
			coordinator.EnrollRequest{Name: a.cfg.Name, Labels: a.cfg.Labels, Version: a.cfg.Version, MaxConcurrent: a.cfg.MaxJobs,
				Capabilities: a.capabilities()},
			&res, 30*time.Second)
		if err == nil && res.Credential == "" {
			err = fmt.Errorf("enroll: %w: no credential in the answer", errGarbage)
		}
		if err == nil {
			sc := storedCredential{Name: a.cfg.Name, Credential: res.Credential, EnrolledAt: a.clock.Now().UTC()}
			b, _ := json.MarshalIndent(sc, "", "  ")
			if err := atomicfile.Write(path, b, 0o600); err != nil {
				return fmt.Errorf("agent: store credential: %w", err)
			}
			a.c.setCredential(res.Credential)
			// The labels asked for: a join token's labels replace those
			// of the same keys, and a token with fixed labels all of them
			// ('lifeboat agent list' shows what the agent got).
			a.log.Info("enrolled", "requested_labels", a.cfg.Labels)
			return nil
		}
		if ae, ok := errors.AsType[*apiError](err); ok && !ae.Retryable {
			return fmt.Errorf("agent: enrollment refused: %w (where the join token is expired, used up or revoked, create a new one with 'lifeboat agent token create')", err)
		}
		a.contactFailed(err)
		if !a.sleep(ctx, bo.next()) {
			return ctx.Err()
		}
	}
}

// capabilities are what the agent announces beyond backups: "drill" when
// it holds an identity. Never nil: an empty list clears what an earlier
// start announced.
func (a *Agent) capabilities() []string {
	if len(a.cfg.Identity) > 0 {
		return []string{coordinator.CapDrill}
	}
	return []string{}
}

// announce tells the coordinator the agent's version and capabilities,
// at every start (an agent restarted without --identity must stop being
// given drills). An unreachable cluster is retried with backoff; a
// revoked agent gets ErrRevoked. Any other refusal (a coordinator that
// predates capabilities) is logged and the agent goes on.
func (a *Agent) announce(ctx context.Context) error {
	bo := backoff{min: a.cfg.BackoffMin, max: a.cfg.BackoffMax}
	req := coordinator.SeenRequest{Version: a.cfg.Version, Capabilities: a.capabilities()}
	for {
		_, err := a.c.call(ctx, http.MethodPost, "/v1/agents/"+a.cfg.Name+"/seen", "", req, nil, 30*time.Second)
		if err == nil {
			a.contactOK()
			return nil
		}
		if ae, ok := errors.AsType[*apiError](err); ok && !ae.Retryable {
			if ae.Status == http.StatusForbidden {
				return fmt.Errorf("%w: %v", ErrRevoked, err)
			}
			a.log.Warn("the coordinator did not take the agent's capabilities; going on without announcing them", "capabilities", req.Capabilities, "err", err)
			return nil
		}
		a.contactFailed(err)
		if !a.sleep(ctx, bo.next()) {
			return ctx.Err()
		}
	}
}

// ---- polling ---------------------------------------------------------------

// poll waits for the next job. It returns nil, nil when the wait ended
// without one.
func (a *Agent) poll(ctx context.Context) (*coordinator.WorkItem, error) {
	q := url.Values{}
	q.Set("wait", a.cfg.PollWait.String())
	q.Set("ttl", a.cfg.LeaseTTL.String())
	var item coordinator.WorkItem
	sent := a.clock.Now()
	status, err := a.c.call(ctx, http.MethodGet, "/v1/agents/"+a.cfg.Name+"/work?"+q.Encode(), "", nil, &item, a.cfg.PollWait+30*time.Second)
	if err != nil {
		if statusOf(err) == http.StatusForbidden {
			return nil, fmt.Errorf("%w: %v", ErrRevoked, err)
		}
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, nil
	}
	if item.Job.ID == "" || item.Token == 0 {
		return nil, fmt.Errorf("work: %w: a job without ID or fencing token", errGarbage)
	}
	// The lease was granted after the request left: sent+TTL is a
	// deadline the coordinator's can only be later than (clock rates
	// being equal), so acting on it never outlives the lease.
	item.Deadline = sent.Add(a.cfg.LeaseTTL)
	return &item, nil
}

// backoff is capped exponential backoff with jitter.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }
