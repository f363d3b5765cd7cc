// Package fleet applies, reverts and reports a patch across every process of
// the host that runs its target file, executable or shared library.
//
// A patch names its target by build-id, not by path: a package upgrade that
// replaced the file on disk leaves running processes mapping the old inode
// (shown "(deleted)" in /proc/PID/maps), and those are exactly the processes
// that need the fix. The scan is cheap: it reads /proc/PID/maps of every
// process, considers each distinct (device, inode) of an executable mapping
// once, reads that file's build-id once through /proc/PID/map_files (only the
// ELF header, program headers and PT_NOTE segments) and caches it. The
// matching processes are then patched concurrently by a bounded pool of
// workers, each calling engine.Apply, which finds the module at whatever
// address the process loaded it (dlopen included).
//
// Per-process outcomes are reported, never hidden: a process that exits
// during the scan or the apply is "gone", not a failure; with AllOrNone a
// failure anywhere reverts the processes this run patched.
package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
)

// Outcomes of one process (Result.Result).
const (
	Applied        = "applied"         // patched by this run
	AlreadyApplied = "already-applied" // the patch was applied before: nothing done
	Reverted       = "reverted"        // revert: the patch was taken out
	NotApplied     = "not-applied"     // revert: the process holds the patch's region but not applied (already reverted)
	RolledBack     = "rolled-back"     // patched by this run, then reverted because another process failed (AllOrNone)
	Skipped        = "skipped"         // not attempted (AllOrNone after a failure), or no longer maps the target
	Gone           = "gone"            // the process exited during the scan or the operation
	Failed         = "failed"          // the operation failed; the process is as it was
	WouldApply     = "would-apply"     // dry run: every check passed, the apply would patch it
	WouldRevert    = "would-revert"    // dry run: every check passed, the revert would revert it
)

// ErrFailed: at least one process failed (Report.Err wraps it).
var ErrFailed = errors.New("failed in some processes")

// Options control a fleet operation.
type Options struct {
	// PIDs restricts the operation to these processes (nil: every process).
	// A listed process that does not map the target fails with
	// engine.ErrNoTarget; one that does not exist is gone.
	PIDs []int
	// Jobs bounds the processes worked on at once (default runtime.NumCPU()).
	Jobs int
	// AllOrNone: if any process fails, revert the ones this run patched.
	// Only failures of hotpatch's own work count: a process refused because
	// of a record found in it (a patch in transition, engine.ErrInTransition)
	// is reported failed but rolls back no other process, since anything
	// running in a process can write such a record (a user's own process
	// must not undo root's rollout). Records that do not validate are
	// foreign and ignored altogether (engine.StateForeign).
	AllOrNone bool
	// Filter keeps only some processes (the zero Filter keeps all). A
	// process of PIDs the filter rejects is reported skipped.
	Filter Filter
	// Engine is passed to engine.Apply and engine.Revert; Engine.DryRun
	// makes the whole operation a dry run (Report.DryRun).
	Engine engine.Options
	// Progress, when set, is called (serially) after each process is done.
	Progress func(done, total int)
}

func (o Options) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return max(1, numCPU())
}

