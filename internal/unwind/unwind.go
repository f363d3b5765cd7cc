// Package unwind walks the stacks of a stopped process's threads using the
// DWARF call frame information (.eh_frame, .debug_frame) of the objects it
// maps, so that the engine can tell whether a function about to be replaced
// is active on any thread (the stack consistency check).
//
// The call frame information is parsed before the process is stopped (and
// cached per file); each stack is copied in one process_vm_readv and walked
// from that copy, so the work done while the process is stopped is a few
// table lookups per frame.
//
// Where a frame has no call frame information (JIT code, a stripped object,
// the patch's own code) the walk stops and reports itself incomplete; the
// caller then falls back to a conservative scan of the remaining stack words.
package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/go-delve/delve/pkg/dwarf/frame"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Table is the call frame information of one ELF file, at link-time addresses.
type Table struct {
	fdes frame.FrameDescriptionEntries // parsed whole: .debug_frame, .eh_frame without a usable .eh_frame_hdr
	hdr  *hdrIndex                     // .eh_frame, parsed per FDE on demand (hdr.go)
}

// fdeForPC returns the FDE covering pc (a link-time address).
func (t *Table) fdeForPC(pc uint64) (*frame.FrameDescriptionEntry, error) {
	if t.hdr != nil {
		if fde, err := t.hdr.lookup(pc); err == nil || len(t.fdes) == 0 {
			return fde, err
		}
	}
	return t.fdes.FDEForPC(pc)
}

// Parse reads .eh_frame and .debug_frame of f. A file with neither gives an
// empty table. Hostile input cannot panic the caller.
func Parse(f *elf.File) (t *Table, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("parse call frame information: %v", r)
		}
	}()
	t = &Table{}
	ptr := 8
	if f.Class == elf.ELFCLASS32 {
		ptr = 4
	}
	if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("read .eh_frame: %w", err)
		}
		if h := f.Section(".eh_frame_hdr"); h != nil && h.Type != elf.SHT_NOBITS {
			// A table that does not decode is ignored: .eh_frame is then
			// parsed whole, as without one.
			if hdr, err := h.Data(); err == nil {
				if x, err := parseHdr(hdr, h.Addr, data, s.Addr, ptr, f.ByteOrder); err == nil {
					t.hdr = x
				}
			}
		}
		if t.hdr == nil {
			fdes, err := frame.Parse(data, f.ByteOrder, 0, ptr, s.Addr)
			if err != nil {
				return nil, fmt.Errorf("parse .eh_frame: %w", err)
			}
			t.fdes = t.fdes.Append(fdes)
		}
	}
	if s := f.Section(".debug_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		if data, err := s.Data(); err == nil {
			if fdes, err := frame.Parse(data, f.ByteOrder, 0, ptr, 0); err == nil {
				t.fdes = t.fdes.Append(fdes)
			}
		}
	}
	return t, nil
}

// ParseEHFrame parses raw .eh_frame contents mapped at addr (for tests and
// fuzzing). Hostile input cannot panic the caller.
func ParseEHFrame(data []byte, addr uint64) (t *Table, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("parse .eh_frame: %v", r)
		}
	}()
	fdes, err := frame.Parse(data, binary.LittleEndian, 0, 8, addr)
	if err != nil {
		return nil, fmt.Errorf("parse .eh_frame: %w", err)
	}
	return &Table{fdes: fdes}, nil
}

// Len is the number of frame description entries.
func (t *Table) Len() int {
	if t.hdr != nil {
		return len(t.fdes) + len(t.hdr.locs)
	}
	return len(t.fdes)
}

// Module is one mapped object: run-time range, load bias and its table.
type Module struct {
	Start, End uint64
	Bias       uint64
	Table      *Table
	// Name is used in backtraces.
	Name string
}

// Memory reads target memory.
type Memory func(addr uint64, b []byte) error

// Stack is a copy of one thread's stack from its stack pointer up, taken in
// one read; reads outside it go to the process.
type Stack struct {
	Lo   uint64
	Data []byte
	Mem  Memory
}

