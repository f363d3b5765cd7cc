package engine

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
	"github.com/hotpatch/hotpatch/internal/statecache"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

const pageSize = 4096

// Options control apply and revert.
type Options struct {
	// Timeout bounds how long apply or revert keeps retrying while it is not
	// safe to write (a thread sits inside bytes being replaced). Default 10s.
	Timeout time.Duration
	// Realtime raises the tracer to SCHED_FIFO during the stop window.
	Realtime bool
	// Consistency is ConsistencyStack (default) or ConsistencyEntry.
	Consistency string
	// NoReady disables the patch-ready path: patch-ready functions are then
	// redirected with every thread stopped, like the others.
	NoReady bool
	// DryRun does everything but change the process: read, link, run-pre,
	// the seccomp check of the mapping calls and the consistency check in a
	// real stop window, then resumes it as it was (dryrun.go).
	DryRun bool

	// meter collects the stall over every ptrace session of one operation
	// (set by Apply, Revert, Recover and StatusFree; see withMeter).
	meter *proc.Meter
}

// withMeter gives the operation its own stall meter.
func (o Options) withMeter() Options {
	o.meter = new(proc.Meter)
	return o
}

// attachOptions are the proc options of a session of this operation.
func (o Options) attachOptions(oneThread bool) proc.Options {
	return proc.Options{Timeout: 2 * time.Second, Realtime: o.Realtime && !oneThread, OneThread: oneThread, Meter: o.meter,
		CacheDir: cacheDir()}
}

// cacheDir is where what can be reused between runs is kept: the user's
// state directory (internal/statecache), or none without one.
func cacheDir() statecache.Dir {
	if LockDir != "" {
		return statecache.Dir(LockDir)
	}
	d, err := StateDir()
	if err != nil {
		return ""
	}
	return statecache.Dir(d)
}

func (o Options) consistency() (string, error) {
	switch o.Consistency {
	case "", ConsistencyStack:
		return ConsistencyStack, nil
	case ConsistencyEntry:
		return ConsistencyEntry, nil
	}
	return "", fmt.Errorf("unknown consistency model %q (want %q or %q)", o.Consistency, ConsistencyStack, ConsistencyEntry)
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 10 * time.Second
	}
	return o.Timeout
}

// FuncReport describes one redirected function.
type FuncReport struct {
	Name string `json:"name"`
	// Aliases are the function's other names the patch replaces with it
	// (symbols at the same address: one redirect serves them all).
	Aliases []string `json:"aliases,omitempty"`
	Entry   uint64   `json:"entry"`
	At      uint64   `json:"at"`
	New     uint64   `json:"new"`
	Kind    string   `json:"kind"`
	// Path is "patch-ready" (redirected through the padding above the entry
	// without stopping the threads) or "stop" (all threads stopped).
	Path string `json:"path"`
}

// ApplyReport is the result of Apply.
type ApplyReport struct {
	PatchID        string       `json:"patch_id"`
	PID            int          `json:"pid"`
	Target         string       `json:"target"`
	BuildID        string       `json:"build_id"`
	Region         uint64       `json:"region"`
	RegionSize     uint64       `json:"region_size"`
	Functions      []FuncReport `json:"functions"`
	AlreadyApplied bool         `json:"already_applied,omitempty"`
	Consistency    string       `json:"consistency"`
	Attempts       int          `json:"attempts"`
	// Pause is the longest time every thread was stopped (first stop to
	// last resume), the stop that freed earlier kept regions (kept.go)
	// included; AllocPause how long the one thread that mapped the region was.
	Pause      time.Duration `json:"pause_ns"`
	AllocPause time.Duration `json:"alloc_pause_ns"`
	// Stall is what the target felt: the longest time any one thread was
	// stopped, over every stop of the operation (the one thread that mapped
	// the region, the stop of every thread, freeing kept regions).
	Stall time.Duration `json:"stall_ns"`
	// NotSelfRestoring, if set, says why the region's injected calls were
	// not self-restoring (docs/safety.md "If hotpatch is killed").
	NotSelfRestoring string        `json:"not_self_restoring,omitempty"`
	Elapsed          time.Duration `json:"elapsed_ns"`
	// Phases splits Elapsed into its steps.
	Phases []Phase `json:"phases,omitempty"`
	// Moved counts the threads found inside the bytes being overwritten and
	// moved out of them in the stop window (entrymove.go).
	Moved int `json:"threads_moved,omitempty"`
	// DryRun: nothing was changed; the report says what the apply would do
	// (Region is then 0: no region was mapped).
	DryRun bool `json:"dry_run,omitempty"`
}

// prepared is everything about one apply that can be computed before any
// thread of the target is stopped.
type prepared struct {
	frames  frameFuncs // of the target's unwinder, see ehframe.go
	t       *target
	mod     *module
	arch    arch.Arch
	objs    []*linker.Prepared
	funcs   []plannedFunc
	hdrSize uint64
	size    uint64
	reach   []uint64         // addresses the region must be within ±2 GiB of
	prefer  []uint64         // addresses it should be within ±2 GiB of (see linker.Prepared.Prefer)
	low     uint64           // region must end below this (0: no limit)
	unw     *unwind.Unwinder // set for the stack consistency model
	opt     Options          // of the operation (its stall meter)
}

type plannedFunc struct {
	spec patchfile.Function
	obj  int
	fn   arch.Func
	// pre holds the bytes above the entry of a patch-ready function (listed
	// in __patchable_function_entries); nil otherwise.
	pre []byte
	// aliases are the manifest's other functions at this address: they
	// share this one's redirect (link checks they share its destination).
	aliases []alias
	others  []string // see names
}

// names returns the function's other names: the manifest's entries merged
// into it and the target's other function symbols at its address (which
// the one redirect serves too).
func (f plannedFunc) names() []string { return f.others }

