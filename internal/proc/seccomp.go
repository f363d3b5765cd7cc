package proc

import (
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/seccomp"
)

// Seccomp sentinels (see seccomp_linux.go).
var (
	// ErrSeccomp: the target thread's seccomp filter would not let an
	// injected system call run (it would fail, raise SIGSYS, kill the
	// thread or the process, or wait for a supervisor), so it was not
	// injected. The error is a *SeccompError naming the call and the action.
	ErrSeccomp = errors.New("blocked by the target's seccomp filter")
	// ErrSeccompUnreadable: the thread has seccomp filters but they cannot be
	// read (PTRACE_SECCOMP_GET_FILTER needs CAP_SYS_ADMIN in the tracer, and
	// the tracer must not be under seccomp itself), so no call is injected.
	ErrSeccompUnreadable = errors.New("cannot read the target's seccomp filters")
)

// SeccompError is a system call hotpatch did not inject because of the
// filters of the thread that would have run it.
type SeccompError struct {
	Call string // the system call's name, e.g. "memfd_create"
	TID  int
	// Result is the filters' decision; Strict is set instead for a thread in
	// SECCOMP_MODE_STRICT (only read, write, _exit and sigreturn allowed).
	Result seccomp.Result
	Strict bool
	// For names the function whose unforeseeable system calls were
	// checked (injected function calls), "" for a system call.
	For string
}

func (e *SeccompError) Error() string {
	what := e.Call
	if e.For != "" {
		what = fmt.Sprintf("%s (a call %s may make)", e.Call, e.For)
	}
	if e.Strict {
		return fmt.Sprintf("%s is blocked by the target's seccomp strict mode (SECCOMP_MODE_STRICT) on thread %d", what, e.TID)
	}
	return fmt.Sprintf("%s is blocked by the target's seccomp filter (%v) on thread %d", what, e.Result, e.TID)
}

// Unwrap makes errors.Is find ErrSeccomp and, for SECCOMP_RET_ERRNO, the
// errno the call would have failed with (as when such calls were injected).
func (e *SeccompError) Unwrap() []error {
	if !e.Strict && e.Result.Action == seccomp.Errno {
		return []error{ErrSeccomp, errnoOf(e.Result.Data)}
	}
	return []error{ErrSeccomp}
}