// Result is the outcome in one process.
type Result struct {
	PID int `json:"pid"`
	// NSPID is the process's pid in its own PID namespace (a container's),
	// 0 when that is the host's namespace (see NamespacePID).
	NSPID   int    `json:"ns_pid,omitempty"`
	Command string `json:"command"`
	// UID is the process's effective user id (-1: unknown).
	UID    int    `json:"uid"`
	Result string `json:"result"`
	// Pause is how long the process was stopped (0 when it was not).
	Pause time.Duration `json:"pause_ns"`
	// Stall is the longest time any one of its threads was stopped, over
	// every stop of the operation (engine.ApplyReport.Stall).
	Stall time.Duration `json:"stall_ns"`
	// Reason says why a process failed, was skipped or gone.
	Reason string `json:"reason,omitempty"`
	// Target is the path of the mapped file the patch applies to, and
	// Deleted whether that file was deleted or replaced on disk.
	Target  string `json:"target,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// Err is the error behind a failure, for errors.Is.
	Err error `json:"-"`
}

// Summary counts the results by outcome.
type Summary struct {
	Processes      int `json:"processes"`
	Applied        int `json:"applied"`
	AlreadyApplied int `json:"already_applied"`
	Reverted       int `json:"reverted"`
	NotApplied     int `json:"not_applied"`
	RolledBack     int `json:"rolled_back"`
	Skipped        int `json:"skipped"`
	Gone           int `json:"gone"`
	Failed         int `json:"failed"`
	WouldApply     int `json:"would_apply,omitempty"`
	WouldRevert    int `json:"would_revert,omitempty"`
}

// ScanStats describes the /proc scan.
type ScanStats struct {
	// Processes whose maps were read.
	Processes int `json:"processes"`
	// Files is the number of distinct executable files (device, inode)
	// whose build-id was read; each is read once per scan.
	Files int `json:"files"`
	// Vanished counts processes that exited between listing /proc and
	// reading their maps (not reported one by one unless listed in PIDs).
	Vanished int           `json:"vanished"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Report is the result of Apply or Revert.
type Report struct {
	Operation string `json:"operation"`
	PatchID   string `json:"patch_id"`
	BuildID   string `json:"build_id,omitempty"`
	// DryRun: nothing was changed (Options.Engine.DryRun); the results
	// say what the operation would do.
	DryRun  bool     `json:"dry_run,omitempty"`
	Results []Result `json:"processes"`
	Summary Summary  `json:"summary"`
	// Users counts the processes of each user the operation touched (or
	// would touch), when they are not all one user's.
	Users []UserCount `json:"users,omitempty"`
	// Filter is the filter the processes were selected with, as flags.
	Filter string    `json:"filter,omitempty"`
	Scan   ScanStats `json:"scan"`
	// Elapsed is the wall time of the whole operation, scan included.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Err returns nil when no process failed, else an error wrapping ErrFailed
// and the first failure's error (so callers can classify it).
func (r *Report) Err() error {
	if r.Summary.Failed == 0 {
		return nil
	}
	for _, res := range r.Results {
		if res.Result == Failed {
			return fmt.Errorf("%s %s: %w in %d of %d processes (first: process %d: %w)", r.Operation, r.PatchID,
				ErrFailed, r.Summary.Failed, r.Summary.Processes, res.PID, res.Err)
		}
	}
	return fmt.Errorf("%s %s: %w", r.Operation, r.PatchID, ErrFailed)
}

func (r *Report) finish(start time.Time) {
	sort.Slice(r.Results, func(i, j int) bool { return r.Results[i].PID < r.Results[j].PID })
	s := Summary{Processes: len(r.Results)}
	for _, res := range r.Results {
		switch res.Result {
		case Applied:
			s.Applied++
		case AlreadyApplied:
			s.AlreadyApplied++
		case Reverted:
			s.Reverted++
		case NotApplied:
			s.NotApplied++
		case RolledBack:
			s.RolledBack++
		case Skipped:
			s.Skipped++
		case Gone:
			s.Gone++
		case Failed:
			s.Failed++
		case WouldApply:
			s.WouldApply++
		case WouldRevert:
			s.WouldRevert++
		}
	}
	r.Summary = s
	if u := users(r.Results); len(u) > 1 {
		r.Users = u
	}
	r.Elapsed = time.Since(start)
}

// testHook lets tests act at named points ("matched": a process was found
// during the scan; "apply", "revert": a worker is about to operate on pid).
// Always nil outside tests.
var testHook func(point string, pid int)

func hook(point string, pid int) {
	if testHook != nil {
		testHook(point, pid)
	}
}

// Match is a process that maps the patch's target file.
type Match struct {
	PID     int
	NSPID   int // see Result.NSPID
	UID     int // effective uid, -1 unknown (see pidOwner)
	Command string
	// Path of the mapped file (as the kernel printed it, " (deleted)" removed).
	Path    string
	Deleted bool
}

// Find scans the processes of the host (or only pids, when not nil) for those
// with an executable mapping of a file whose build-id is buildID. gone lists
// the processes of pids that do not exist (or exited during the scan);
// unreadable maps those whose maps could not be read to the reason.
//
// keep, when not nil, selects the processes of a host-wide scan (pids nil)
// before their maps are read (see Filter).
func Find(buildID string, pids []int, keep func(pid int) bool) (matches []Match, gone []int, unreadable map[int]error, st ScanStats, err error) {
	start := time.Now()
	s := newScanner()
	explicit := pids != nil
	if !explicit {
		if pids, err = listPIDs(); err != nil {
			return nil, nil, nil, st, err
		}
	} else {
		pids = uniq(pids)
	}
	unreadable = map[int]error{}
	for _, pid := range pids {
		if pid == s.self {
			continue // hotpatch cannot trace itself
		}
		if !explicit && keep != nil && !keep(pid) {
			continue
		}
		maps, err := readMaps(pid)
		if err != nil {
			if isGone(err) {
				s.stats.Vanished++
				if explicit {
					gone = append(gone, pid)
				}
			} else if explicit {
				unreadable[pid] = err
			}
			continue
		}
		s.stats.Processes++
		if m, ok := s.match(pid, maps, func(id string) bool { return id == buildID }); ok {
			m.Command = comm(pid)
			m.UID, m.NSPID = procIDs(pid)
			matches = append(matches, m)
			hook("matched", pid)
		} else if explicit {
			unreadable[pid] = fmt.Errorf("%w: process %d maps no file with build-id %s", engine.ErrNoTarget, pid, buildID)
		}
	}
	s.stats.Elapsed = time.Since(start)
	return matches, gone, unreadable, s.stats, nil
}

type fileKey struct {
	dev   string
	inode uint64
}

// scanner caches build-ids by file for one scan.
type scanner struct {
	self  int
	ids   map[fileKey]string // "" when the file is not ELF or has no build-id
	stats ScanStats
}

func newScanner() *scanner {
	return &scanner{self: os.Getpid(), ids: map[fileKey]string{}}
}

// match returns the first executable file mapping of maps whose build-id
// satisfies want. Only executable mappings are considered: loaded code is
// always mapped executable, and this skips data files (locale archives,
// fonts, caches) without opening them.
func (s *scanner) match(pid int, maps []procmaps.Mapping, want func(string) bool) (Match, bool) {
	for _, m := range maps {
		if !m.FileBacked() || !m.Executable() || strings.HasPrefix(m.Path, regionPrefix) {
			continue // hotpatch's own patch regions: one memfd per process, never a target
		}
		k := fileKey{m.Dev, m.Inode}
		id, ok := s.ids[k]
		if !ok {
			var cacheable bool
			id, cacheable = s.readID(pid, m)
			if !cacheable {
				continue
			}
			s.ids[k] = id
			s.stats.Files++
		}
		if id != "" && want(id) {
			return Match{PID: pid, Path: m.Path, Deleted: m.Deleted}, true
		}
	}
	return Match{}, false
}

// readID reads the build-id of the file behind mapping m of pid. It opens the
// file through /proc/PID/map_files (procmaps.Module.Open), which reaches the
// mapped inode even when the path was deleted or replaced. cacheable is
// false when the file could not be opened (the process exited, or a
// permission problem specific to this process): another process mapping the
// same file may do better.
func (s *scanner) readID(pid int, m procmaps.Mapping) (id string, cacheable bool) {
	mod := &procmaps.Module{Path: m.Path, Deleted: m.Deleted, Dev: m.Dev, Inode: m.Inode,
		Mappings: []procmaps.Mapping{m}, Start: m.Start, End: m.End}
	f, err := mod.Open(pid)
	if err != nil {
		return "", errors.Is(err, procmaps.ErrNotRegular)
	}
	defer f.Close()
	id, err = readBuildID(f)
	if err != nil {
		return "", true // not ELF, no build-id, or malformed: never a target
	}
	return id, true
}

// regionPrefix starts the path /proc/PID/maps shows for a patch region.
const regionPrefix = "/memfd:" + record.NamePrefix

// listPIDs returns the numeric entries of /proc in increasing order.
func listPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

func readMaps(pid int) ([]procmaps.Mapping, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return nil, fmt.Errorf("read maps of process %d: %w", pid, err)
	}
	maps, err := procmaps.ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	return maps, nil
}

// comm returns the process's command name (/proc/PID/comm, at most 15 bytes).
func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// NamespacePID returns the pid of process pid in its innermost PID
// namespace (the last field of the NSpid line of /proc/PID/status, proc(5)),
// or 0 when the process is in the reader's namespace (one field), has
// exited, or the kernel does not say (before Linux 4.1). A process in a
// container is patched through its host pid like any other: its files are
// opened through /proc/PID/map_files (or /proc/PID/root), never through the
// host's path of the same name; this pid is what its owner sees.
func NamespacePID(pid int) int {
	_, nspid, _ := readStatus(pid)
	return nspid
}

// procIDs returns pid's effective uid (as pidOwner: -1 unknown) and its pid
// in its PID namespace (as NamespacePID), from one read of its status.
func procIDs(pid int) (uid, nspid int) {
	uid, nspid, _ = readStatus(pid)
	if uid < 0 {
		uid = statOwner(pid)
	}
	return uid, nspid
}

// readStatus reads /proc/PID/status once: the effective uid (the second
// field of "Uid:", proc(5); -1 when the line is missing or malformed) and
// the innermost NSpid (parseNSpid). The file is the kernel's, but of a
// process of any user: nothing in it is trusted beyond these two numbers.
func readStatus(pid int) (uid, nspid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, 0, err
	}
	return parseUID(b), parseNSpid(b), nil
}

