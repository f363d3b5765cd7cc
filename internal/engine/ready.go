package engine

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
)

// Patch-ready functions (built with -fpatchable-function-entry, see
// docs/patch-ready.md) are redirected through the padding above their entry
// without stopping the threads: internal/arch/amd64/ready.go has the
// instruction-level argument. This file is the engine's side: finding them,
// and the apply and revert that stop at most one thread.

// readyEntries returns the link-time addresses listed in the module's
// __patchable_function_entries section (elfsym.File.PatchableEntries),
// read once per file.
func readyEntries(m *module) map[uint64]bool {
	m.readyOnce.Do(func() {
		m.ready, _ = m.f.PatchableEntries()
		if m.ready == nil {
			m.ready = map[uint64]bool{}
		}
	})
	return m.ready
}

// allReady reports whether every redirect of im goes through patch-ready padding.
func (im *image) allReady() bool {
	if len(im.padded) == 0 {
		return false
	}
	for _, p := range im.padded {
		if p == nil {
			return false
		}
	}
	return true
}

// flipEntry writes the bytes want over an entry one byte at a time in the
// given order (see arch.PaddedRedirect.Order).
func flipEntry(mem *proc.Mem, addr uint64, want []byte, order []int) error {
	for _, i := range order {
		if err := mem.Write(addr+uint64(i), want[i:i+1]); err != nil {
			return err
		}
	}
	return nil
}

func reversed(o []int) []int {
	r := make([]int, len(o))
	for i := range o {
		r[i] = o[len(o)-1-i]
	}
	return r
}

// applyReady applies a patch whose functions are all patch-ready. At most
// one thread is stopped, and only while the system calls that map the region
// run inside it (plus __register_frame for a patch with unwind tables);
// everything else is written while the process runs. A region of the same
// patch left by an earlier patch-ready revert is reused without stopping
// anything. It returns ok=false when the fast path does not apply (the
// caller takes the stop-the-world path).
func applyReady(pp *prepared, p *patchfile.Patch, rep *ApplyReport, recs []PatchStatus, tl *timeline) (ok bool, err error) {
	mem, err := proc.OpenMem(pp.t.pid)
	if err != nil {
		return false, err
	}
	defer mem.Close()
	// A new region, mapped with one thread stopped.
	im, allocPause, err := pp.allocate(p)
	if err != nil {
		return false, err
	}
	rep.Attempts = 1
	tl.mark("map region (one thread stopped)")
	// The entries and the padding must hold the compiler's NOPs now; any
	// other state (another patch's jumps) takes the stop-the-world path,
	// which can rewrite them safely.
	usable := im.allReady()
	for _, pd := range im.padded {
		if !usable {
			break
		}
		cur := make([]byte, len(pd.Entry.Orig))
		pad := make([]byte, len(pd.Pad.Orig))
		if mem.Read(pd.Entry.Addr, cur) != nil || mem.Read(pd.Pad.Addr, pad) != nil ||
			string(cur) != string(pd.Entry.Orig) || string(pad) != string(pd.Pad.Orig) {
			usable = false
		}
	}
	if !usable {
		pp.release(im)
		return false, nil
	}
	base := im.base
	rep.AllocPause = allocPause
	// Redirect with the process running.
	var done []int
	undo := func(e error) error {
		for j := len(done) - 1; j >= 0; j-- {
			pd := im.padded[done[j]]
			flipEntry(mem, pd.Entry.Addr, pd.Entry.Orig, reversed(pd.Order))
		}
		return fmt.Errorf("%w (entries restored; the region stays until `hotpatch recover`)", e)
	}
	for i, pd := range im.padded {
		if err := faultHook("redirect"); err != nil {
			return true, undo(&stepError{"redirect", err})
		}
		if err := mem.Write(pd.Pad.Addr, pd.Pad.Jump); err != nil {
			return true, undo(&stepError{"redirect", err})
		}
		if err := flipEntry(mem, pd.Entry.Addr, pd.Entry.Jump, pd.Order); err != nil {
			return true, undo(&stepError{"redirect", err})
		}
		done = append(done, i)
	}
	if err := mem.Write(base+record.StateOffset, record.StateBytes(record.StateApplied)); err != nil {
		return true, undo(&stepError{"commit", err})
	}
	tl.mark("write padding and entries (nothing stopped)")
	rep.Region, rep.RegionSize = base, pp.size
	for i, pd := range im.padded {
		rep.Functions = append(rep.Functions, FuncReport{Name: pp.funcs[i].spec.Name, Aliases: pp.funcs[i].names(), Entry: pp.funcs[i].fn.Addr,
			At: pd.Entry.Addr, New: im.rec.Redirects[i].New, Kind: pd.Entry.Kind, Path: "patch-ready"})
	}
	rep.Consistency = ConsistencyEntry + " (implied by the patch-ready path)"
	return true, nil
}

