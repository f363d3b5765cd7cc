package proc

import "errors"

// Sentinel errors callers branch on with errors.Is. Errors returned by this
// package wrap them with the pid and the operation that failed.
var (
	// ErrNoProcess: the process (or thread) does not exist.
	ErrNoProcess = errors.New("no such process")
	// ErrPermission: the kernel refused to let us trace the process
	// (ptrace access mode checks, Yama ptrace_scope, missing CAP_SYS_PTRACE).
	ErrPermission = errors.New("permission denied")
	// ErrExited: the process exited (or is a zombie) while we were working on it.
	ErrExited = errors.New("process exited")
	// ErrTimeout: the process did not reach the expected state in time.
	ErrTimeout = errors.New("timed out waiting for the process")
	// ErrAlreadyTraced: another tracer (a debugger, strace, another hotpatch)
	// is attached to the process.
	ErrAlreadyTraced = errors.New("process is already traced")
	// ErrKernelThread: the pid names a kernel thread, which has no user space.
	ErrKernelThread = errors.New("process is a kernel thread")
	// ErrDetached: the Process was detached (explicitly, or after an error
	// that forced a detach) and can no longer be used.
	ErrDetached = errors.New("process is detached")
	// ErrNotStopped: the operation needs the process stopped (see Process.Stop).
	ErrNotStopped = errors.New("process is not stopped")
	// ErrUnsupported: the operation is not implemented for the host architecture.
	ErrUnsupported = errors.New("not supported on this architecture")
)
