// Package runpre locates the functions of an object file in a target that
// has no symbols for them (a stripped file without its debug file), by
// their code: Ksplice's run-pre matching.
//
// The candidates for a function of OLD.o are the function boundaries of the
// target's .eh_frame (one FDE per function) whose length is the function's
// size. A candidate matches when
//
//   - OLD.o's bytes equal the candidate's, the bytes under relocations masked
//     (diff.Func.Orig/OrigMask, the run-pre bytes apply checks), and
//   - every relocated field the static linker wrote in the candidate refers
//     to something consistent with the other matches: a call or reference to
//     another function of OLD.o lands on one of that function's candidates
//     (or its symbol when the target has one), and every reference to a data
//     object of OLD.o, from every matched function, gives it one address.
//
// Candidates are eliminated until nothing changes. Only a unique match is
// accepted: a function with no candidate left, or several, is refused by
// name. Data objects are located through the references of the functions
// that matched uniquely, or not at all.
//
// The target file is untrusted input; its bytes are read through
// internal/elfsym (bounded, panics recovered) and Locate recovers panics of
// its own arithmetic.
package runpre

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// Sentinel errors.
var (
	// ErrNoMatch: no function boundary of the target holds the function's code.
	ErrNoMatch = errors.New("no match in the target")
	// ErrAmbiguous: several function boundaries hold the function's code.
	ErrAmbiguous = errors.New("ambiguous match in the target")
)

// Target is what matching reads of the target file.
type Target struct {
	File *elfsym.File
	// Syms are the symbols the target has (its .dynsym, say); a function
	// found there is its own only candidate.
	Syms   *elfsym.Table
	Ranges []unwind.Range // .eh_frame function boundaries
	Arch   arch.Arch
}

// Match is the result of Locate.
type Match struct {
	// Funcs: every function of OLD.o with exactly one candidate left.
	Funcs map[string]uint64
	// Data: data objects of OLD.o located through the references of
	// uniquely matched functions.
	Data map[string]uint64
	// cands keeps what was left of every function, for Func's errors.
	cands map[string][]uint64
}

// Func returns the address of function name, or an error wrapping
// ErrNoMatch or ErrAmbiguous naming it.
func (m *Match) Func(name string) (uint64, error) {
	if a, ok := m.Funcs[name]; ok {
		return a, nil
	}
	c := m.cands[name]
	if len(c) == 0 {
		return 0, fmt.Errorf("%w: no function of the target has the code OLD.o has for %s (at an .eh_frame function boundary, relocated fields masked): was the target built from this source with the same compiler and flags?", ErrNoMatch, name)
	}
	var at []string
	for _, a := range c {
		at = append(at, fmt.Sprintf("%#x", a))
	}
	return 0, fmt.Errorf("%w: %s: %d functions of the target have its code (at %s) and nothing tells them apart: give hotpatch the target's debug file (build --debug-file)",
		ErrAmbiguous, name, len(c), strings.Join(at, ", "))
}

// Locate matches every function of OLD.o (funcs, from diff.Functions)
// against the target.
func Locate(tg Target, funcs []diff.Func) (m *Match, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("run-pre matching: %w: panic: %v", elfsym.ErrMalformed, r)
		}
	}()
	l := &locator{tg: tg, fn: map[string]*diff.Func{}, cands: map[string][]cand{}}
	for i := range funcs {
		l.fn[funcs[i].Name] = &funcs[i]
	}
	for i := range funcs {
		l.cands[funcs[i].Name] = l.byteCandidates(&funcs[i])
	}
	for l.eliminate() {
	}
	m = &Match{Funcs: map[string]uint64{}, Data: map[string]uint64{}, cands: map[string][]uint64{}}
	for name, cs := range l.cands {
		for _, c := range cs {
			m.cands[name] = append(m.cands[name], c.addr)
		}
		sort.Slice(m.cands[name], func(i, j int) bool { return m.cands[name][i] < m.cands[name][j] })
		if len(cs) == 1 {
			m.Funcs[name] = cs[0].addr
		}
	}
	data, err := l.fixedData()
	if err != nil {
		return nil, err
	}
	m.Data = data
	return m, nil
}

type cand struct {
	addr uint64
	code []byte // the target's bytes there
}

type locator struct {
	tg    Target
	fn    map[string]*diff.Func
	cands map[string][]cand
}

// byteCandidates returns the function boundaries of the target whose bytes
// match f's under its mask; the target's own symbol when it has one.
func (l *locator) byteCandidates(f *diff.Func) []cand {
	if f.Size == 0 || len(f.Orig) != int(f.Size) {
		return nil
	}
	if a, ok := l.symbol(f); ok {
		if code, err := l.tg.File.ReadVirt(a, int(f.Size)); err == nil && masked(code, f.Orig, f.OrigMask) {
			return []cand{{a, code}}
		}
		return nil
	}
	var out []cand
	for _, r := range l.tg.Ranges {
		if r.End-r.Begin != f.Size {
			continue
		}
		code, err := l.tg.File.ReadVirt(r.Begin, int(f.Size))
		if err != nil || !masked(code, f.Orig, f.OrigMask) {
			continue
		}
		out = append(out, cand{r.Begin, code})
	}
	return out
}