// prepare reads the target and links the patch against it. With stacks, it
// also parses the call frame information for the stack check (pp.unw), on a
// second goroutine: on a fresh process the two are the bulk of an apply.
func prepare(pid int, maps []procmaps.Mapping, p *patchfile.Patch, stacks bool) (*prepared, error) {
	t, err := readTargetFrom(pid, maps)
	if err != nil {
		return nil, err
	}
	mod, err := t.findBuildID(p.Target.BuildID)
	if err != nil {
		return nil, err
	}
	a, err := arch.ForMachine(mod.f.Machine())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mod.Path, err)
	}
	t.arch = a
	pp := &prepared{t: t, mod: mod, arch: a}
	if stacks {
		unw := t.unwinderAsync()
		defer func() { pp.unw = <-unw }()
	}
	objIndex := map[string]int{}
	res := &resolver{t: t, patched: mod, located: p.Symbols}
	for i, name := range p.Objects() {
		o, err := parsedObject(p, name)
		if err != nil {
			return nil, fmt.Errorf("object %s: %w", name, err)
		}
		if o.Arch().Machine() != a.Machine() {
			return nil, fmt.Errorf("object %s is for %s, target %s is %s", name, o.Arch().Name(), mod.Path, a.Name())
		}
		lp, err := linker.Prepare(o, res)
		if err != nil {
			return nil, fmt.Errorf("link %s against process %d: %w", name, pid, err)
		}
		objIndex[name] = i
		pp.objs = append(pp.objs, lp)
		pp.reach = append(pp.reach, lp.Reach()...)
		pp.prefer = append(pp.prefer, lp.Prefer()...)
		if lim, ok := lp.NeedsLow(); ok && (pp.low == 0 || lim < pp.low) {
			pp.low = lim
		}
	}
	if err := checkFunctions(mod, a, p.Functions); err != nil {
		return nil, err
	}
	fns, aliases := dedupeAliases(p.Functions)
	for k, f := range fns {
		if f.New {
			continue
		}
		code, err := mod.f.ReadVirt(f.Addr, int(f.Size))
		if err != nil {
			return nil, fmt.Errorf("function %s: read %s: %w", f.Name, mod.Path, err)
		}
		entry := f.Addr + mod.Bias
		pf := plannedFunc{spec: f, obj: objIndex[f.Object], fn: arch.Func{Name: f.Name, Addr: entry, Code: code}}
		readSurroundings(mod, f.Addr, f.Size, &pf.fn)
		for _, al := range aliases[k] {
			pf.aliases = append(pf.aliases, alias{al.Name, objIndex[al.Object]})
		}
		pf.others = aliasNames(mod, f)
		if pr, ok := a.(arch.PaddedRedirector); ok && readyEntries(mod)[f.Addr-uint64(pr.PaddingBefore())] {
			pf.pre, _ = mod.f.ReadVirt(f.Addr-uint64(pr.PaddingBefore()), pr.PaddingBefore())
		}
		pp.funcs = append(pp.funcs, pf)
	}
	pp.frames = findFrameFuncs(t, mod)
	names := make([]string, len(pp.funcs))
	for i, f := range pp.funcs {
		names[i] = f.spec.Name
	}
	if pp.hdrSize, err = headerSize(p, mod.Path, names); err != nil {
		return nil, err
	}
	pp.size = pp.hdrSize
	for _, o := range pp.objs {
		pp.size += roundUp(o.Size(), pageSize)
	}
	pp.size += pp.trampSize()
	return pp, nil
}

// Bounds of what readSurroundings reads around a function.
const (
	maxTail = 160     // reach of a jmp rel8 from the entry (127) plus a 14-byte slot
	maxGap  = 4096    // padding above a function larger than this is not used
	maxPrev = 1 << 20 // nor the padding after a function larger than this
)

// readSurroundings fills fn.Tail (the bytes after the function of link-time
// address addr and size size, up to the next symbol or the end of its
// section) and fn.Gap/fn.Prev (the bytes between the function below it and
// addr, and that function's code), from the module's file.
func readSurroundings(mod *module, addr, size uint64, fn *arch.Func) {
	end := addr + size
	if next, ok := mod.syms.NextAfter(addr); ok && next > end {
		fn.Tail, _ = mod.f.ReadVirt(end, int(min(next-end, maxTail)))
	} else if secEnd, ok := mod.f.SectionEnd(addr); ok && secEnd > end {
		fn.Tail, _ = mod.f.ReadVirt(end, int(min(secEnd-end, maxTail)))
	}
	ps, ok := mod.syms.PrevFunc(addr)
	if !ok || ps.Size > maxPrev || addr-(ps.Value+ps.Size) > maxGap {
		return
	}
	if ps.Size == 0 { // unknown size: the bytes up to addr, split by decoding
		fn.Prev, _ = mod.f.ReadVirt(ps.Value, int(addr-ps.Value))
		return
	}
	prev, err := mod.f.ReadVirt(ps.Value, int(ps.Size))
	if err != nil {
		return
	}
	gap := []byte{}
	if n := addr - (ps.Value + ps.Size); n > 0 {
		if gap, err = mod.f.ReadVirt(ps.Value+ps.Size, int(n)); err != nil {
			return
		}
	}
	fn.Prev, fn.Gap = prev, gap
	fn.Near = nearGaps(mod, ps, addr, end)
}

