package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lifeboat-backup/lifeboat/coordinator"
	"github.com/lifeboat-backup/lifeboat/internal/tied"
	"github.com/lifeboat-backup/lifeboat/snapshot"
)

// DefaultHookTimeout bounds a hook that sets no timeout.
const DefaultHookTimeout = 5 * time.Minute

// Hook is a command run through /bin/sh -c before or after a policy's
// backup.
type Hook struct {
	Command string               `yaml:"command" json:"command"`
	Timeout coordinator.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// TakesSnapshot, on a pre-hook, says the hook freezes what the
	// backup reads (takes a filesystem snapshot and mounts it at the
	// policy's paths): the snapshot is dated when the hook started, not
	// when the backup did, so that RPO is measured from the data's point
	// in time (see snapshot.BackupOptions.Time).
	TakesSnapshot bool `yaml:"takes_snapshot,omitempty" json:"takes_snapshot,omitempty"`
}

// PolicyHooks are the hooks and resource settings of one policy.
type PolicyHooks struct {
	Pre  *Hook `yaml:"pre,omitempty" json:"pre,omitempty"`
	Post *Hook `yaml:"post,omitempty" json:"post,omitempty"`
	// UploadLimit caps the upload rate of the policy's jobs, within the
	// agent's --upload-limit (which all jobs share); 0 = only the
	// agent's limit.
	UploadLimit Rate `yaml:"upload_limit,omitempty" json:"upload_limit,omitempty"`
	// Parallelism replaces the agent's --parallelism for the policy's
	// jobs; 0 = the agent's.
	Parallelism int `yaml:"parallelism,omitempty" json:"parallelism,omitempty"`
	// Stream, if set, makes the policy's backup on this agent the output
	// of a command (a database dump) instead of its paths: the snapshot
	// holds it as the one file /Filename, and the policy's paths must be
	// exactly [/Filename].
	Stream *StreamHook `yaml:"stream,omitempty" json:"stream,omitempty"`
}

// StreamHook is a command, run through /bin/sh -c, whose standard output
// a policy's backup stores (see PolicyHooks.Stream). Its standard error
// is logged and quoted in a failed job's error. A command that exits
// non-zero fails the job, and no snapshot is saved.
type StreamHook struct {
	Command  string `yaml:"command" json:"command"`
	Filename string `yaml:"filename" json:"filename"`
}

// Hooks maps policy names to their hooks; "*" applies to policies without
// an entry of their own.
//
// Hooks are configured on the agent, not in the policy: a coordinator can
// only ask an agent to back up, never to run a command, so whoever
// controls the coordinator does not control every node's shell.
type Hooks map[string]PolicyHooks

// For returns the hooks of a policy.
func (h Hooks) For(policy string) PolicyHooks {
	if ph, ok := h[policy]; ok {
		return ph
	}
	return h["*"]
}

