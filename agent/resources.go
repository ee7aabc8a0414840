package agent

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// Rate is an upload rate in bytes per second; 0 means unlimited. In the
// hooks file it is written like --upload-limit: "20MiB/s", "500kB/s",
// "1048576".
type Rate int64

// UnmarshalYAML parses a rate written as a number of bytes or with a unit.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseRate(n.Value)
	if err != nil {
		return err
	}
	*r = Rate(v)
	return nil
}

// ParseRate parses an upload rate: a number of bytes per second with an
// optional unit and an optional "/s": "0" (unlimited), "1048576",
// "20MiB/s", "20M", "1.5GiB/s", "500kB/s". K, M, G, KiB, MiB, GiB are
// powers of 1024; kB, KB, MB, GB are powers of 1000.
func ParseRate(s string) (int64, error) {
	v, err := coordinator.ParseSize(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "/s"), "ps"))
	if err != nil {
		return 0, fmt.Errorf("upload limit %q: want bytes per second, like 20MiB/s, 500kB/s or 1048576 (%v)", s, err)
	}
	return v, nil
}

// FormatRate formats a rate for messages: "20MiB/s", "unlimited".
func FormatRate(r int64) string {
	switch {
	case r <= 0:
		return "unlimited"
	case r%(1<<30) == 0:
		return fmt.Sprintf("%dGiB/s", r>>30)
	case r%(1<<20) == 0:
		return fmt.Sprintf("%dMiB/s", r>>20)
	case r%(1<<10) == 0:
		return fmt.Sprintf("%dKiB/s", r>>10)
	}
	return fmt.Sprintf("%dB/s", r)
}

// parallelism returns the parallelism of a policy's jobs: the policy's own
// setting in the hooks file, else the agent's (0: the defaults).
func (a *Agent) parallelism(policy string) int {
	if n := a.cfg.Hooks.For(policy).Parallelism; n > 0 {
		return n
	}
	return a.cfg.Parallelism
}

// limitStore paces the uploads of a policy's job: by the agent's limit,
// shared by all its jobs, and by the policy's own limit, shared by the
// jobs of that policy.
func (a *Agent) limitStore(policy string, st chunkstore.Store) chunkstore.Store {
	if a.uploadLimit != nil {
		st = a.uploadLimit.Wrap(st)
	}
	r := int64(a.cfg.Hooks.For(policy).UploadLimit)
	if r <= 0 {
		return st
	}
	a.mu.Lock()
	l := a.policyLimits[policy]
	if l == nil || l.Limit() != r {
		l = chunkstore.NewUploadLimiter(r)
		a.policyLimits[policy] = l
	}
	a.mu.Unlock()
	return l.Wrap(st)
}