// nearGaps returns the gaps between two sized functions, other than those
// right around the function [addr, end), that lie within reach of a jmp
// rel8 at its entry: below it, from ps (the function just below) down, and
// above it, from the function after it up.
func nearGaps(mod *module, ps elfsym.Symbol, addr, end uint64) []arch.Gap {
	const reach = 140 // 128 back from the end of the entry jump, plus a slot
	var gaps []arch.Gap
	add := func(lower, upper elfsym.Symbol) {
		lo := lower.Value + lower.Size
		if upper.Value <= lo || upper.Size == 0 || lower.Size == 0 || upper.Size > maxPrev || lower.Size > maxPrev {
			return
		}
		b, e1 := mod.f.ReadVirt(lo, int(upper.Value-lo))
		p, e2 := mod.f.ReadVirt(lower.Value, int(lower.Size))
		n, e3 := mod.f.ReadVirt(upper.Value, int(upper.Size))
		if e1 == nil && e2 == nil && e3 == nil {
			gaps = append(gaps, arch.Gap{Addr: lo + mod.Bias, Bytes: b, Prev: p, Next: n})
		}
	}
	for upper, k := ps, 0; k < 4 && upper.Value+reach > addr; k++ {
		lower, ok := mod.syms.PrevFunc(upper.Value)
		if !ok {
			break
		}
		add(lower, upper)
		upper = lower
	}
	lowerEnd := end
	for k := 0; k < 4 && lowerEnd < addr+reach; k++ {
		next, ok := mod.syms.NextAfter(lowerEnd - 1)
		if !ok {
			break
		}
		lower, ok1 := mod.syms.Containing(next)
		if !ok1 || lower.Value != next {
			break
		}
		after, ok2 := mod.syms.NextAfter(lower.Value + lower.Size - 1)
		if !ok2 {
			break
		}
		upper, ok3 := mod.syms.Containing(after)
		if !ok3 || upper.Value != after {
			break
		}
		add(lower, upper)
		lowerEnd = lower.Value + lower.Size
	}
	return gaps
}

func roundUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

// window returns the range [lo, hi) of region start addresses that keep every
// address in reach within a signed 32-bit displacement of the whole region.
func window(reach []uint64, size, low uint64) (lo, hi uint64) {
	lo, hi = 0x10000, uint64(0x7fff_ffff_f000)
	const span = 1<<31 - pageSize
	for _, a := range reach {
		if a+span > size && a+span-size < hi {
			hi = a + span - size
		}
		if a > span && a-span > lo {
			lo = a - span
		}
	}
	if low != 0 && low-size < hi {
		hi = low - size
	}
	return lo, hi
}

// withPreferred adds to the required addresses rs those of prefer, nearest
// to near first, that keep the placement window non-empty.
func withPreferred(rs, prefer []uint64, near, size, low uint64) []uint64 {
	if lo, hi := window(rs, size, low); lo >= hi {
		return rs
	}
	dist := func(a uint64) uint64 { return max(a, near) - min(a, near) }
	order := append([]uint64(nil), prefer...)
	sort.Slice(order, func(i, j int) bool { return dist(order[i]) < dist(order[j]) })
	out := append([]uint64(nil), rs...)
	for _, a := range order {
		if lo, hi := window(append(out, a), size, low); lo < hi {
			out = append(out, a)
		}
	}
	return out
}

// image is the linked patch at one base address.
type image struct {
	base    uint64
	objs    []*linker.Image
	plans   []arch.Redirect
	padded  []*arch.PaddedRedirect // per plan: non-nil for a patch-ready function
	tramps  []*arch.Relocated      // per plan: the relocated copy of the overwritten bytes, or nil (entrymove.go)
	stacked []bool                 // per plan: replaces another patch's jump (set in the stop window)
	moved   int                    // threads moved out of the overwritten bytes
	textLo  uint64
	textHi  uint64
	rec     *record.Record
	hdr     []byte
	segData []segment
	// notSelfRestoring: why the last injected call that filled the region
	// was not self-restoring ("" if it was).
	notSelfRestoring string
	// fdGuess is the descriptor memfd_create is expected to return, read
	// before the stop (fdGuessed); see chooseSeq.
	fdGuess   uint64
	fdGuessed bool
	// dry: linked for a base that was never mapped (a dry run); applyOnce
	// checks and writes nothing.
	dry bool
	// atLock: the maps and records Apply read under the lock, for the first
	// applyOnce to use instead of reading them again (nil: read them); see
	// there.
	atLock *lockView
}

// lockView is what Apply read of the process under the lock.
type lockView struct {
	maps []procmaps.Mapping
	recs []PatchStatus
}

type segment struct {
	addr uint64
	data []byte
	prot int
}