// reapplyReady re-applies a patch-ready patch whose region an earlier
// patch-ready revert kept: its padding jumps are still in place, so flipping
// the entries is all there is to do. Nothing is stopped and nothing parsed.
func reapplyReady(pid int, p *patchfile.Patch, rep *ApplyReport, recs []PatchStatus) (bool, error) {
	r, mem, ok, err := reapplicable(pid, p, recs)
	if err != nil || !ok {
		return false, err
	}
	defer mem.Close()
	if err := mem.Write(r.Base+record.StateOffset, record.StateBytes(record.StateApplying)); err != nil {
		return false, err
	}
	for _, rd := range r.Redirects {
		if err := flipEntry(mem, rd.Addr, rd.Jump, rd.Order); err != nil {
			return true, fmt.Errorf("redirect %s: %w (run hotpatch recover)", rd.Func, err)
		}
	}
	if err := mem.Write(r.Base+record.StateOffset, record.StateBytes(record.StateApplied)); err != nil {
		return true, err
	}
	rep.readyFunctions(r)
	rep.Region, rep.RegionSize = r.Base, r.Size
	return true, nil
}

// reapplicable finds the region of p that an earlier patch-ready revert
// kept and that can be flipped back on (readyRecordIntact), and returns it
// with the process's memory open (the caller closes it); ok is false when
// there is none.
func reapplicable(pid int, p *patchfile.Patch, recs []PatchStatus) (_ PatchStatus, _ *proc.Mem, ok bool, err error) {
	digest := patchDigest(p)
	for _, r := range recs {
		if r.ID != p.ID || r.Digest != digest || r.State != record.StateReverted {
			continue
		}
		mem, err := proc.OpenMem(pid)
		if err != nil {
			return PatchStatus{}, nil, false, err
		}
		if readyRecordIntact(mem, r.Record) {
			return r, mem, true, nil
		}
		mem.Close()
	}
	return PatchStatus{}, nil, false, nil
}

// readyFunctions reports the functions of the patch-ready region r as
// redirected by the patch-ready path.
func (rep *ApplyReport) readyFunctions(r PatchStatus) {
	rep.Target = r.Target
	for _, rd := range r.Redirects {
		rep.Functions = append(rep.Functions, FuncReport{Name: rd.Func, Entry: rd.Entry, At: rd.Addr, New: rd.New, Kind: rd.Kind, Path: "patch-ready"})
	}
	rep.Consistency = ConsistencyEntry + " (implied by the patch-ready path)"
}

// readyRecordIntact checks a retained patch-ready region can be re-applied:
// every padding still holds its jump and every entry the compiler's NOPs.
func readyRecordIntact(mem *proc.Mem, r record.Record) bool {
	for _, rd := range r.Redirects {
		if !rd.Padded() {
			return false
		}
		pad := make([]byte, len(rd.PadJump))
		cur := make([]byte, len(rd.Orig))
		if mem.Read(rd.PadAddr, pad) != nil || mem.Read(rd.Addr, cur) != nil ||
			string(pad) != string(rd.PadJump) || string(cur) != string(rd.Orig) {
			return false
		}
	}
	return true
}

// place chooses the region's address from a fresh view of the maps and
// links the patch there, before any thread is stopped: nothing of it needs
// a stop, and the stop it would lengthen is felt by the target. The address
// may be taken by the time the region is mapped; mapPlaced then chooses
// again.
func (pp *prepared) place(p *patchfile.Patch) (*image, error) { return pp.placeIn(p, nil) }

