package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	sweepLocks(d) // once per run and directory
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
//
// The holder removes the file when it unlocks, so that a host where
// thousands of processes were patched is not left with thousands of files.
// Removing a lock file is safe under this protocol:
//   - only the holder of the flock on the inode the name refers to unlinks
//     it, and it does so before it closes (releases) it;
//   - a command that takes the flock checks, holding it, that the name still
//     refers to the inode it locked (fstatat against fstat); if not (the
//     holder it waited for removed it), it closes and starts again, creating
//     a new file.
//
// So whoever is past the check holds the flock on the inode that the name
// refers to, and that stays so until it unlinks: two commands can never both
// believe they hold the lock of one process. A holder killed before it
// unlinks leaves the file; the next command on that process reuses it, and
// sweepLocks removes those of processes that are gone.
func lockProcess(pid int, timeout time.Duration) (unlock func(), err error) {
	start, err := startTime(pid)
	if err != nil {
		return nil, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
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
	deadline := time.Now().Add(timeout)
	for {
		f, err := safefile.CreateAt(d, name, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		held, err := flockNamed(d, name, f, deadline)
		if err != nil {
			f.Close()
			if errors.Is(err, ErrBusy) {
				return nil, fmt.Errorf("%w: another hotpatch command holds %s for process %d", ErrBusy, f.Name(), pid)
			}
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !held {
			f.Close() // the holder we waited for removed it: lock the new one
			continue
		}
		return func() {
			unix.Unlinkat(int(d.Fd()), name, 0) // before the close: see above
			f.Close()
		}, nil
	}
}

// flockNamed takes the exclusive flock of f, waiting until deadline, and
// reports whether the name in d still refers to f's inode once it holds it
// (false: released again, the caller must reopen the name).
func flockNamed(d *os.File, name string, f *os.File, deadline time.Time) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return false, err
		}
		if time.Now().After(deadline) {
			return false, ErrBusy
		}
		time.Sleep(5 * time.Millisecond)
	}
	var mine, named unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &mine); err != nil {
		return false, err
	}
	err := unix.Fstatat(int(d.Fd()), name, &named, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) || err == nil && (named.Dev != mine.Dev || named.Ino != mine.Ino) {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false, nil
	}
	return err == nil, err
}

// startTime returns field 22 of /proc/PID/stat, the process's start time in
// clock ticks since boot (proc(5)): with the pid, it names one process.
func startTime(pid int) (string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i > 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			return f[19], nil
		}
	}
	return "0", nil
}

// sweepBatch bounds the lock files one run looks at: a run never pays for
// more than this many, and a directory left full by killed commands of an
// older version empties over a few runs.
const sweepBatch = 256

// sweepLocks removes lock files left by commands killed while they held
// them, for processes that no longer exist (no process has that pid and
// start time). It follows lockProcess's protocol: it unlinks only a file
// whose flock it holds and that the name still refers to, so a command
// that holds or waits for a lock is never disturbed; a waiter whose file
// was swept finds the name gone and creates a new one.
func sweepLocks(d *os.File) {
	// The directory the checks passed (d), not whatever its path names now.
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), d.Name())
	names, _ := f.Readdirnames(sweepBatch)
	f.Close()
	for _, name := range names {
		base, ok := strings.CutSuffix(name, ".lock")
		if !ok {
			continue
		}
		p, s, ok := strings.Cut(base, "-")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if now, err := startTime(pid); err == nil && now == s {
			continue // the process lives
		}
		fd, err := safefile.CreateAt(d, name, 0o600) // never follows a link
		if err != nil {
			continue
		}
		if held, _ := flockNamed(d, name, fd, time.Now()); held {
			if now, err := startTime(pid); err != nil || now != s {
				unix.Unlinkat(int(d.Fd()), name, 0)
			}
		}
		fd.Close()
	}
}