func (pp *prepared) link(base uint64, p *patchfile.Patch) (*image, error) {
	im := &image{base: base, textLo: math.MaxUint64}
	off := base + pp.hdrSize
	for i, o := range pp.objs {
		li, err := o.Link(off)
		if err != nil {
			return nil, fmt.Errorf("link object %d at %#x: %w", i, off, err)
		}
		im.objs = append(im.objs, li)
		for _, s := range li.Segments {
			a := li.Base + s.Offset
			im.segData = append(im.segData, segment{addr: a, data: s.Data, prot: s.Prot})
			if s.Prot&unix.PROT_EXEC != 0 {
				im.textLo = min(im.textLo, a)
				im.textHi = max(im.textHi, a+uint64(len(s.Data)))
			}
		}
		off += roundUp(o.Size(), pageSize)
	}
	if im.textLo == math.MaxUint64 {
		im.textLo, im.textHi = base, base
	}
	im.rec = &record.Record{ID: p.ID, Digest: patchDigest(p), Description: p.Description, Target: pp.mod.Path, BuildID: p.Target.BuildID,
		AppliedAt: time.Now().Unix(), Base: base, Size: pp.size, TextStart: im.textLo, TextEnd: im.textHi}
	for _, f := range pp.funcs {
		dest, ok := im.objs[f.obj].Symbols[f.spec.Name]
		if !ok {
			return nil, fmt.Errorf("patch object does not define %s", f.spec.Name)
		}
		for _, al := range f.aliases {
			if d, ok := im.objs[al.obj].Symbols[al.name]; !ok || d != dest {
				return nil, fmt.Errorf("%w: %s and %s are one function of %s (both at %#x), but the patch gives them different code: one address takes one redirect",
					ErrBadAddress, f.spec.Name, al.name, pp.mod.Path, f.spec.Addr)
			}
		}
		if f.pre != nil {
			pr := pp.arch.(arch.PaddedRedirector)
			if pd, ok, _ := pr.PlanPadded(f.fn, f.pre, dest); ok {
				im.plans = append(im.plans, pd.Entry)
				im.padded = append(im.padded, &pd)
				im.rec.Redirects = append(im.rec.Redirects, record.Redirect{Func: f.spec.Name, Addr: pd.Entry.Addr, Entry: f.fn.Addr,
					New: dest, Orig: pd.Entry.Orig, Jump: pd.Entry.Jump, Kind: pd.Entry.Kind,
					PadAddr: pd.Pad.Addr, PadOrig: pd.Pad.Orig, PadJump: pd.Pad.Jump, Order: pd.Order})
				continue
			}
		}
		r, err := pp.arch.PlanRedirect(f.fn, dest)
		if err != nil {
			return nil, fmt.Errorf("redirect %s: %w", f.spec.Name, err)
		}
		im.plans = append(im.plans, r)
		im.padded = append(im.padded, nil)
		rd := record.Redirect{Func: f.spec.Name, Addr: r.Addr, Entry: f.fn.Addr, New: dest, Orig: r.Orig, Jump: r.Jump, Kind: r.Kind}
		if r.Slot != nil {
			rd.SlotAddr, rd.SlotOrig, rd.SlotJump = r.Slot.Addr, r.Slot.Orig, r.Slot.Jump
		}
		im.rec.Redirects = append(im.rec.Redirects, rd)
	}
	if err := checkWrites(im.rec.Redirects); err != nil {
		return nil, err
	}
	pp.placeTrampolines(im, off)
	hdr, err := record.Encode(im.rec, record.StateApplying)
	if err != nil {
		return nil, err
	}
	if uint64(len(hdr)) > pp.hdrSize {
		return nil, fmt.Errorf("internal error: header of %d bytes exceeds its %d reserved", len(hdr), pp.hdrSize)
	}
	im.hdr = hdr
	return im, nil
}

// chooseBase picks the region's address from a fresh view of the maps.
func (pp *prepared) chooseBase(maps []procmaps.Mapping) (uint64, error) {
	reach := append([]uint64(nil), pp.reach...)
	var entries []uint64
	for _, f := range pp.funcs {
		entries = append(entries, f.fn.Addr)
	}
	near := pp.mod.Start
	if len(entries) > 0 {
		near = entries[0]
	}
	// Prefer a place from which every redirect is a 5-byte jmp rel32; if the
	// functions are spread too far apart, satisfy only the linker's needs and
	// let far functions take the absolute jump. Within that, come within
	// reach of as many preferred data addresses as possible, nearest first
	// (the others are reached through the patch's GOT: slower, as correct).
	var tries [][]uint64
	for _, rs := range [][]uint64{append(append([]uint64(nil), reach...), entries...), reach} {
		tries = append(tries, withPreferred(rs, pp.prefer, near, pp.size, pp.low), rs)
	}
	for _, rs := range tries {
		lo, hi := window(rs, pp.size, pp.low)
		if lo >= hi {
			continue
		}
		if a, ok := procmaps.FindHole(maps, pp.size, lo, hi+pp.size, near); ok {
			return a, nil
		}
	}
	return 0, fmt.Errorf("no free address range of %d bytes within reach (±2 GiB) of the patched code and the data it uses", pp.size)
}

// Apply applies patch p to process pid.
func Apply(pid int, p *patchfile.Patch, opt Options) (_ *ApplyReport, err error) {
	defer recoverPanic(&err, "apply")
	found := false
	defer diedDuring(&err, &found, pid)
	start := time.Now()
	cons, err := opt.consistency()
	if err != nil {
		return nil, err
	}
	rep := &ApplyReport{PatchID: p.ID, PID: pid, BuildID: p.Target.BuildID, Consistency: cons, DryRun: opt.DryRun}
	opt = opt.withMeter()
	defer func() { rep.Stall = opt.meter.Stall() }()
	tl := newTimeline(start)
	unlock, err := lockProcess(pid, opt.timeout())
	if err != nil {
		return nil, err
	}
	defer unlock()
	tl.mark("lock")
	maps, err := procmaps.Read(pid)
	if err != nil {
		return nil, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
	}
	found = true
	recs, _ := readRecords(pid, maps)
	if err := checkNoTransition(pid, recs); err != nil {
		return nil, err
	}
	maps, recs, keptPause, err := freeKeptFirst(pid, maps, recs, opt)
	if err != nil {
		return nil, err
	}
	if done, err := applyAgain(pid, p, rep, recs, opt, tl, keptPause, start); done || err != nil {
		if err != nil {
			return nil, err
		}
		return rep, nil
	}
	tl.mark("read records")
	pp, err := prepareApply(pid, maps, p, opt, cons, recs, tl)
	if err != nil {
		return nil, err
	}
	rep.Target = pp.mod.Path
	if opt.DryRun {
		return dryApply(pp, p, rep, opt, tl, start)
	}
	// The region's address and the linked code, before any stop, from the
	// maps read under the lock, unless the patch-ready path mapped (and
	// released) a region since.
	atLock := &lockView{maps: pp.t.maps, recs: recs}
	if pp.allReady() && !opt.NoReady {
		// Patch-ready functions only: redirect without stopping the threads.
		ok, err := applyReady(pp, p, rep, recs, tl)
		if err != nil {
			return nil, err
		}
		if ok {
			return rep.finish(tl, keptPause, start), nil
		}
		atLock = nil
	}
	if err := applyStopped(pid, pp, p, atLock, rep, tl); err != nil {
		return nil, err
	}
	return rep.finish(tl, keptPause, start), nil
}