// Word reads the 8-byte little-endian word at addr.
func (s *Stack) Word(addr uint64) (uint64, error) {
	if addr >= s.Lo && addr+8 <= s.Lo+uint64(len(s.Data)) {
		return binary.LittleEndian.Uint64(s.Data[addr-s.Lo:]), nil
	}
	if s.Mem == nil {
		return 0, errors.New("outside the stack copy")
	}
	var b [8]byte
	if err := s.Mem(addr, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// Unwinder walks stacks through a set of modules. It is not safe for
// concurrent use.
type Unwinder struct {
	Mods []Module
	Regs arch.UnwindRegs

	// rules memoises the frame rules per pc: threads parked at the same call
	// sites (a pool of workers blocked in one futex) share them, so a stop of
	// many threads decodes each site's CFI once.
	rules map[uint64]*frame.FrameContext
}

// Result of a walk.
type Result struct {
	// PCs holds the current pc then each return address.
	PCs []uint64
	// Complete is true when the walk reached the outermost frame; false when
	// it stopped at a frame it could not unwind, at SP (the stack pointer of
	// that frame; words above it were not accounted for).
	Complete bool
	SP       uint64
	Reason   string
}

const maxFrames = 512

func (u *Unwinder) module(pc uint64) *Module {
	for i := range u.Mods {
		if pc >= u.Mods[i].Start && pc < u.Mods[i].End {
			return &u.Mods[i]
		}
	}
	return nil
}

// Unwind walks from the given registers.
func (u *Unwinder) Unwind(pc, sp, fp uint64, st *Stack) Result {
	res := Result{PCs: []uint64{pc}}
	regs := map[uint64]uint64{u.Regs.SP: sp, u.Regs.FP: fp}
	for depth := 0; depth < maxFrames; depth++ {
		lookup := pc
		if depth > 0 {
			lookup -= u.Regs.CallLen
		}
		m := u.module(lookup)
		if m == nil || m.Table == nil {
			res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("no object maps %#x", lookup)
			return res
		}
		ctx, ok := u.rules[lookup]
		if !ok {
			fde, err := m.Table.fdeForPC(lookup - m.Bias)
			if err != nil {
				res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("no CFI for %#x in %s", lookup, m.Name)
				return res
			}
			ctx, err = establish(fde, lookup-m.Bias)
			if err != nil {
				res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("CFI of %s at %#x: %v", m.Name, lookup, err)
				return res
			}
			if u.rules == nil {
				u.rules = map[uint64]*frame.FrameContext{}
			}
			u.rules[lookup] = ctx
		}
		if ctx.CFA.Rule != frame.RuleCFA {
			res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("CFA expression at %#x in %s", lookup, m.Name)
			return res
		}
		base, ok := regs[ctx.CFA.Reg]
		if !ok {
			res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("CFA based on untracked register %d at %#x", ctx.CFA.Reg, lookup)
			return res
		}
		cfa := uint64(int64(base) + ctx.CFA.Offset)
		ra, ok := ctx.Regs[u.Regs.RA]
		if !ok || ra.Rule == frame.RuleUndefined {
			res.Complete = true // the outermost frame (_start, clone's child)
			return res
		}
		next := map[uint64]uint64{u.Regs.SP: cfa}
		for _, r := range []uint64{u.Regs.RA, u.Regs.FP} {
			rule, ok := ctx.Regs[r]
			switch {
			case !ok || rule.Rule == frame.RuleSameVal:
				if v, ok := regs[r]; ok {
					next[r] = v
				}
			case rule.Rule == frame.RuleOffset:
				w, err := st.Word(uint64(int64(cfa) + rule.Offset))
				if err != nil {
					res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("read stack at %#x: %v", uint64(int64(cfa)+rule.Offset), err)
					return res
				}
				next[r] = w
			case rule.Rule == frame.RuleValOffset:
				next[r] = uint64(int64(cfa) + rule.Offset)
			case rule.Rule == frame.RuleRegister:
				if v, ok := regs[rule.Reg]; ok {
					next[r] = v
				}
			default:
				if r == u.Regs.RA {
					res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("return address rule %d at %#x", rule.Rule, lookup)
					return res
				}
			}
		}
		newPC, ok := next[u.Regs.RA]
		if !ok || newPC == 0 {
			res.Complete = true
			return res
		}
		if cfa <= regs[u.Regs.SP] && depth > 0 {
			res.SP, res.Reason = regs[u.Regs.SP], fmt.Sprintf("stack does not grow up at %#x", lookup)
			return res
		}
		delete(next, u.Regs.RA)
		regs = next
		pc = newPC
		res.PCs = append(res.PCs, pc)
	}
	res.SP, res.Reason = regs[u.Regs.SP], "too many frames"
	return res
}

func establish(fde *frame.FrameDescriptionEntry, pc uint64) (ctx *frame.FrameContext, err error) {
	defer func() {
		if r := recover(); r != nil {
			ctx, err = nil, fmt.Errorf("%v", r)
		}
	}()
	return fde.EstablishFrame(pc)
}

// Cache keeps parsed tables by a caller-chosen file key (device:inode).
type Cache struct{ m sync.Map }

type cached struct {
	once sync.Once
	t    *Table
	err  error
}

// Get returns the table for key, parsing with parse once.
func (c *Cache) Get(key string, parse func() (*Table, error)) (*Table, error) {
	v, _ := c.m.LoadOrStore(key, &cached{})
	e := v.(*cached)
	e.once.Do(func() { e.t, e.err = parse() })
	return e.t, e.err
}
