// Package tied starts commands that end with lifeboat: if lifeboat dies
// without ending them itself (kill -9, the OOM killer), the kernel sends
// them a signal. A dump waiting for a lock, or a drill's check, would
// otherwise run on with nobody to read its output or its result.
package tied

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd so that it gets sig (SIGTERM lets it clean up,
// SIGKILL does not wait for it) if lifeboat dies first. The kernel sends
// the signal when the thread that started the command ends, not the
// process, and Go may end a thread while the program lives on (one a
// goroutine locked and left), so the command is started from a thread
// kept locked until release is called: call it once the command has
// been waited for. Only the command itself gets the signal, not the
// processes it started.
func Start(cmd *exec.Cmd, sig syscall.Signal) (release func(), err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	started := make(chan error)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			<-done
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return func() { close(done) }, nil
}