// applyAgain handles a patch the process has a record of: applied already
// (reported as it is), or patch-ready and reverted earlier (flipped back on
// in place, or in a dry run, reported as what would be). It says whether
// that was all there was to do.
func applyAgain(pid int, p *patchfile.Patch, rep *ApplyReport, recs []PatchStatus, opt Options, tl *timeline, keptPause time.Duration, start time.Time) (done bool, err error) {
	if reportApplied(rep, p, recs) {
		rep.Pause = max(rep.Pause, keptPause)
		rep.Elapsed = time.Since(start)
		return true, nil
	}
	if !opt.NoReady && opt.DryRun && wouldReapplyReady(pid, p, rep, recs) {
		rep.Elapsed = time.Since(start)
		return true, nil
	}
	if !opt.NoReady && !opt.DryRun {
		// A patch-ready patch reverted earlier: flip it back on in place.
		ok, err := reapplyReady(pid, p, rep, recs)
		if err != nil {
			return false, err
		}
		if ok {
			tl.mark("flip entries (nothing stopped)")
			rep.finish(tl, keptPause, start)
			return true, nil
		}
	}
	return false, nil
}

// finish completes a report of an apply that did its work: its phases, the
// longest pause and the time it took.
func (rep *ApplyReport) finish(tl *timeline, pause time.Duration, start time.Time) *ApplyReport {
	rep.Phases = tl.phases
	rep.Pause = max(rep.Pause, pause)
	rep.Elapsed = time.Since(start)
	return rep
}

// checkNoTransition refuses a process in which a patch is half applied or
// half reverted: recover must run first.
func checkNoTransition(pid int, recs []PatchStatus) error {
	for _, r := range recs {
		if r.InTransition() {
			return fmt.Errorf("%w: %w: patch %s is %s in process %d (a hotpatch command was interrupted): run `hotpatch recover --pid %d` first",
				ErrBusy, ErrInTransition, r.ID, r.StateName, pid, pid)
		}
	}
	return nil
}

// freeKeptFirst frees the regions earlier reverts kept while threads were in
// them that no thread can reach any more (kept.go), and reads the maps and
// records again if it freed one. A dry run leaves them.
func freeKeptFirst(pid int, maps []procmaps.Mapping, recs []PatchStatus, opt Options) (_ []procmaps.Mapping, _ []PatchStatus, pause time.Duration, err error) {
	if opt.DryRun {
		return maps, recs, 0, nil
	}
	_, freed, pause, _ := freeKept(pid, recs, opt)
	if !freed {
		return maps, recs, pause, nil
	}
	if maps, err = procmaps.Read(pid); err != nil {
		return nil, nil, 0, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
	}
	recs, _ = readRecords(pid, maps)
	return maps, recs, pause, nil
}

// reportApplied fills rep from the record of patch p if it is applied
// already, and says whether it is.
func reportApplied(rep *ApplyReport, p *patchfile.Patch, recs []PatchStatus) bool {
	for _, r := range recs {
		if r.ID == p.ID && r.State == record.StateApplied {
			rep.AlreadyApplied = true
			rep.Target = r.Target
			rep.Region, rep.RegionSize = r.Base, r.Size
			for _, rd := range r.Redirects {
				rep.Functions = append(rep.Functions, FuncReport{Name: rd.Func, Entry: rd.Entry, At: rd.Addr, New: rd.New, Kind: rd.Kind})
			}
			return true
		}
	}
	return false
}

// prepareApply does what needs no stop: symbols, linking, unwind tables and
// the run-pre check.
func prepareApply(pid int, maps []procmaps.Mapping, p *patchfile.Patch, opt Options, cons string, recs []PatchStatus, tl *timeline) (*prepared, error) {
	pp, err := prepare(pid, maps, p, cons == ConsistencyStack)
	if err != nil {
		return nil, err
	}
	pp.opt = opt
	if pp.frames.reg != 0 && patchHasEHFrame(p) {
		// Before any stop: which threads may run __register_frame.
		pp.frames.guard = newCallGuard(pp.t, pp.unw)
	}
	tl.mark("symbols, link, unwind tables")
	if err := runPre(pp, recs); err != nil {
		return nil, err
	}
	return pp, nil
}

// allReady reports whether every function of the patch is patch-ready
// (f.pre), so that it can be redirected without stopping the threads.
func (pp *prepared) allReady() bool {
	for _, f := range pp.funcs {
		if f.pre == nil {
			return false
		}
	}
	return len(pp.funcs) > 0
}

// applyStopped applies the patch with the threads stopped: it places and
// links the region (from atLock's maps, or fresh maps if nil), maps it (phase 1,
// one thread stopped, unless oneStop) and writes the jumps with every thread
// stopped (phase 2). On an error the region it mapped is released.
func applyStopped(pid int, pp *prepared, p *patchfile.Patch, atLock *lockView, rep *ApplyReport, tl *timeline) (err error) {
	opt := pp.opt
	var placeMaps []procmaps.Mapping
	if atLock != nil {
		placeMaps = atLock.maps
	}
	im, err := pp.placeIn(p, placeMaps)
	if err != nil {
		return err
	}
	tl.mark("place and link")
	installed, mapped := false, false
	defer func() {
		if mapped && !installed && !errors.Is(err, errSimulatedCrash) {
			pp.release(im)
		}
	}()
	oneStop := pp.oneStop(im)
	if oneStop {
		// Nothing of ours was mapped since the lock-time read (the region
		// is mapped in applyOnce's stop): its view serves the first stop.
		im.atLock = atLock
	} else {
		// Phase 1: map the region and write the code with one thread
		// stopped (its registers run the system calls); the others keep
		// running. Nothing can reach the region until the jumps are written.
		allocPause, err := pp.allocateAt(p, im)
		if err != nil {
			return err
		}
		mapped = true
		rep.AllocPause = allocPause
		rep.NotSelfRestoring = im.notSelfRestoring
		tl.mark("map region (one thread stopped)")
	}
	// Phase 2: stop every thread for the checks and the jumps only; with
	// oneStop, the region is mapped in that same stop (applyOnce).
	pr, err := proc.Attach(pid, opt.attachOptions(false))
	if err != nil {
		return err
	}
	defer pr.Detach()
	tl.mark("attach")

	mapFirst := func() error {
		if mapped || !oneStop {
			return nil
		}
		err := pp.mapPlaced(pr, p, im)
		if err != nil {
			mapped = !errors.Is(err, errSimulatedCrash) && regionMapped(pid, im.base) // released after the detach
			return seccompBlocked(err)
		}
		mapped = true
		rep.NotSelfRestoring = pr.NotSelfRestoring()
		return nil
	}
	if err := applyInStops(pr, pp, p, im, mapFirst, &installed, &rep.Attempts); err != nil {
		return err
	}
	if oneStop {
		tl.mark(phaseOneStop)
	} else {
		tl.mark("stop, check, write jumps, detach")
	}
	rep.stopped(pr, pp, im)
	return nil
}