// placeIn is place from maps the caller read (nil: read them now): Apply's
// first placement uses the maps it read under the lock moments before
// (pp.t.maps; one read of /proc/PID/maps less per process of a fleet). That
// view is as good as a fresh one: the process may map something at any time
// after either, and a taken address is caught by MAP_FIXED_NOREPLACE when
// the region is mapped (mapPlaced then places again from fresh maps).
func (pp *prepared) placeIn(p *patchfile.Patch, maps []procmaps.Mapping) (*image, error) {
	if maps == nil {
		var err error
		if maps, err = procmaps.Read(pp.t.pid); err != nil {
			return nil, fmt.Errorf("%w: process %d: read maps: %v", proc.ErrNoProcess, pp.t.pid, err)
		}
	}
	base, err := pp.chooseBase(maps)
	if err != nil {
		return nil, err
	}
	im, err := pp.link(base, p)
	if err != nil {
		return nil, err
	}
	// The descriptor memfd_create will return, predicted now rather than in
	// the stop (a prediction either way: each call is checked again with
	// its real arguments when it is injected, mapseq.go).
	im.fdGuess, im.fdGuessed = lowestFreeFD(pp.t.pid), true
	return im, nil
}

// allocate maps the patch region and fills it, with one thread of the
// target stopped to run the system calls while the others keep running:
// nothing can reach the region before a jump is written. The address is
// chosen and the patch linked before the stop (place).
func (pp *prepared) allocate(p *patchfile.Patch) (im *image, pause time.Duration, err error) {
	if im, err = pp.place(p); err != nil {
		return nil, 0, err
	}
	pause, err = pp.allocateAt(p, im)
	if err != nil {
		return nil, 0, err
	}
	return im, pause, nil
}

// allocateAt is allocate for a placed image. The stop runs inside
// proc.Window: every request of it runs on the ptrace thread directly.
func (pp *prepared) allocateAt(p *patchfile.Patch, im *image) (time.Duration, error) {
	pr, err := proc.Attach(pp.t.pid, pp.opt.attachOptions(true))
	if err != nil {
		return 0, err
	}
	defer pr.Detach()
	mapFailed := false
	err = pr.Window(func() error {
		if err := pr.Stop(); err != nil {
			return fmt.Errorf("stop one thread of %d: %w", pp.t.pid, err)
		}
		if err := pp.mapPlaced(pr, p, im); err != nil {
			mapFailed = true
			return seccompBlocked(err)
		}
		im.notSelfRestoring = pr.NotSelfRestoring()
		if err := pr.Detach(); err != nil {
			return fmt.Errorf("detach: %w", err)
		}
		return nil
	})
	// mapAndFill unmaps on failure; if it could not (the tracer lost the
	// thread it borrowed, e.g. on a timeout under heavy load), try again
	// with a fresh session so that nothing is left in the target.
	if mapFailed && !errors.Is(err, errSimulatedCrash) && regionMapped(pp.t.pid, im.base) {
		pr.Detach()
		pp.release(im)
	}
	if err != nil {
		return 0, err
	}
	return pr.Pause(), nil
}

// mapPlaced maps and fills the placed region im with pr stopped. If the
// address was taken since the maps were read (MAP_FIXED_NOREPLACE fails
// with EEXIST and nothing was mapped, mapseq.go), it chooses another from
// the maps as they are now and links the patch there (im is updated), a
// few times at most.
func (pp *prepared) mapPlaced(pr *proc.Process, p *patchfile.Patch, im *image) error {
	for try := 0; ; try++ {
		err := mapAndFill(pr, pp, im, pp.hdrSize)
		if err == nil || !errors.Is(err, unix.EEXIST) || try == 2 {
			return err
		}
		again, perr := pp.place(p)
		if perr != nil {
			return fmt.Errorf("%w (and choosing another address: %v)", err, perr)
		}
		*im = *again
	}
}

// release unmaps a region allocate mapped that never got a jump (an apply
// that failed or was refused after phase 1), with one thread stopped.
func (pp *prepared) release(im *image) {
	pr, err := proc.Attach(pp.t.pid, pp.opt.attachOptions(true))
	if err != nil {
		return // the record says "applying": status shows it, recover frees it
	}
	defer pr.Detach()
	if pr.Stop() != nil {
		return
	}
	if munmapAllowed(pr, im.base, pp.size) != "" {
		return // the record says "applying": status shows it
	}
	if why := deregisterEHFrames(pr, im.base, im.base+pp.size, pp.frames); why != "" {
		return
	}
	pr.Munmap(im.base, pp.size)
}

