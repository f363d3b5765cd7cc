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
	// ErrThreadExited: the thread an injected call ran on exited during the
	// call while the process lives on. What the call did is unknown; the
	// process is detached and the caller undoes what it can check.
	ErrThreadExited = errors.New("thread exited during an injected call")
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

// errNotRun: the thread chosen for an injected call was found gone before
// the call could have run (see inject1); the call may be run on another.
var errNotRun = errors.New("thread exited before the call ran")

// ErrNoSafeThread: no stopped thread may run an injected function call
// (every one may hold a lock the callee takes, see CallVoid).
var ErrNoSafeThread = errors.New("no thread can safely run the call")