// applyInStops runs applyOnce's stops until the patch is installed
// (*installed, set before the detach that ends the last stop), retrying
// while threads are busy. Each attempt's stop runs inside proc.Window: its
// requests run on the ptrace thread directly, without a hand-over (two
// thread wake-ups) each.
func applyInStops(pr *proc.Process, pp *prepared, p *patchfile.Patch, im *image, mapFirst func() error, installed *bool, attempts *int) error {
	var detachErr error
	attempt := func() (busy *busyError, err error) {
		err = pr.Window(func() error {
			var err error
			if busy, err = applyOnce(pr, pp, im, mapFirst); busy != nil || err != nil {
				return err
			}
			// The jumps are written and the record says applied: the patch
			// is installed, whatever the detach says. Releasing the region
			// on a detach error would unmap code the entries jump to (and
			// that threads moved into a relocated copy are running): every
			// caller would then die. The detach ends the window, in it.
			*installed = true
			if detachErr = faultHook("detach"); detachErr == nil {
				detachErr = pr.Detach()
			}
			return nil
		})
		return busy, err
	}
	if err := retry(pp.opt.timeout(), attempts, attempt); err != nil {
		return err
	}
	if detachErr != nil {
		return fmt.Errorf("patch %s applied to process %d, but detach: %w", p.ID, pr.Pid(), detachErr)
	}
	return nil
}

// stopped reports an apply installed with the threads stopped.
func (rep *ApplyReport) stopped(pr *proc.Process, pp *prepared, im *image) {
	rep.Pause = pr.Pause()
	rep.Moved = im.moved
	rep.Region, rep.RegionSize = im.base, pp.size
	for i, r := range im.plans {
		rep.Functions = append(rep.Functions, FuncReport{Name: pp.funcs[i].spec.Name, Aliases: pp.funcs[i].names(), Entry: pp.funcs[i].fn.Addr,
			At: r.Addr, New: im.rec.Redirects[i].New, Kind: r.Kind, Path: "stop"})
	}
}

// phaseOneStop names the one stop of an apply that maps the region in the
// same window as the checks (oneStop).
const phaseOneStop = "stop, check, write jumps, detach (the region mapped in the same stop)"

// oneStop reports whether the apply maps the region in the same stop as the
// checks and the jumps, instead of in a one-thread stop of its own before.
//
// Why two stops at all: mapping the region takes a few injected system
// calls (mapseq.go), tens to hundreds of microseconds, and in a
// multi-threaded process only the one thread lending its registers needs to
// stand still for them: the others keep running, and every thread is
// stopped only for the checks and the jumps. In a process of one thread
// that thread is stopped in both, and between the two it pays a second
// interrupt, a second wake-up and a second detach: one stop is shorter for
// it than two, and nothing else runs to be spared. So a process with one
// thread (counted now) takes one stop. A thread created meanwhile is
// stopped too (the all-threads stop adopts it) and waits for the mapping:
// longer for it, never less safe, since nothing depends on the count but
// the choice.
//
// Not when the region's unwind tables must be registered with an injected
// function call (__register_frame): that call may need the thread to run
// until it holds no lock (the callguard lets the one-thread session's
// thread run and checks again, callguard.go), which an all-threads stop
// cannot do without resuming everything.
func (pp *prepared) oneStop(im *image) bool {
	if pp.frames.reg != 0 {
		for _, o := range im.objs {
			if o.EHFrame != 0 {
				return false
			}
		}
	}
	return oneThread(pp.t.pid)
}

// oneThread reports whether process pid has one thread now.
func oneThread(pid int) bool {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(ents) == 1
}

// busyError says why it is not safe to write right now; Apply retries.
type busyError struct{ msg string }

func (b *busyError) Error() string { return b.msg }