// mapAndFill maps the region (with the one stopped thread lending its
// registers) and fills it, with the sequence of system calls the target's
// seccomp filters allow (mapseq.go), then registers its unwind tables. On
// failure it unmaps what it mapped.
func mapAndFill(pr *proc.Process, pp *prepared, im *image, hdrSize uint64) (err error) {
	if err := faultHook("map"); err != nil {
		return &stepError{"map", err}
	}
	seq, err := pp.chooseSeq(pr, im)
	if err != nil {
		return &stepError{"map", err}
	}
	fd, err := pr.MemfdCreate(record.NamePrefix+im.rec.ID, unix.MFD_CLOEXEC)
	if err != nil {
		return &stepError{"map", err}
	}
	if seq == seqProtect {
		if err := pp.mapProtect(pr, fd, im); err != nil {
			var se *stepError
			if errors.As(err, &se) {
				return err
			}
			return &stepError{"map", err}
		}
	} else {
		err := pp.mapFinal(pr, fd, im)
		if cerr := pr.Close(fd); err == nil && cerr != nil {
			pr.Munmap(im.base, pp.size)
			err = &stepError{"map", cerr}
		}
		if err != nil {
			return err
		}
	}
	if err := registerEHFramesNow(pr, pp, im); err != nil {
		if !errors.Is(err, errSimulatedCrash) {
			pr.Munmap(im.base, pp.size)
		}
		return err
	}
	return nil
}

// revertReady reverts a patch whose redirects all go through patch-ready
// padding without stopping any thread: each entry gets its NOPs back (one
// byte at a time, opcode first). The padding jumps stay — a thread that took
// the short jump just before may still execute one — and so does the region:
// a re-apply of the same patch reuses it without stopping anything, and
// `hotpatch recover` frees it after a stack check.
func revertReady(pid int, r PatchStatus, rep *RevertReport) error {
	mem, err := proc.OpenMem(pid)
	if err != nil {
		return err
	}
	defer mem.Close()
	for _, rd := range r.Redirects {
		cur := make([]byte, len(rd.Jump))
		if err := mem.Read(rd.Addr, cur); err != nil {
			return err
		}
		if string(cur) != string(rd.Jump) {
			return fmt.Errorf("%w: %s at %#x holds % x, not this patch's jump % x", ErrMismatch, rd.Func, rd.Addr, cur, rd.Jump)
		}
	}
	if err := mem.Write(r.Base+record.StateOffset, record.StateBytes(record.StateReverting)); err != nil {
		return err
	}
	for i := len(r.Redirects) - 1; i >= 0; i-- {
		rd := r.Redirects[i]
		if err := flipEntry(mem, rd.Addr, rd.Orig, reversed(rd.Order)); err != nil {
			return fmt.Errorf("restore %s: %w (run hotpatch recover)", rd.Func, err)
		}
		rep.Functions = append([]string{rd.Func}, rep.Functions...)
	}
	if err := mem.Write(r.Base+record.StateOffset, record.StateBytes(record.StateReverted)); err != nil {
		return err
	}
	rep.Retained = "kept for a fast re-apply: a patch-ready revert stops no thread, so it cannot prove none is still running the patch (`hotpatch recover` frees it after a stack check)"
	rep.Consistency = ConsistencyEntry + " (implied by the patch-ready path)"
	return nil
}

var _ = arch.ErrNotPatchable

// registerEHFramesNow registers the patch's unwind tables and returns the
// error, deregistering on failure.
func registerEHFramesNow(pr *proc.Process, pp *prepared, im *image) error {
	var err error
	registerEHFrames(pr, pp, im, &err)()
	return err
}

// regionMapped reports whether a patch region starts at base in process pid.
func regionMapped(pid int, base uint64) bool {
	maps, err := procmaps.Read(pid)
	if err != nil {
		return false
	}
	m, ok := procmaps.Find(maps, base)
	return ok && m.Start == base && strings.HasPrefix(m.Path, "/memfd:"+record.NamePrefix)
}