// parseUID returns the effective uid of a status file, -1 when it has none.
func parseUID(status []byte) int {
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Uid:" {
			if u, err := strconv.Atoi(f[2]); err == nil && u >= 0 {
				return u
			}
			return -1
		}
	}
	return -1
}

// parseNSpid returns the innermost pid of the NSpid line of a status file,
// 0 when the line is missing or has a single field.
func parseNSpid(status []byte) int {
	for _, l := range strings.Split(string(status), "\n") {
		v, ok := strings.CutPrefix(l, "NSpid:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 2 {
			return 0
		}
		n, err := strconv.Atoi(f[len(f)-1])
		if err != nil || n <= 0 {
			return 0
		}
		return n
	}
	return 0
}

// isGone reports whether err means the process no longer exists: /proc
// entries vanish (ENOENT) or, for a process being torn down, reads fail
// with ESRCH.
func isGone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) ||
		errors.Is(err, proc.ErrNoProcess) || errors.Is(err, proc.ErrExited)
}

// alive reports whether pid exists and is not a zombie (state 'Z' or 'X' in
// /proc/PID/stat, proc(5)).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// classify turns an error of engine.Apply/Revert in pid into a result.
func classify(r *Result, pid int, err error) {
	switch {
	case isGone(err) || !alive(pid):
		r.Result, r.Reason = Gone, "process exited"
	case errors.Is(err, engine.ErrNoTarget):
		r.Result, r.Reason = Skipped, "no longer maps the target: "+err.Error()
	default:
		r.Result, r.Reason, r.Err = Failed, err.Error(), err
	}
}

