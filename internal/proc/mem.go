package proc

import (
	"fmt"
	"os"
)

// Mem writes a process's memory without attaching to it, through
// /proc/PID/mem. Opening it needs the same permission as attaching
// (PTRACE_MODE_ATTACH, proc(5)); writes reach read-only pages (FOLL_FORCE)
// like the debugger's. Each Write is one pwrite(2): its bytes are stored
// before the next Write's. Used for the patch-ready redirect, which changes
// code while the process runs.
type Mem struct {
	pid int
	f   *os.File
}

// OpenMem opens process pid's memory for writing.
func OpenMem(pid int) (*Mem, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/task/%d/mem", pid, liveTask(pid)), os.O_RDWR, 0)
	if err != nil {
		return nil, openErr(pid, err)
	}
	return &Mem{pid: pid, f: f}, nil
}

// Write stores b at addr.
func (m *Mem) Write(addr uint64, b []byte) error { return writeMem(m.f, addr, b) }

// Read reads len(b) bytes at addr.
func (m *Mem) Read(addr uint64, b []byte) error { return readMem(m.pid, m.f, addr, b) }

// Close releases the file.
func (m *Mem) Close() error { return m.f.Close() }