// LoadHooks reads a hooks file (--hooks):
//
//	postgres:              # policy name
//	  pre:
//	    command: pg_dump -Fc -f /var/backups/app.dump app
//	    timeout: 10m
//	  post:
//	    command: rm -f /var/backups/app.dump
//	  upload_limit: 20MiB/s  # within the agent's --upload-limit
//	  parallelism: 2         # instead of the agent's --parallelism
//	home:                  # a policy whose paths are a snapshot's mount
//	  pre:
//	    command: /usr/local/sbin/snap-home mount
//	    takes_snapshot: true # date the backup when the hook started
//	orders:                # a policy whose paths are [/orders.dump]
//	  stream:                # its backup is this command's output
//	    command: pg_dump -Fc orders
//	    filename: orders.dump
//	"*":                   # every other policy
//	  post: {command: /usr/local/bin/notify-backup}
func LoadHooks(path string) (Hooks, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read hooks file: %w", err)
	}
	var h Hooks
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&h); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("hooks file %s: %w", path, err)
	}
	for {
		// A later document would be ignored: refuse it, unless empty
		// (a trailing '---').
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || len(more.Content) > 0 && more.Content[0].Tag != "!!null" {
			return nil, fmt.Errorf("hooks file %s: more than one YAML document (a '---' line): put every policy's hooks in one mapping", path)
		}
	}
	for name, ph := range h {
		if ph.Parallelism < 0 {
			return nil, fmt.Errorf("hooks file %s: policy %q: negative parallelism", path, name)
		}
		if st := ph.Stream; st != nil {
			if name == "*" {
				return nil, fmt.Errorf("hooks file %s: a stream belongs to one policy: move it from \"*\" to the policy whose backup it is", path)
			}
			if strings.TrimSpace(st.Command) == "" {
				return nil, fmt.Errorf("hooks file %s: policy %q: stream without a command", path, name)
			}
			if !snapshot.ValidName(st.Filename) {
				return nil, fmt.Errorf("hooks file %s: policy %q: stream filename %q: give one file name, without '/' (the policy's paths are then [/NAME])", path, name, st.Filename)
			}
		}
		for _, x := range []struct {
			which string
			h     *Hook
		}{{"pre", ph.Pre}, {"post", ph.Post}} {
			if x.h == nil {
				continue
			}
			if strings.TrimSpace(x.h.Command) == "" {
				return nil, fmt.Errorf("hooks file %s: policy %q: %s hook without a command", path, name, x.which)
			}
			if x.h.Timeout < 0 {
				return nil, fmt.Errorf("hooks file %s: policy %q: %s hook: negative timeout", path, name, x.which)
			}
			if x.h.TakesSnapshot && x.which != "pre" {
				return nil, fmt.Errorf("hooks file %s: policy %q: takes_snapshot belongs on the pre hook, which runs before the backup reads anything", path, name)
			}
		}
	}
	return h, nil
}

// maxHookOutput is how much of a hook's output is kept (the end of it).
const maxHookOutput = 16 << 10

// runHook runs h, for job jobID, with env added to the agent's
// environment. A hook that outlives its timeout is killed with its whole
// process group, as is one left running by an agent that died (see
// endLeftovers). It returns
// the hook's combined output (the last maxHookOutput bytes) and a
// warning for the job's result when the hook succeeded but left
// processes holding its output open.
func (a *Agent) runHook(ctx context.Context, jobID, which string, h Hook, env []string) (output, warning string, err error) {
	timeout := time.Duration(h.Timeout)
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", h.Command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = a.cfg.DataDir
	out := &tailBuffer{max: maxHookOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a shell's children would otherwise keep
		// running, and keep the output pipe open.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	// Tied: if the agent dies, the shell gets SIGTERM, and the next
	// start ends what is left of its group (endLeftovers).
	release, err := tied.Start(cmd, syscall.SIGTERM)
	if err == nil {
		ended := a.noteCommand(jobID, which+"-hook", h.Command, cmd.Process.Pid)
		err = cmd.Wait()
		release()
		ended()
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// The hook exited 0 but left a process holding its output (a
		// daemon it started: a FUSE mount, a snapshot helper). The hook
		// succeeded; only that process's later output is not kept. The
		// job's result says so too, where the operator looks (job list,
		// the webhook), not only the agent's log.
		warning = fmt.Sprintf("%s-hook %q exited 0 but left processes holding its output open (a daemon it started?); their output is not captured: redirect it in the hook (… >/dev/null 2>&1 &)", which, h.Command)
		a.log.Warn("hook exited 0 but left processes holding its output open; their later output is not captured (redirect it in the hook)",
			"hook", which, "command", h.Command)
		err = nil
	}
	a.m.hooks.WithLabelValues(which, status(err)).Inc()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return out.String(), "", fmt.Errorf("%s-hook %q timed out after %s and was killed", which, h.Command, timeout)
		}
		if ctx.Err() != nil {
			return out.String(), "", fmt.Errorf("%s-hook %q cancelled: %w", which, h.Command, context.Cause(ctx))
		}
		return out.String(), "", fmt.Errorf("%s-hook %q: %w", which, h.Command, err)
	}
	a.log.Info("hook ran", "hook", which, "command", h.Command, "duration", time.Since(start).Round(time.Millisecond).String())
	return out.String(), warning, nil
}

// formatOutput attaches a hook's output to an error message.
func formatOutput(out string) string {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return " (no output)"
	}
	return "\n--- hook output ---\n" + tail(out, 4096)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
