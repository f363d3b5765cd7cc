package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/proc"
)

// LockDir holds the per-process lock files. Tests may point it elsewhere.
var LockDir = "/run/hotpatch"

// lockProcess serialises hotpatch commands on one process: it takes an
// exclusive flock(2) on a file named after the pid and the process's start
// time (so a recycled pid gets another lock). The kernel drops the lock when
// the holder exits, even on SIGKILL, so a crashed hotpatch never leaves a
// stale lock behind. It waits up to timeout for another command to finish.
func lockProcess(pid int, timeout time.Duration) (unlock func(), err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
	}
	s := string(stat)
	start := "0"
	if i := strings.LastIndexByte(s, ')'); i > 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			start = f[19] // field 22, starttime (proc(5))
		}
	}
	dir := LockDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		dir = filepath.Join(os.TempDir(), "hotpatch-locks")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("lock directory: %w", err)
		}
	}
	name := filepath.Join(dir, fmt.Sprintf("%d-%s.lock", pid, start))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: another hotpatch command holds %s for process %d", ErrBusy, name, pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The file stays: removing it would let a command that opened the old
	// inode and one that creates a new file both hold "the" lock.
	return func() { f.Close() }, nil
}