// pool runs work for each of n items on at most jobs goroutines, calling
// progress after each.
func pool(n, jobs int, progress func(done, total int), work func(i int)) {
	var next atomic.Int64
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for w := 0; w < min(jobs, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				work(i)
				if progress != nil {
					mu.Lock()
					done++
					progress(done, n)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

// Apply applies p to every process that maps its target (or to opt.PIDs).
// The returned error is about the operation as a whole (/proc unreadable);
// per-process failures are in the report (see Report.Err).
func Apply(p *patchfile.Patch, opt Options) (*Report, error) {
	start := time.Now()
	rep := &Report{Operation: "apply", PatchID: p.ID, BuildID: p.Target.BuildID, DryRun: opt.Engine.DryRun, Filter: opt.Filter.String()}
	pids, keep := opt.selection(rep)
	matches, gone, bad, st, err := Find(p.Target.BuildID, pids, keep)
	if err != nil {
		return nil, err
	}
	rep.Scan = st
	for _, pid := range gone {
		rep.Results = append(rep.Results, Result{PID: pid, UID: -1, Result: Gone, Reason: "no such process"})
	}
	for pid, e := range bad {
		r := Result{PID: pid, Command: comm(pid), Result: Failed, Reason: e.Error(), Err: e}
		r.UID, r.NSPID = procIDs(pid)
		rep.Results = append(rep.Results, r)
	}
	var failed atomic.Bool
	failed.Store(len(bad) > 0)
	results := make([]Result, len(matches))
	pool(len(matches), opt.jobs(), opt.Progress, func(i int) {
		m := matches[i]
		r := &results[i]
		*r = Result{PID: m.PID, NSPID: m.NSPID, Command: m.Command, UID: m.UID, Target: m.Path, Deleted: m.Deleted}
		if opt.AllOrNone && failed.Load() && !opt.Engine.DryRun { // a dry run checks every process
			r.Result, r.Reason = Skipped, "not attempted: another process failed (--all-or-none)"
			return
		}
		hook("apply", m.PID)
		ar, err := engine.Apply(m.PID, p, opt.Engine)
		if err != nil {
			classify(r, m.PID, err)
			if r.Result != Failed {
				return
			}
			if errors.Is(err, engine.ErrInTransition) {
				// Refused on the word of a record read from this process,
				// which its owner controls: it decides nothing for the
				// others (see AllOrNone).
				if opt.AllOrNone {
					r.Reason += " (not counted for --all-or-none: that state was read from this process's memory)"
				}
				return
			}
			failed.Store(true)
			return
		}
		r.Target = ar.Target
		if ar.AlreadyApplied {
			r.Result = AlreadyApplied
			return
		}
		r.Result, r.Pause, r.Stall = Applied, ar.Pause, ar.Stall
		if ar.DryRun {
			r.Result = WouldApply
		}
	})
	if opt.AllOrNone && failed.Load() && !opt.Engine.DryRun {
		rollback(results, p.ID, opt)
	}
	rep.Results = append(rep.Results, results...)
	rep.finish(start)
	return rep, nil
}

// rollback reverts, in parallel, every process results says this run
// patched. A process whose revert fails is reported failed (still patched).
func rollback(results []Result, id string, opt Options) {
	var idx []int
	for i, r := range results {
		if r.Result == Applied {
			idx = append(idx, i)
		}
	}
	pool(len(idx), opt.jobs(), nil, func(k int) {
		r := &results[idx[k]]
		_, err := engine.Revert(r.PID, id, opt.Engine)
		switch {
		case err == nil:
			r.Result, r.Reason = RolledBack, "reverted because another process failed (--all-or-none)"
		case isGone(err) || !alive(r.PID):
			r.Result, r.Reason = Gone, "process exited"
		default:
			err = fmt.Errorf("roll back (--all-or-none): %w; the process stays patched", err)
			r.Result, r.Reason, r.Err = Failed, err.Error(), err
		}
	})
}

// patchRegions returns, per process, the patch regions (memfd mappings named
// "hotpatch:<id>") found in its maps, keeping those for which want(id).
// keep selects the processes of a host-wide scan (see Find).
func patchRegions(pids []int, keep func(pid int) bool, want func(id string) bool) (found map[int]bool, gone []int, st ScanStats, err error) {
	start := time.Now()
	explicit := pids != nil
	if !explicit {
		if pids, err = listPIDs(); err != nil {
			return nil, nil, st, err
		}
	} else {
		pids = uniq(pids)
	}
	found = map[int]bool{}
	self := os.Getpid()
	prefix := "/memfd:" + record.NamePrefix
	for _, pid := range pids {
		if pid == self || (!explicit && keep != nil && !keep(pid)) {
			continue
		}
		maps, err := readMaps(pid)
		if err != nil {
			if isGone(err) {
				st.Vanished++
				if explicit {
					gone = append(gone, pid)
				}
			}
			continue
		}
		st.Processes++
		for _, m := range maps {
			if m.Offset == 0 && strings.HasPrefix(m.Path, prefix) && want(strings.TrimPrefix(m.Path, prefix)) {
				found[pid] = true
				hook("matched", pid)
				break
			}
		}
	}
	st.Elapsed = time.Since(start)
	return found, gone, st, nil
}

// Revert reverts patch id in every process where it is applied (or in
// opt.PIDs). AllOrNone is not meaningful for revert and is ignored.
func Revert(id string, opt Options) (*Report, error) {
	start := time.Now()
	rep := &Report{Operation: "revert", PatchID: id, DryRun: opt.Engine.DryRun, Filter: opt.Filter.String()}
	sel, keep := opt.selection(rep)
	found, gone, st, err := patchRegions(sel, keep, func(x string) bool { return x == id })
	if err != nil {
		return nil, err
	}
	rep.Scan = st
	for _, pid := range gone {
		rep.Results = append(rep.Results, Result{PID: pid, UID: -1, Result: Gone, Reason: "no such process"})
	}
	for _, pid := range uniq(sel) {
		if !found[pid] && !contains(gone, pid) {
			e := fmt.Errorf("%w: process %d has no region of patch %q", engine.ErrNotApplied, pid, id)
			r := Result{PID: pid, Command: comm(pid), Result: NotApplied, Reason: e.Error()}
			r.UID, r.NSPID = procIDs(pid)
			rep.Results = append(rep.Results, r)
		}
	}
	pids := make([]int, 0, len(found))
	for pid := range found {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	results := make([]Result, len(pids))
	pool(len(pids), opt.jobs(), opt.Progress, func(i int) {
		pid := pids[i]
		r := &results[i]
		*r = Result{PID: pid, Command: comm(pid)}
		r.UID, r.NSPID = procIDs(pid)
		hook("revert", pid)
		rr, err := engine.Revert(pid, id, opt.Engine)
		switch {
		case err == nil:
			r.Result, r.Pause, r.Stall = Reverted, rr.Pause, rr.Stall
			if rr.DryRun {
				r.Result = WouldRevert
			}
			if !rr.Freed {
				r.Reason = "patch region kept: " + rr.Retained
				if rr.DryRun {
					r.Reason = "patch region would be kept: " + rr.Retained
				}
			}
		case errors.Is(err, engine.ErrNotApplied) && alive(pid):
			r.Result, r.Reason = NotApplied, err.Error()
		default:
			classify(r, pid, err)
		}
	})
	rep.Results = append(rep.Results, results...)
	rep.finish(start)
	return rep, nil
}

// selection applies opt.Filter: the explicit pids it keeps (those it
// rejects are reported skipped in rep), and the test of a host-wide scan.
func (opt Options) selection(rep *Report) (pids []int, keep func(pid int) bool) {
	sel := opt.Filter.selector()
	if sel == nil {
		return opt.PIDs, nil
	}
	if opt.PIDs == nil {
		return nil, func(pid int) bool { ok, _ := sel.keep(pid); return ok }
	}
	pids = []int{}
	for _, pid := range uniq(opt.PIDs) {
		if ok, why := sel.keep(pid); !ok && alive(pid) {
			rep.Results = append(rep.Results, Result{PID: pid, Command: comm(pid), UID: pidOwner(pid), Result: Skipped, Reason: "filtered out: " + why})
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// uniq returns the pids of s in increasing order without duplicates.
func uniq(s []int) []int {
	out := append([]int(nil), s...)
	sort.Ints(out)
	n := 0
	for i, v := range out {
		if i == 0 || v != out[n-1] {
			out[n] = v
			n++
		}
	}
	return out[:n]
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// ProcessStatus is the patches of one process.
type ProcessStatus struct {
	PID     int                  `json:"pid"`
	NSPID   int                  `json:"ns_pid,omitempty"` // see Result.NSPID
	Command string               `json:"command"`
	Patches []engine.PatchStatus `json:"patches"`
	// Error is set when the process's patch regions could not be read.
	Error string `json:"error,omitempty"`
}

// Status lists every process of the host (or of pids, when not nil) that
// holds at least one patch region, with its patches, in pid order. It stops
// no process. Processes that exit meanwhile are left out.
//
// A process of pids that f rejects is left out, as is one of the host that
// f rejects.
func Status(pids []int, f Filter) ([]ProcessStatus, error) {
	sel := f.selector()
	if pids != nil && sel != nil {
		var kept []int
		for _, pid := range pids {
			if ok, _ := sel.keep(pid); ok {
				kept = append(kept, pid)
			}
		}
		pids = append([]int{}, kept...)
	}
	keep := func(pid int) bool { ok, _ := sel.keep(pid); return ok }
	found, _, _, err := patchRegions(pids, keep, func(string) bool { return true })
	if err != nil {
		return nil, err
	}
	var out []ProcessStatus
	for pid := range found {
		ps := ProcessStatus{PID: pid, NSPID: NamespacePID(pid), Command: comm(pid)}
		st, err := engine.Status(pid)
		switch {
		case err != nil && (isGone(err) || !alive(pid)):
			continue
		case err != nil:
			ps.Error = err.Error()
		case len(st.Patches) == 0:
			continue // its regions were unmapped since the scan (a revert)
		default:
			ps.Patches = st.Patches
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}
