package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/safefile"
)

// LockDir, when set (by tests), is the directory of the per-process lock
// files instead of StateDir's answer.
var LockDir string

// RootStateDir is root's runtime state directory.
const RootStateDir = "/run/hotpatch"

// ErrNoStateDir: hotpatch runs as a user other than root and
// $XDG_RUNTIME_DIR is not set, so it has no private place for its locks.
var ErrNoStateDir = errors.New("no runtime directory for hotpatch's state")

// StateDir returns the runtime state directory of the user running hotpatch:
// /run/hotpatch for root, $XDG_RUNTIME_DIR/hotpatch for any other user (a
// directory only that user can write, created by the login manager;
// XDG Base Directory Specification). Each user's commands serialise among
// themselves; a user cannot block, or plant files for, another's.
func StateDir() (string, error) {
	if os.Geteuid() == 0 {
		return RootStateDir, nil
	}
	x := os.Getenv("XDG_RUNTIME_DIR")
	if x == "" || !filepath.IsAbs(x) {
		return "", fmt.Errorf("%w: hotpatch run by uid %d keeps its locks in $XDG_RUNTIME_DIR/hotpatch, and XDG_RUNTIME_DIR is not set (set it to a directory of yours with mode 0700, or run as root)",
			ErrNoStateDir, os.Geteuid())
	}
	return filepath.Join(x, "hotpatch"), nil
}

// lockDirs holds the lock directories opened and checked
// (safefile.PrivateDir) in this run, by path. A host-wide apply locks every
// process it patches: checking the directory once, not once per process,
// saves a mkdir, an open, an fstat and a close each time. Keeping the
// descriptor is as safe as checking again: it is the directory that passed
// the checks (a rename or a new symbolic link at the path does not change
// what it refers to), and only its owner (the user running hotpatch) or
// root can change its mode.
var lockDirs struct {
	mu sync.Mutex
	m  map[string]*os.File
}

func lockDirectory(dir string) (*os.File, error) {
	lockDirs.mu.Lock()
	defer lockDirs.mu.Unlock()
	if d, ok := lockDirs.m[dir]; ok {
		return d, nil
	}
	d, err := safefile.PrivateDir(dir)
	if err != nil {
		return nil, err
	}
	if lockDirs.m == nil {
		lockDirs.m = map[string]*os.File{}
	}
	lockDirs.m[dir] = d
	return d, nil
}

// lockProcess serialises hotpatch commands on one process: it takes an
// exclusive flock(2) on a file named after the pid and the process's start
// time (so a recycled pid gets another lock). The kernel drops the lock when
// the holder exits, even on SIGKILL, so a crashed hotpatch never leaves a
// stale lock behind. It waits up to timeout for another command to finish.
//
// The directory must be the user's own, mode 0700 (safefile.PrivateDir), and
// the lock file is opened without following a symbolic link and must be a
// regular file of the user's: nobody else can hold the lock or make hotpatch
// create or truncate a file elsewhere.
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
	if dir == "" {
		if dir, err = StateDir(); err != nil {
			return nil, err
		}
	}
	d, err := lockDirectory(dir)
	if err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	name := fmt.Sprintf("%d-%s.lock", pid, start)
	f, err := safefile.CreateAt(d, name, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: another hotpatch command holds %s for process %d", ErrBusy, f.Name(), pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The file stays: removing it would let a command that opened the old
	// inode and one that creates a new file both hold "the" lock.
	return func() { f.Close() }, nil
}
