package engine

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// Registration of a patch's unwind tables with the target's unwinder.
//
// C++ exceptions thrown in (or through) patched code are unwound by libgcc's
// unwinder, which finds the FDE of every frame's pc: first among the tables
// registered with __register_frame, then in the loaded modules'
// PT_GNU_EH_FRAME segments (unwind-dw2-fde-dispatch.c). The patch region is
// in no module, so without registration the unwinder finds no FDE for the
// patched function and calls std::terminate: the process dies (a known way
// LibCare kills C++ processes). So after the code is written and before the
// redirects, each object's .eh_frame (terminated by the linker) is passed to
// __register_frame(begin) inside the target; revert calls
// __deregister_frame(begin) before unmapping the region. The registered
// address is recorded in the marker the linker puts in front of .eh_frame
// (linker.EHFrameMagic), where revert finds it.
//
// A process without __register_frame (C programs usually do not load
// libgcc_s.so.1) has no unwinder to tell, and a patch without .eh_frame
// nothing to register: both are skipped.

// frameFuncs are the target's __register_frame and __deregister_frame (0
// when it has none). They are looked up before any thread is stopped: a name
// the process does not define is looked for in every module's symbols, which
// takes milliseconds.
type frameFuncs struct {
	reg, dereg uint64
	// guard refuses threads that may hold a lock the calls take (see
	// callguard.go); nil: none is refused.
	guard *callGuard
}

// safe is the CallVoid predicate of ff's calls.
func (ff frameFuncs) safe() func(proc.Thread) error {
	if ff.guard == nil {
		return nil
	}
	return ff.guard.safe
}

// patchHasEHFrame reports whether one of the patch's objects has unwind
// tables to register.
func patchHasEHFrame(p *patchfile.Patch) bool {
	for _, name := range p.Objects() {
		f, err := elf.NewFile(bytes.NewReader(p.Member(name)))
		if err != nil {
			return true // let the linker say what is wrong
		}
		if s := f.Section(".eh_frame"); s != nil && s.Size > 0 {
			return true
		}
	}
	return false
}

func findFrameFuncs(t *target, patched *module) frameFuncs {
	r := &resolver{t: t, patched: patched}
	find := func(name string) uint64 {
		res, err := r.Resolve(linker.SymbolRef{Name: name, Type: elf.STT_FUNC})
		if err != nil || !res.Found {
			return 0
		}
		return res.Addr
	}
	ff := frameFuncs{reg: find("__register_frame"), dereg: find("__deregister_frame")}
	if ff.reg == 0 || ff.dereg == 0 {
		return frameFuncs{}
	}
	return ff
}

// frameFuncsToFree returns the frameFuncs of process pid if one of the
// regions ([base, base+size) pairs) has unwind tables registered, which
// freeing it requires; otherwise it skips the costly lookup. The regions are
// read without stopping anything: only hotpatch, under the process lock,
// changes them.
func frameFuncsToFree(pid int, regions ...[2]uint64) (frameFuncs, error) {
	for _, r := range regions {
		regs, err := registeredFrames(func(a uint64, b []byte) error { return proc.ReadMem(pid, a, b) }, r[0], r[0]+r[1])
		if err != nil || len(regs) > 0 {
			return targetFrameFuncs(pid)
		}
	}
	return frameFuncs{}, nil
}

// targetFrameFuncs reads process pid to find its frameFuncs.
func targetFrameFuncs(pid int) (frameFuncs, error) {
	t, err := readTargetArch(pid)
	if err != nil {
		return frameFuncs{}, err
	}
	if len(t.mods) == 0 {
		return frameFuncs{}, fmt.Errorf("process %d maps no module", pid)
	}
	ff := findFrameFuncs(t, t.mods[0])
	if ff.reg != 0 {
		ff.guard = newCallGuard(t, nil)
	}
	return ff, nil
}

// registerEHFrames registers the linked objects' .eh_frame sections with the
// target's unwinder now (the process is stopped) and returns a function for
// install to defer: if install fails (*errp set, by this registration or by a
// later step), it deregisters what was registered, before install's own
// clean-up unmaps the region.
func registerEHFrames(pr *proc.Process, pp *prepared, im *image, errp *error) func() {
	var frames []uint64
	for _, o := range im.objs {
		if o.EHFrame != 0 {
			frames = append(frames, o.EHFrame)
		}
	}
	if len(frames) == 0 {
		return func() {}
	}
	reg, dereg := pp.frames.reg, pp.frames.dereg
	if reg == 0 {
		return func() {}
	}
	var done []uint64
	var regErr error
	for _, f := range frames {
		if err := pr.CallVoid(reg, pp.frames.safe(), f); err != nil {
			regErr = fmt.Errorf("__register_frame(%#x) in process %d: %w", f, pr.Pid(), err)
			break
		}
		done = append(done, f)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], f)
		if err := pr.WriteMem(f-linker.EHFrameHeader+uint64(len(linker.EHFrameMagic)), b[:]); err != nil {
			regErr = fmt.Errorf("record unwind table registration at %#x: %w", f, err)
			break
		}
	}
	return func() {
		if regErr != nil && *errp == nil {
			*errp = &stepError{"register unwind tables", regErr}
		}
		if *errp == nil {
			return
		}
		for _, f := range done {
			pr.CallVoid(dereg, pp.frames.safe(), f)
		}
	}
}

// deregisterEHFrames finds the unwind tables a patch registered in the region
// [lo, hi) and deregisters them with ff.dereg. It returns why the region must
// be kept, "" when it may be unmapped.
func deregisterEHFrames(pr *proc.Process, lo, hi uint64, ff frameFuncs) string {
	regs, err := registeredFrames(pr.ReadMem, lo, hi)
	if err != nil {
		return fmt.Sprintf("cannot read the region to find its unwind tables: %v", err)
	}
	if len(regs) == 0 {
		return ""
	}
	dereg := ff.dereg
	if dereg == 0 {
		return "its unwind tables are registered but the process has no __deregister_frame"
	}
	magic := []byte(linker.EHFrameMagic)
	for _, f := range regs {
		if err := pr.CallVoid(dereg, ff.safe(), f); err != nil {
			return fmt.Sprintf("__deregister_frame(%#x) failed: %v", f, err)
		}
		pr.WriteMem(f-linker.EHFrameHeader+uint64(len(magic)), make([]byte, 8))
	}
	return ""
}

// registeredFrames returns the addresses of the unwind tables registered
// from the region [lo, hi): each sits behind a marker holding its own
// address (see registerEHFrames).
func registeredFrames(read func(uint64, []byte) error, lo, hi uint64) ([]uint64, error) {
	const maxScan = 64 << 20
	if hi <= lo || hi-lo > maxScan {
		return nil, nil
	}
	buf := make([]byte, hi-lo)
	if err := read(lo, buf); err != nil {
		return nil, err
	}
	magic := []byte(linker.EHFrameMagic)
	var regs []uint64
	for off := 0; off+linker.EHFrameHeader <= len(buf); off += 8 {
		if !bytes.Equal(buf[off:off+len(magic)], magic) {
			continue
		}
		if f := binary.LittleEndian.Uint64(buf[off+len(magic):]); f == lo+uint64(off)+linker.EHFrameHeader {
			regs = append(regs, f)
		}
	}
	return regs, nil
}
