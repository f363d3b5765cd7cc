package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// Limits of prewarm: it runs before the stop, beside linking, and is only an
// optimisation.
const (
	prewarmThreads = 256
	prewarmStack   = 64 << 10
	prewarmBudget  = 5 * time.Millisecond
)

// prewarm walks, before any thread is stopped, the stacks of the threads
// that are blocked in a system call, from the stack and instruction pointers
// /proc/PID/task/TID/syscall shows for them (proc(5)). The call frame
// information is parsed per function on first use (unwind's .eh_frame_hdr
// index), and the walks of the consistency check run with the process
// stopped: walking now parses, while nothing waits, the entries that check
// will need for every thread that stays where it is (an idle thread blocked
// in epoll_wait, a worker in futex), and leaves their rules in u's cache,
// which depends only on the pc. The walks read a running thread's stack,
// which may change under them: a wrong word only leads a walk astray or to
// an error, both ignored; nothing is decided from them.
func (t *target) prewarm(u *unwind.Unwinder) {
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", t.pid))
	if err != nil {
		return
	}
	deadline := time.Now().Add(prewarmBudget)
	mem := func(a uint64, b []byte) error { return proc.ReadMem(t.pid, a, b) }
	for i, e := range tids {
		if i >= prewarmThreads || time.Now().After(deadline) {
			return
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", t.pid, e.Name()))
		if err != nil {
			continue
		}
		sp, pc, ok := parseSyscallFile(string(b))
		if !ok {
			continue
		}
		m, ok := procmaps.Find(t.maps, sp)
		if !ok {
			continue
		}
		st := &unwind.Stack{Lo: sp, Data: make([]byte, min(m.End-sp, prewarmStack)), Mem: mem}
		if mem(sp, st.Data) != nil {
			continue
		}
		u.Unwind(pc, sp, 0, st)
	}
}

// parseSyscallFile reads the stack and instruction pointers from the
// contents of /proc/PID/task/TID/syscall: "nr arg1 ... arg6 sp pc" for a
// thread blocked in a system call, "-1 sp pc" for one blocked elsewhere,
// "running" for one on a CPU (proc(5)).
func parseSyscallFile(s string) (sp, pc uint64, ok bool) {
	f := strings.Fields(s)
	if len(f) != 9 && len(f) != 3 {
		return 0, 0, false
	}
	sp, err1 := strconv.ParseUint(strings.TrimPrefix(f[len(f)-2], "0x"), 16, 64)
	pc, err2 := strconv.ParseUint(strings.TrimPrefix(f[len(f)-1], "0x"), 16, 64)
	return sp, pc, err1 == nil && err2 == nil && sp != 0 && pc != 0
}
