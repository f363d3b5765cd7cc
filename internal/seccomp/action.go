package seccomp

import "fmt"

// Action is the upper 16 bits of a filter's return value
// (SECCOMP_RET_ACTION_FULL), linux/seccomp.h.
type Action uint32

// The actions, in the kernel's order of precedence (seccomp(2)): when
// several filters are attached, the one whose action comes first wins.
const (
	KillProcess Action = 0x80000000
	KillThread  Action = 0x00000000
	Trap        Action = 0x00030000
	Errno       Action = 0x00050000
	UserNotif   Action = 0x7fc00000
	Trace       Action = 0x7ff00000
	Log         Action = 0x7ffc0000
	Allow       Action = 0x7fff0000
)

const (
	actionMask = 0xffff0000 // SECCOMP_RET_ACTION_FULL
	dataMask   = 0x0000ffff // SECCOMP_RET_DATA
)

func (a Action) String() string {
	switch a {
	case KillProcess:
		return "SECCOMP_RET_KILL_PROCESS"
	case KillThread:
		return "SECCOMP_RET_KILL_THREAD"
	case Trap:
		return "SECCOMP_RET_TRAP"
	case Errno:
		return "SECCOMP_RET_ERRNO"
	case UserNotif:
		return "SECCOMP_RET_USER_NOTIF"
	case Trace:
		return "SECCOMP_RET_TRACE"
	case Log:
		return "SECCOMP_RET_LOG"
	case Allow:
		return "SECCOMP_RET_ALLOW"
	}
	return fmt.Sprintf("unknown seccomp action %#08x", uint32(a))
}

// known reports whether the kernel has a case for the action; any other
// value kills the process (kernel/seccomp.c, __seccomp_filter: the default
// case is that of SECCOMP_RET_KILL_PROCESS).
func (a Action) known() bool {
	switch a {
	case KillProcess, KillThread, Trap, Errno, UserNotif, Trace, Log, Allow:
		return true
	}
	return false
}

// Result is what a thread's filters decide for one system call.
type Result struct {
	// Action is the action the kernel takes; a return value with an
	// unknown action is reported as KillProcess, which is what the kernel
	// does with it.
	Action Action
	// Data is the low 16 bits of the deciding filter's return value (the
	// errno of SECCOMP_RET_ERRNO, si_errno of SECCOMP_RET_TRAP).
	Data uint16
	// Raw is the deciding filter's return value as the program returned it.
	Raw uint32
	// Filter is the index (in the slice given to Eval) of the deciding
	// filter; -1 when there are none.
	Filter int
}

// Runs reports whether the system call runs: only SECCOMP_RET_ALLOW and
// SECCOMP_RET_LOG let it run unchanged. Every other action either skips it
// (ERRNO, TRACE without a tracer that asked for seccomp events), raises a
// signal (TRAP: SIGSYS; KILL_*: death), or blocks it until a supervisor
// answers (USER_NOTIF).
func (r Result) Runs() bool { return r.Action == Allow || r.Action == Log }

func (r Result) String() string {
	switch r.Action {
	case Errno, Trap, Trace:
		return fmt.Sprintf("%v|%d", r.Action, r.Data)
	}
	return r.Action.String()
}

// Eval runs every filter of a thread over d and returns the decision, as the
// kernel does (kernel/seccomp.c, seccomp_run_filters): filters is in the
// order they were attached (oldest first, the order of
// PTRACE_SECCOMP_GET_FILTER's index), all of them run, and the return
// value whose action, compared as a signed 32-bit number, is lowest wins —
// KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG >
// ALLOW. Between equal actions the most recently attached filter wins. No
// filters allows everything.
func Eval(filters []Program, d Data) (Result, error) {
	sd := d.Bytes()
	res := Result{Action: Allow, Raw: uint32(Allow), Filter: -1}
	for i := len(filters) - 1; i >= 0; i-- {
		if err := filters[i].Validate(); err != nil {
			return Result{}, fmt.Errorf("filter %d: %w", i, err)
		}
		ret := filters[i].run(sd)
		if int32(ret&actionMask) < int32(res.Raw&actionMask) {
			res = Result{Action: Action(ret & actionMask), Data: uint16(ret & dataMask), Raw: ret, Filter: i}
		}
	}
	if !res.Action.known() {
		res.Action = KillProcess
	}
	return res, nil
}
