package main

// The fleet forms of apply, revert and status: no --pid (every process of
// the host that runs the target) or several --pid. The work is in
// internal/fleet; this file is flags and output only.

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/fleet"
)

// fleetFlags are the flags of the fleet forms.
type fleetFlags struct {
	jobs      int
	allOrNone bool
	filterFlags
}

// filterFlags are --exe, --uid and --cgroup (fleet.Filter).
type filterFlags struct {
	exe, cgroup string
	uid         int
}

func (f *filterFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.exe, "exe", "", "only processes whose executable is this file")
	c.Flags().IntVar(&f.uid, "uid", -1, "only processes of this (effective) user id")
	c.Flags().StringVar(&f.cgroup, "cgroup", "", "only processes in this cgroup v2 or below it (e.g. system.slice/nginx.service)")
}

func (f *filterFlags) filter(c *cobra.Command) (fleet.Filter, error) {
	out := fleet.Filter{Exe: f.exe, Cgroup: f.cgroup}
	if c.Flags().Changed("uid") {
		if f.uid < 0 {
			return out, usageError{fmt.Errorf("--uid %d: must be a user id (0 or more)", f.uid)}
		}
		uid := f.uid
		out.UID = &uid
	}
	if c.Flags().Changed("exe") && f.exe == "" || c.Flags().Changed("cgroup") && f.cgroup == "" {
		return out, usageError{fmt.Errorf("--exe and --cgroup need a path")}
	}
	return out, nil
}

// addFleetFlags adds --jobs, the filters (and, for apply, --all-or-none) to c.
func addFleetFlags(c *cobra.Command, apply bool) *fleetFlags {
	ff := &fleetFlags{}
	c.Flags().IntVar(&ff.jobs, "jobs", 0, "without --pid or with several: processes worked on at once (default: the number of CPUs)")
	if apply {
		c.Flags().BoolVar(&ff.allOrNone, "all-or-none", false, "without --pid or with several: if any process fails, revert the others")
	}
	ff.filterFlags.add(c)
	return ff
}

// checkPIDs refuses pids that cannot name a process.
func checkPIDs(pids []int) error {
	for _, p := range pids {
		if p <= 0 {
			return usageError{fmt.Errorf("--pid %d: must be positive", p)}
		}
	}
	return nil
}

func (ff *fleetFlags) options(cmd *cobra.Command, pids []int, opt engine.Options) (fleet.Options, func()) {
	o := fleet.Options{PIDs: pids, Jobs: ff.jobs, AllOrNone: ff.allOrNone, Engine: opt}
	bar := newProgressBar(cmd.ErrOrStderr())
	if bar != nil {
		o.Progress = bar.update
		return o, bar.clear
	}
	return o, func() {}
}

// printFleetText prints the per-process table and the summary line. When a
// process is in another PID namespace (a container), an NSPID column after
// PID shows its pid there ("-" for the host's processes).
func printFleetText(w io.Writer, rep *fleet.Report) {
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: every check of the real run, nothing changed (STALL, PAUSE: the stop of the checks)")
	}
	if rep.Filter != "" {
		fmt.Fprintf(w, "processes selected by %s\n", rep.Filter)
	}
	if len(rep.Results) > 0 {
		ns := false
		for _, r := range rep.Results {
			ns = ns || r.NSPID != 0
		}
		pidCol := func(pid, nspid string) string {
			if ns {
				return fmt.Sprintf("%-8s %-7s", pid, nspid)
			}
			return fmt.Sprintf("%-8s", pid)
		}
		fmt.Fprintf(w, "%s %-16s %-16s %10s %10s  %s\n", pidCol("PID", "NSPID"), "COMMAND", "RESULT", "STALL", "PAUSE", "REASON")
		for _, r := range rep.Results {
			stall, pause := "-", "-"
			if r.Stall > 0 {
				stall = r.Stall.Round(time.Microsecond).String()
			}
			if r.Pause > 0 {
				pause = r.Pause.Round(time.Microsecond).String()
			}
			reason := r.Reason
			if reason == "" && r.Deleted {
				reason = r.Target + " (deleted)"
			}
			line := fmt.Sprintf("%s %-16s %-16s %10s %10s  %s", pidCol(strconv.Itoa(r.PID), nsPIDText(r.NSPID)), r.Command, r.Result, stall, pause, reason)
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
	}
	if len(rep.Users) > 1 {
		var us []string
		for _, u := range rep.Users {
			us = append(us, fmt.Sprintf("uid %d: %d", u.UID, u.Processes))
		}
		verb := "touches"
		if rep.DryRun {
			verb = "would touch"
		}
		fmt.Fprintf(w, "note: this %s %s processes of %d users (%s); narrow it with --uid, --exe or --cgroup\n",
			rep.Operation, verb, len(rep.Users), strings.Join(us, ", "))
	}
	fmt.Fprintln(w, summaryLine(rep))
}

