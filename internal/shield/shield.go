// Package shield lowers the odds that the process doing hotpatch's work (the
// apply/revert/recover worker) is killed mid-operation by something aimed at
// its caller: the OOM killer, and a kill of the caller's whole cgroup
// (`systemctl stop`, a container runtime or a CI job timeout use cgroup.kill
// or kill every process of the cgroup). Killing the worker can no longer
// harm the target (injected calls are self-restoring, see internal/proc),
// but an operation cut short leaves a transition for `hotpatch recover` to
// settle; a worker that finishes leaves nothing.
package shield

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Shield is what Protect did, undone by Release.
type Shield struct {
	// Notes says what could not be done (not errors: the worker goes on).
	Notes  []string
	cgroup string // the cgroup this process is shielded in, "" if none
	root   string // the cgroup v2 mount
	own    bool   // Protect made cgroup and moved there (Release undoes it)
}

// CellEnv tells a worker started in a Cell (NewCell) which cgroup that is,
// relative to the cgroup v2 mount: Protect then finds itself there already.
const CellEnv = "HOTPATCH_WORKER_CELL"

// A Cell is a cgroup made for a worker before it starts, so that the worker
// is born in it (clone3's CLONE_INTO_CGROUP: os/exec's
// SysProcAttr.UseCgroupFD) instead of moving there. Moving a process
// between cgroups takes the kernel's cgroup_threadgroup_rwsem for writing,
// which waits for an RCU grace period: 10-16 ms each way for the worker
// under load (strace -T), on the path of every command; a process born in
// a cgroup takes it only for reading. It also closes the window in which a
// worker just started was still in its caller's cgroup.
type Cell struct {
	dir, rel string
	fd       int
}

// NewCell creates the cgroup "hotpatch-worker-PID" (PID: the caller's) under
// the hierarchy's root (or ParentEnv) and opens it for CLONE_INTO_CGROUP.
func NewCell() (*Cell, error) {
	root, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	dir := cellDir(root)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	return &Cell{dir: dir, rel: strings.TrimPrefix(dir, root), fd: fd}, nil
}

// FD is the cgroup's directory, for SysProcAttr.CgroupFD.
func (c *Cell) FD() int { return c.fd }

// Env is the CellEnv setting to give the worker.
func (c *Cell) Env() string { return CellEnv + "=" + c.rel }

// Remove closes the cell and removes its cgroup, once the worker has exited
// (a cgroup with a process in it cannot be removed: then removeStale does it
// later).
func (c *Cell) Remove() {
	syscall.Close(c.fd)
	os.Remove(c.dir)
}

// inCell reports whether this process runs in the cgroup rel (relative to
// the cgroup v2 mount), per /proc/self/cgroup ("0::PATH", cgroups(7)).
func inCell(rel string) bool {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || rel == "" {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p == rel
		}
	}
	return false
}

// ParentEnv names a cgroup v2 directory (relative to the cgroup v2 mount,
// or absolute under it) to create the worker's cgroup in instead of the
// root of the hierarchy.
const ParentEnv = "HOTPATCH_WORKER_CGROUP_PARENT"

// Protect sets this process's oom_score_adj to -1000 (OOM_SCORE_ADJ_MIN:
// never chosen by the OOM killer; lowering it needs CAP_SYS_RESOURCE,
// proc(5)) and, when it can write cgroup v2, moves it into a new cgroup
// "hotpatch-worker-PID" under the hierarchy's root (or ParentEnv), so that a
// kill of the caller's cgroup does not reach it. Each step that fails is
// noted and skipped. It also ignores SIGPIPE and SIGHUP: a caller that
// died takes its pipes and terminal with it, and the worker's final report
// must not kill it (the write fails instead).
func Protect() *Shield {
	s := &Shield{}
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0); err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("oom_score_adj: %v", err))
	}
	root, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("cgroup: %v", err))
		return s
	}
	if rel := os.Getenv(CellEnv); rel != "" && inCell(rel) {
		// Born in the cell our caller made (NewCell), which removes it.
		s.cgroup, s.root = filepath.Join(root, rel), root
		return s
	}
	dir := cellDir(root)
	if err := os.Mkdir(dir, 0o755); err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("cgroup: %v", err))
		return s
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		os.Remove(dir)
		s.Notes = append(s.Notes, fmt.Sprintf("cgroup: join %s: %v", dir, err))
		return s
	}
	s.cgroup, s.root, s.own = dir, root, true
	return s
}

const cgroupPrefix = "hotpatch-worker-"

// removeStale removes the cgroups of workers that were killed before they
// could remove their own: an empty cgroup whose process is gone (rmdir of a
// populated cgroup fails with EBUSY, and a live worker's is populated).
func removeStale(parent string) {
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), cgroupPrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), cgroupPrefix) || err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.Remove(filepath.Join(parent, e.Name()))
		}
	}
}

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo.
func Cgroup2Mount() (string, error) { return cgroup2Mount("/proc/self/mountinfo") }

// Cgroup returns the directory of the cgroup Protect made, "" if none.
func (s *Shield) Cgroup() string { return s.cgroup }

// Release moves the process to the root cgroup and removes the cgroup
// Protect made (a cgroup with a process in it cannot be removed). The
// process should exit soon after. A process born in a Cell has nothing to
// release: its caller removes the cell once it has exited.
func (s *Shield) Release() error {
	if s.cgroup == "" || !s.own {
		return nil
	}
	if err := os.WriteFile(filepath.Join(s.root, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("leave cgroup %s: %w", s.cgroup, err)
	}
	if err := os.Remove(s.cgroup); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", s.cgroup, err)
	}
	s.cgroup = ""
	return nil
}

// ErrNoCgroup2: no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 file system mounted")

// cgroup2Mount returns the mount point of the cgroup v2 hierarchy from a
// mountinfo file (proc(5): "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"), taking one whose ROOT is "/"
// (a bind mount of a sub-cgroup would not see the root).
func cgroup2Mount(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return parseCgroup2Mount(data)
}

func parseCgroup2Mount(data []byte) (mnt string, err error) {
	defer func() {
		if r := recover(); r != nil {
			mnt, err = "", fmt.Errorf("parse mountinfo: panic: %v", r)
		}
	}()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(f) || f[sep+1] != "cgroup2" || f[3] != "/" {
			continue
		}
		return unescapeMount(f[4]), nil
	}
	return "", ErrNoCgroup2
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cellDir is the cgroup this process makes for itself under the cgroup v2
// root (or under $HOTPATCH_WORKER_CGROUP_PARENT within it), after removing the
// empty ones that killed workers left there.
func cellDir(root string) string {
	parent := root
	if p := os.Getenv(ParentEnv); p != "" {
		parent = filepath.Join(root, strings.TrimPrefix(filepath.Clean("/"+p), root))
	}
	removeStale(parent)
	return filepath.Join(parent, fmt.Sprintf("%s%d", cgroupPrefix, os.Getpid()))
}
