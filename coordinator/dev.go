package coordinator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
	"github.com/lifeboat-backup/lifeboat/internal/atomicfile"
)

// Dev mode ('lifeboat server --dev'): a single-node cluster with a local
// repository and its keys under the data dir. The identity is written for
// the user (to restore from the repository) and never given to the
// coordinator: only the writer key is registered.

// DevRepository is the name of the repository dev mode registers.
const DevRepository = "dev"

// DevPolicy is the name of the demo policy of --dev-backup.
const DevPolicy = "dev-backup"

// DevInfo says what dev mode set up.
type DevInfo struct {
	AdminToken   string
	Repository   string // location of the local repository
	IdentityFile string // reads everything; for the user only
	WriterKey    string // what the coordinator and agents hold
	Policy       string // the demo policy, if any
}

// SetupDev waits for the node to lead its single-node cluster, then
// creates (once) the local repository and keys, registers the repository
// and, with backupPath, applies a demo policy backing it up every minute.
// Running it again on the same data dir changes nothing.
func SetupDev(ctx context.Context, s *Server, backupPath string) (DevInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !s.Node.IsLeader() || s.AdminToken() == "" {
		select {
		case <-ctx.Done():
			return DevInfo{}, errors.New("dev server: the node did not become leader of its cluster within 30s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := s.API.syncLeader(ctx); err != nil {
		return DevInfo{}, fmt.Errorf("dev server: %w", err)
	}
	dir := s.cfg.DataDir
	info := DevInfo{AdminToken: s.AdminToken(), Repository: filepath.Join(dir, "repo"),
		IdentityFile: filepath.Join(dir, "identity.txt"), WriterKey: filepath.Join(dir, "writer.key")}
	key, err := os.ReadFile(info.WriterKey)
	if errors.Is(err, os.ErrNotExist) {
		key, err = devRepository(ctx, info)
	}
	if err != nil {
		return DevInfo{}, err
	}
	var haveRepo bool
	var oldPolicy *Policy
	s.Node.View(func(st *State) {
		haveRepo = st.Repositories[DevRepository] != nil
		if pr := st.Policies[DevPolicy]; pr != nil {
			p := clonePolicy(pr.Policy)
			oldPolicy = &p
		}
	})
	if !haveRepo {
		if err := s.Node.AddRepository(ctx, "dev", AddRepository{Name: DevRepository, URL: info.Repository, WriterKey: key}); err != nil {
			return DevInfo{}, fmt.Errorf("register the dev repository: %w", err)
		}
	}
	if backupPath != "" {
		abs, err := filepath.Abs(backupPath)
		if err != nil {
			return DevInfo{}, err
		}
		if _, err := os.Stat(abs); err != nil {
			return DevInfo{}, fmt.Errorf("--dev-backup: %w", err)
		}
		p := Policy{Name: DevPolicy, Repository: DevRepository, Schedule: "@every 1m", Paths: []string{abs},
			Retention: Retention{KeepLast: 10}, Targets: Targets{RPO: Duration(5 * time.Minute), RTO: Duration(5 * time.Minute)},
			Drill: &DrillSpec{Schedule: "@every 10m", Scratch: filepath.Join(s.cfg.DataDir, "drills")}}
		if oldPolicy == nil || !reflect.DeepEqual(*oldPolicy, clonePolicy(p)) {
			if _, err := s.Node.PutPolicy(ctx, "dev", p); err != nil {
				return DevInfo{}, fmt.Errorf("apply the demo policy: %w", err)
			}
		}
		info.Policy = DevPolicy
	}
	return info, nil
}

// devRepository creates the local repository, the identity file and the
// writer key file, and returns the writer key.
func devRepository(ctx context.Context, info DevInfo) ([]byte, error) {
	st, err := location.Open(ctx, info.Repository, true)
	if err != nil {
		return nil, fmt.Errorf("dev repository: %w", err)
	}
	id, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		return nil, fmt.Errorf("dev repository: %w", err)
	}
	if err := atomicfile.Write(info.IdentityFile, id, 0o600); err != nil {
		return nil, fmt.Errorf("write the dev identity: %w", err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{recipient}})
	if err != nil {
		return nil, fmt.Errorf("dev repository: %w", err)
	}
	key, err := chunkstore.MarshalWriterKey(sec)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(info.WriterKey, key, 0o600); err != nil {
		return nil, fmt.Errorf("write the dev writer key: %w", err)
	}
	return key, nil
}

// DevAgent is the name of the agent embedded in the dev server.
const DevAgent = "dev"

// DevJoinToken returns a one-use join token for the embedded dev agent, or
// "" when that agent is already enrolled (it then uses its stored
// credential).
func DevJoinToken(ctx context.Context, s *Server) (string, error) {
	enrolled := false
	s.Node.View(func(st *State) { enrolled = st.Agents[DevAgent] != nil })
	if enrolled {
		return "", nil
	}
	jt, plain := NewJoinToken(nil, time.Now().UTC().Add(time.Hour), 1)
	jt.Grants = []string{CapDrill} // the playground's agent runs the demo drills
	if _, err := s.Node.Propose(ctx, CmdCreateJoinToken, "dev", jt); err != nil {
		return "", fmt.Errorf("join token for the dev agent: %w", err)
	}
	return plain, nil
}
