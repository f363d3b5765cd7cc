package fleet

// Filters of the host-wide form: which processes an operation may touch,
// beyond mapping the patch's target. They are read from /proc before a
// process's maps, so a filtered-out process costs one small read.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/hotpatch/hotpatch/internal/shield"
)

// Filter narrows an operation to some processes. The zero Filter keeps
// every process.
type Filter struct {
	// Exe keeps the processes whose executable is this file: the same inode
	// (stat of /proc/PID/exe, which reaches it in any mount namespace), or
	// for an executable replaced on disk by an upgrade, the same path as
	// /proc/PID/exe reads, " (deleted)" removed, in our mount namespace.
	Exe string
	// UID, when not nil, keeps the processes whose effective user id is
	// *UID (the second field of "Uid:" in /proc/PID/status, proc(5); ps's
	// USER).
	UID *int
	// Cgroup keeps the processes in this cgroup v2 or below it, e.g.
	// "system.slice/nginx.service": matched against the "0::" line of
	// /proc/PID/cgroup (cgroups(7)). A leading "/" and a leading cgroup2
	// mount point (/sys/fs/cgroup/...) are accepted.
	Cgroup string
}

// Empty reports whether f keeps every process.
func (f Filter) Empty() bool { return f.Exe == "" && f.UID == nil && f.Cgroup == "" }

// String is the filter as command-line flags, for messages.
func (f Filter) String() string {
	var s []string
	if f.Exe != "" {
		s = append(s, "--exe "+f.Exe)
	}
	if f.UID != nil {
		s = append(s, "--uid "+strconv.Itoa(*f.UID))
	}
	if f.Cgroup != "" {
		s = append(s, "--cgroup "+f.Cgroup)
	}
	return strings.Join(s, " ")
}

// selector is a Filter prepared for one scan.
type selector struct {
	f      Filter
	exe    os.FileInfo // nil: Exe not statable, match by path only
	cgroup string      // "/" + the path below the cgroup2 root, no trailing "/"
}

func (f Filter) selector() *selector {
	if f.Empty() {
		return nil
	}
	s := &selector{f: f}
	if f.Exe != "" {
		s.f.Exe = filepath.Clean(f.Exe)
		s.exe, _ = os.Stat(s.f.Exe)
	}
	if f.Cgroup != "" {
		c := filepath.Clean("/" + f.Cgroup)
		if mnt, err := shield.Cgroup2Mount(); err == nil && mnt != "/" && strings.HasPrefix(c, mnt+"/") {
			c = strings.TrimPrefix(c, mnt)
		}
		s.cgroup = c
	}
	return s
}

// keep says whether pid passes the filter, and if not, why not. A process
// whose /proc entries cannot be read does not pass.
func (s *selector) keep(pid int) (bool, string) {
	if s == nil {
		return true, ""
	}
	dir := "/proc/" + strconv.Itoa(pid)
	if s.f.Exe != "" && !s.sameExe(dir) {
		return false, "its executable is not " + s.f.Exe + " (--exe)"
	}
	if s.f.UID != nil {
		uid, err := procUID(pid)
		if err != nil || uid != *s.f.UID {
			return false, fmt.Sprintf("its effective uid is not %d (--uid)", *s.f.UID)
		}
	}
	if s.cgroup != "" {
		cg, err := procCgroup(pid)
		if err != nil || !(s.cgroup == "/" || cg == s.cgroup || strings.HasPrefix(cg, s.cgroup+"/")) {
			return false, "it is not in cgroup " + s.cgroup + " (--cgroup)"
		}
	}
	return true, ""
}

func (s *selector) sameExe(dir string) bool {
	if s.exe != nil {
		if st, err := os.Stat(dir + "/exe"); err == nil && os.SameFile(st, s.exe) {
			return true
		}
	}
	// By path only for an executable replaced on disk (the link reads
	// "PATH (deleted)", and no file is left to compare), and only in our
	// mount namespace: the link is the path as the process sees it, and the
	// same path in a container's file system is another file.
	l, err := os.Readlink(dir + "/exe")
	if err != nil {
		return false
	}
	p, deleted := strings.CutSuffix(l, " (deleted)")
	return deleted && p == s.f.Exe && sameMountNS(dir)
}

// sameMountNS says whether the process of /proc/PID dir is in this
// process's mount namespace (namespaces(7): two ns links are the same
// namespace when their device and inode are).
func sameMountNS(dir string) bool {
	mine, err := os.Stat("/proc/self/ns/mnt")
	if err != nil {
		return false
	}
	its, err := os.Stat(dir + "/ns/mnt")
	return err == nil && os.SameFile(mine, its)
}

// procUID returns the effective user id of pid (readStatus).
func procUID(pid int) (int, error) {
	uid, _, err := readStatus(pid)
	if err == nil && uid < 0 {
		err = fmt.Errorf("process %d: no Uid line in status", pid)
	}
	return uid, err
}

// procCgroup returns pid's cgroup v2 path (the "0::PATH" line of
// /proc/PID/cgroup).
func procCgroup(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return strings.TrimSuffix(p, " (deleted)"), nil
		}
	}
	return "", fmt.Errorf("process %d: not in a cgroup v2 hierarchy", pid)
}

// pidOwner returns the effective uid of pid, or -1 when it cannot be read
// (statOwner is the fallback).
func pidOwner(pid int) int {
	if uid, err := procUID(pid); err == nil {
		return uid
	}
	return statOwner(pid)
}

// statOwner returns the uid owning /proc/PID, -1 when it cannot be read: it
// is the effective uid unless the process is not dumpable (proc(5)).
func statOwner(pid int) int {
	if st, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			return int(sys.Uid)
		}
	}
	return -1
}

// UserCount is how many processes of one user an operation touched.
type UserCount struct {
	UID       int `json:"uid"`
	Processes int `json:"processes"`
}

// users counts the processes of each uid among the results an operation
// touched or would touch (not gone, not skipped).
func users(results []Result) []UserCount {
	n := map[int]int{}
	for _, r := range results {
		if r.Result == Gone || r.Result == Skipped || r.UID < 0 {
			continue
		}
		n[r.UID]++
	}
	var out []UserCount
	for uid, c := range n {
		out = append(out, UserCount{uid, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}