// retry runs attempt (one stop window) until it succeeds, fails, or is
// still busy when timeout has passed; between attempts the process runs for
// a back-off of 1 ms doubling to 100 ms, so that threads can leave the code
// being replaced.
func retry(timeout time.Duration, attempts *int, attempt func() (*busyError, error)) error {
	deadline := time.Now().Add(timeout)
	backoff := time.Millisecond
	for {
		*attempts++
		busy, err := attempt()
		if err != nil {
			return err
		}
		if busy == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %v after %d attempts in %v; try again when the process is less busy, raise --timeout, or use --consistency=entry for a function that never returns",
				ErrUnsafe, busy, *attempts, timeout)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// applyOnce stops the process and either installs the patch completely, or
// returns with the process resumed and nothing changed (busy: retry later;
// err: give up). On return without error and without busy, the process is
// still stopped with the patch installed. mapFirst runs right after the
// stop, before the checks (it maps the region in this window when the
// apply takes one stop; see oneStop).
func applyOnce(pr *proc.Process, pp *prepared, im *image, mapFirst func() error) (*busyError, error) {
	// Read before the stop, to keep it short: the records change only under
	// the lock we hold, and the maps serve to find thread stacks (a stack
	// missing from this view makes activeOnStacks read them again). The
	// first attempt of a one-stop apply takes the view Apply read under the
	// lock (im.atLock) instead: the records are the same for the reason
	// above, and nothing of ours was mapped since; the process may have
	// mapped or unmapped something in between, as it may between a read
	// here and the stop, so this view is no less current for what it is
	// used for: only to bound each stack copy (a stack pointer outside it
	// makes stackMapping read the maps again, with the process stopped),
	// while the region's address is checked by MAP_FIXED_NOREPLACE in the
	// stop (mapPlaced). Later attempts read both again.
	var maps []procmaps.Mapping
	var applied []PatchStatus
	if v := im.atLock; v != nil {
		im.atLock = nil
		maps, applied = v.maps, v.recs
	} else {
		var err error
		if maps, err = procmaps.Read(pr.Pid()); err != nil {
			return nil, fmt.Errorf("read maps: %w", err)
		}
		if applied, err = readRecords(pr.Pid(), maps); err != nil {
			return nil, err
		}
	}
	if err := pr.Stop(); err != nil {
		return nil, fmt.Errorf("stop process %d: %w", pr.Pid(), err)
	}
	// Every refusal and error of the stop resumes the process.
	if busy, err := applyInStop(pr, pp, im, mapFirst, maps, applied); busy != nil || err != nil {
		pr.Resume()
		return busy, err
	}
	if im.dry {
		// Every check passed in this stop window: a dry run stops here
		// and resumes the process as it was (nothing was written).
		return nil, pr.Resume()
	}
	return nil, nil
}

// applyInStop is applyOnce's stop, the process stopped: it maps the region
// if that is to happen in this stop (mapFirst), checks the entries and the
// threads, moves the threads out of the bytes being overwritten and writes
// the jumps (not in a dry run). The caller resumes the process on a busy
// refusal or an error.
func applyInStop(pr *proc.Process, pp *prepared, im *image, mapFirst func() error, maps []procmaps.Mapping, applied []PatchStatus) (*busyError, error) {
	if err := mapFirst(); err != nil {
		return nil, err
	}
	if err := checkEntries(pr, pp, im, applied); err != nil {
		return nil, err
	}
	if err := checkSlots(pr, pp, im, applied); err != nil {
		return nil, err
	}
	if hdr, err := record.Encode(im.rec, record.StateApplying); err == nil && !im.dry && uint64(len(hdr)) <= pp.hdrSize && string(hdr) != string(im.hdr) {
		// Stacked: the record must say which jump each redirect replaced.
		im.hdr = hdr
		if err := pr.WriteMem(im.base, hdr); err != nil {
			return nil, fmt.Errorf("update record: %w", err)
		}
	}
	// Threads inside the bytes about to be overwritten are moved out of
	// them (entrymove.go); the checks below see them where they will resume.
	moves, busy, err := pp.planMoves(im, pr.Threads(), im.stacked, pp.unw == nil)
	if busy != nil || err != nil {
		return busy, err
	}
	if busy := checkThreads(pr, pp, im, pr.Threads(), moves, maps); busy != nil {
		return busy, nil
	}
	if im.dry {
		im.moved = len(moves)
		return nil, nil
	}
	if err := setMoves(pr, moves); err != nil {
		return nil, err
	}
	if err := writeJumps(pr, pp, im); err != nil {
		if !errors.Is(err, errSimulatedCrash) { // a crash leaves the moved threads where they are
			unsetMoves(pr, moves)
		}
		return nil, err
	}
	im.moved = len(moves)
	return nil, nil
}

// checkEntries checks, with the process stopped, that the bytes about to be
// replaced are the ones the patch was planned against, or the jump of an
// applied patch of ours: then this patch stacks on top of it (im.stacked),
// and reverting it restores that jump.
func checkEntries(pr *proc.Process, pp *prepared, im *image, applied []PatchStatus) error {
	if im.stacked == nil {
		im.stacked = make([]bool, len(im.plans))
	}
	for i := range im.plans {
		r := &im.plans[i]
		cur := make([]byte, len(r.Orig))
		if err := pr.ReadMem(r.Addr, cur); err != nil {
			return fmt.Errorf("read %s at %#x: %w", pp.funcs[i].spec.Name, r.Addr, err)
		}
		if string(cur) == string(r.Orig) {
			continue
		}
		below := jumpOwner(applied, r.Addr, cur)
		if below == nil {
			return fmt.Errorf("%w: %s at %#x holds % x, expected % x (changed by another tool?)",
				ErrMismatch, pp.funcs[i].spec.Name, r.Addr, cur, r.Orig)
		}
		if im.padded[i] != nil {
			// Both patches would share the entry's short jump and differ
			// only in the padding: reverting the newer would leave the
			// padding pointing at its code, reverting the older would
			// switch both off. Refuse rather than stack.
			return fmt.Errorf("%w: %s is patch-ready and already redirected by patch %s; revert %s first (patch-ready functions do not stack)",
				ErrStacked, pp.funcs[i].spec.Name, below.ID, below.ID)
		}
		r.Orig = cur
		im.rec.Redirects[i].Orig = cur
		im.stacked[i] = true
	}
	return nil
}

// checkThreads is the consistency check of the stopped threads, where they
// will resume (moves applied): none may be inside a replaced function (the stack check,
// with unwind tables) or use the words being overwritten.
func checkThreads(pr *proc.Process, pp *prepared, im *image, stopped []proc.Thread, moves []move, maps []procmaps.Mapping) *busyError {
	sc := newStackCopies(pr, stopped, &maps) // of the registers as stopped: see stackCopies.from
	threads := movedThreads(stopped, moves)
	if pp.unw != nil {
		var spans []span
		for i, f := range pp.funcs {
			// A thread at the patch point (or on the endbr64 before it) has
			// not started the function: it will take the jump.
			spans = append(spans, span{f.fn.Addr, f.fn.Addr + uint64(len(f.fn.Code)), f.spec.Name, im.plans[i].Addr})
		}
		if busy := pp.t.activeOnStacks(pr, pp.unw, threads, sc, spans); busy != nil {
			return busy
		}
	}
	return pp.wordsInUse(im, threads, sc, pp.unw == nil)
}

// checkSlots checks, with the process stopped, that each slot still holds
// the padding it was planned over, or the slot jump of an applied patch of
// ours (then this patch stacks on it: only the slot changes, and reverting
// restores that jump).
func checkSlots(pr *proc.Process, pp *prepared, im *image, applied []PatchStatus) error {
	for i := range im.plans {
		sl := im.plans[i].Slot
		if sl == nil {
			continue
		}
		cur := make([]byte, len(sl.Orig))
		if err := pr.ReadMem(sl.Addr, cur); err != nil {
			return fmt.Errorf("read the slot of %s at %#x: %w", pp.funcs[i].spec.Name, sl.Addr, err)
		}
		if string(cur) == string(sl.Orig) {
			continue
		}
		if slotOwner(applied, sl.Addr, cur) != nil && im.stacked[i] {
			sl.Orig = cur
			im.rec.Redirects[i].SlotOrig = cur
			continue
		}
		return fmt.Errorf("%w: the padding at %#x chosen for the long jump of %s holds % x, expected % x (another patch's slot, or changed by another tool?)",
			ErrMismatch, sl.Addr, pp.funcs[i].spec.Name, cur, sl.Orig)
	}
	return nil
}

// stepError names the step of an apply that failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return fmt.Sprintf("%s: %v", e.step, e.err) }
func (e *stepError) Unwrap() error { return e.err }

// writeJumps writes the redirects and commits the record, with every
// thread stopped. On failure it restores every jump already written and
// returns the error; the caller resumes and releases the region.
//
// Order of writes (what a crash of hotpatch at any point leaves):
//  1. (phase 1) region mapped, record in state "applying", code written: the
//     process runs unchanged, status shows an "applying" region;
//  2. the jumps are written one by one: the window where a crash leaves some
//     functions redirected and others not is these few writes;
//  3. state "applied".
func writeJumps(pr *proc.Process, pp *prepared, im *image) (err error) {
	var written []int
	defer func() {
		// A panic between two writes must not leave some functions
		// redirected into a region the caller then frees: roll back as
		// for an error, then let the panic go on to Apply's recoverPanic.
		if r := recover(); r != nil {
			defer panic(r)
			err = fmt.Errorf("panic: %v", r)
		}
		if err == nil || errors.Is(err, errSimulatedCrash) {
			return
		}
		for i := len(written) - 1; i >= 0; i-- {
			r := im.plans[written[i]]
			if werr := pr.WriteMem(r.Addr, r.Orig); werr != nil {
				err = fmt.Errorf("%w (and restoring %s failed: %v)", err, pp.funcs[written[i]].spec.Name, werr)
			}
			if r.Slot != nil {
				pr.WriteMem(r.Slot.Addr, r.Slot.Orig)
			}
			if pd := im.padded[written[i]]; pd != nil {
				pr.WriteMem(pd.Pad.Addr, pd.Pad.Orig)
			}
		}
	}()
	fail := func(step string, e error) error { return &stepError{step, e} }
	for i, r := range im.plans {
		if err := faultHook("redirect"); err != nil {
			return fail("redirect", err)
		}
		if pd := im.padded[i]; pd != nil {
			// The long jump first: the padding is never executed until the
			// entry leads there.
			if err := pr.WriteMem(pd.Pad.Addr, pd.Pad.Jump); err != nil {
				return fail("redirect", fmt.Errorf("%s padding at %#x: %w", pp.funcs[i].spec.Name, pd.Pad.Addr, err))
			}
		}
		if r.Slot != nil {
			// The slot first: it is dead until the entry jump leads there.
			if err := pr.WriteMem(r.Slot.Addr, r.Slot.Jump); err != nil {
				return fail("redirect", fmt.Errorf("%s slot at %#x: %w", pp.funcs[i].spec.Name, r.Slot.Addr, err))
			}
		}
		err := faultHook("entry")
		if err == nil {
			if err = pr.WriteMem(r.Addr, r.Jump); err != nil {
				err = fmt.Errorf("%s at %#x: %w", pp.funcs[i].spec.Name, r.Addr, err)
			}
		}
		if err != nil {
			if r.Slot != nil && !errors.Is(err, errSimulatedCrash) {
				pr.WriteMem(r.Slot.Addr, r.Slot.Orig)
			}
			return fail("redirect", err)
		}
		written = append(written, i)
	}
	if err := faultHook("commit"); err != nil {
		return fail("commit", err)
	}
	if err := pr.WriteMem(im.base+record.StateOffset, record.StateBytes(record.StateApplied)); err != nil {
		return fail("commit", err)
	}
	return nil
}

// BuildIDString formats a build-id.
func BuildIDString(b []byte) string { return hex.EncodeToString(b) }

var _ = elf.EM_X86_64

// errSimulatedCrash, returned by a test's faultHook, makes install stop where
// it is without rolling back, as if hotpatch had been killed at that point.
var errSimulatedCrash = errors.New("simulated crash")

// patchDigest identifies a patch's contents (its id can be chosen by hand).
func patchDigest(p *patchfile.Patch) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", p.ID, p.Target.BuildID)
	for _, m := range p.Members {
		fmt.Fprintf(h, "%s %s %s\n", m.Name, m.Kind, m.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