// symbol returns the target's symbol for function f: a defined function of
// the same name, global, or static of no other file.
func (l *locator) symbol(f *diff.Func) (uint64, bool) {
	if l.tg.Syms == nil {
		return 0, false
	}
	var addr uint64
	n := 0
	for _, s := range l.tg.Syms.Lookup(f.Name) {
		if s.IsFunc() && s.Defined() && s.Value != 0 && s.Size == f.Size && s.Value != addr {
			addr, n = s.Value, n+1
		}
	}
	return addr, n == 1
}

func masked(code, orig, mask []byte) bool {
	for i := range orig {
		if (len(mask) == 0 || mask[i] != 0) && code[i] != orig[i] {
			return false
		}
	}
	return true
}

// refTarget returns what the relocated field of ref refers to in candidate
// c, ok false when the field cannot tell (GOT and TLS forms) or when it
// goes through the PLT (a call to a global through its PLT entry says
// nothing about where the function is).
func (l *locator) refTarget(c cand, ref diff.Ref) (uint64, bool) {
	if ref.Off >= uint64(len(c.code)) {
		return 0, false
	}
	s, ok := l.tg.Arch.RelocTarget(ref.Type, c.code[ref.Off:], c.addr+ref.Off, ref.Addend)
	if !ok || l.tg.File.InPLT(s) {
		return 0, false
	}
	return s, true
}

// eliminate drops the candidates whose references contradict the others'
// and reports whether it dropped any. Both directions count: a caller's
// candidate must call one of its callee's candidates, and a callee can
// only be where one of its caller's candidates calls (the caller is at one
// of them, since the target is OLD.o's build).
func (l *locator) eliminate() bool {
	fixed, _ := l.fixedData()
	changed := false
	for name, cs := range l.cands {
		if len(cs) == 0 {
			continue
		}
		for _, ref := range l.fn[name].Refs {
			if !ref.TargetFunc || ref.Undefined || l.fn[ref.Target] == nil || ref.Target == name {
				continue
			}
			implied := map[uint64]bool{}
			for _, c := range cs {
				s, ok := l.refTarget(c, ref)
				if !ok {
					implied = nil
					break
				}
				implied[s] = true
			}
			if implied == nil {
				continue
			}
			var keep []cand
			for _, o := range l.cands[ref.Target] {
				if implied[o.addr] {
					keep = append(keep, o)
				}
			}
			if len(keep) != len(l.cands[ref.Target]) {
				l.cands[ref.Target], changed = keep, true
			}
		}
	}
	for name, cs := range l.cands {
		f := l.fn[name]
		var keep []cand
		for _, c := range cs {
			if l.consistent(f, c, fixed) {
				keep = append(keep, c)
			}
		}
		if len(keep) != len(cs) {
			l.cands[name], changed = keep, true
		}
	}
	return changed
}

// consistent checks candidate c of f against the other functions'
// candidates and the data addresses fixed so far.
func (l *locator) consistent(f *diff.Func, c cand, fixed map[string]uint64) bool {
	for _, ref := range f.Refs {
		if ref.Target == "" || ref.Undefined {
			continue
		}
		s, ok := l.refTarget(c, ref)
		if !ok {
			continue
		}
		if ref.TargetFunc {
			if _, known := l.fn[ref.Target]; !known {
				continue
			}
			found := false
			for _, o := range l.cands[ref.Target] {
				if o.addr == s {
					found = true
					break
				}
			}
			if !found {
				return false
			}
			continue
		}
		if a, ok := fixed[ref.Target]; ok && a != s {
			return false
		}
	}
	return true
}

// fixedData returns the addresses of OLD.o's data objects implied by the
// functions with a unique candidate; two matched functions that disagree
// are an error (the target is not OLD.o's build).
func (l *locator) fixedData() (map[string]uint64, error) {
	out := map[string]uint64{}
	from := map[string]string{}
	names := make([]string, 0, len(l.cands))
	for name := range l.cands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cs := l.cands[name]
		if len(cs) != 1 {
			continue
		}
		for _, ref := range l.fn[name].Refs {
			if ref.Target == "" || ref.Undefined || ref.TargetFunc {
				continue
			}
			s, ok := l.refTarget(cs[0], ref)
			if !ok {
				continue
			}
			if a, seen := out[ref.Target]; seen && a != s {
				return nil, fmt.Errorf("%w: %s and %s refer to %s at different addresses (%#x, %#x): the target is not OLD.o's build",
					ErrNoMatch, from[ref.Target], name, ref.Target, a, s)
			}
			out[ref.Target], from[ref.Target] = s, name
		}
	}
	return out, nil
}