// nsPIDText is a process's pid in its container's PID namespace, "-" when
// it is in the host's.
func nsPIDText(nspid int) string {
	if nspid == 0 {
		return "-"
	}
	return strconv.Itoa(nspid)
}

// summaryLine is one line: the operation, the counts that are not zero, the
// scan and the total time.
func summaryLine(rep *fleet.Report) string {
	s := rep.Summary
	var parts []string
	for _, c := range []struct {
		n    int
		name string
	}{{s.Applied, "applied"}, {s.AlreadyApplied, "already applied"}, {s.Reverted, "reverted"}, {s.NotApplied, "not applied"},
		{s.RolledBack, "rolled back"}, {s.Skipped, "skipped"}, {s.Gone, "gone"}, {s.Failed, "failed"},
		{s.WouldApply, "would apply"}, {s.WouldRevert, "would revert"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no process runs the target")
		if rep.Operation == "revert" {
			parts[0] = "no process has the patch"
		}
	}
	return fmt.Sprintf("%s %s: %d process(es): %s (scanned %d processes in %v, total %v)", rep.Operation, rep.PatchID,
		s.Processes, strings.Join(parts, ", "), rep.Scan.Processes, rep.Scan.Elapsed.Round(time.Millisecond),
		rep.Elapsed.Round(time.Millisecond))
}

// runFleetStatus lists every patched process of the host, or of pids.
func runFleetStatus(cmd *cobra.Command, pids []int, f fleet.Filter) error {
	if err := checkPIDs(pids); err != nil {
		return err
	}
	sts, err := fleet.Status(pids, f)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if jsonOut {
		if sts == nil {
			sts = []fleet.ProcessStatus{}
		}
		return writeJSON(w, struct {
			Processes []fleet.ProcessStatus `json:"processes"`
		}{sts})
	}
	if len(sts) == 0 {
		fmt.Fprintln(w, "no patched processes")
		return nil
	}
	for _, s := range sts {
		if s.NSPID != 0 {
			fmt.Fprintf(w, "process %d (%s, pid %d in its PID namespace)\n", s.PID, s.Command, s.NSPID)
		} else {
			fmt.Fprintf(w, "process %d (%s)\n", s.PID, s.Command)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", s.Error)
		}
		for _, p := range s.Patches {
			printPatchStatus(w, "  ", p)
		}
	}
	fmt.Fprintf(w, "%d patched process(es)\n", len(sts))
	return nil
}

// progressBar draws "[#####.....] 12/25" on a terminal, redrawing in place
// with a carriage return. It is used only when stderr is a terminal and the
// operation involves more than minProgress processes.
type progressBar struct {
	w     io.Writer
	shown bool
}

const minProgress = 5

func newProgressBar(w io.Writer) *progressBar {
	w = raw(w)
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	// isatty(3) is tcgetattr succeeding: TCGETS fails with ENOTTY otherwise.
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &progressBar{w: w}
}

func (b *progressBar) update(done, total int) {
	if total <= minProgress {
		return
	}
	const width = 30
	n := done * width / total
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
	b.shown = true
}

// clear erases the bar (ESC [ K: erase to end of line, ECMA-48 EL).
func (b *progressBar) clear() {
	if b.shown {
		fmt.Fprint(b.w, "\r\033[K")
	}
}
