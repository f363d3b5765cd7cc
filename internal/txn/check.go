package txn

import (
	"bytes"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// CheckRedirects checks that every function p replaces can be redirected in
// the target file target (its bytes): the jump fits (or the function is
// patch-ready) and no branch of the function lands in the bytes it
// overwrites, with the same planner apply uses (arch.Redirector), for a
// destination in rel32 reach (the shortest jump apply may write). It runs at
// build time for a bundle with a coldpatch, so that a bundle is never signed
// whose hot half cannot apply to the target while its cold half would
// install, and before a --cold-only apply. Errors wrap arch.ErrNotPatchable.
func CheckRedirects(target []byte, p *patchfile.Patch) (err error) {
	f, err := elfsym.Open(bytes.NewReader(target))
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer f.Close()
	a, err := arch.ForMachine(f.Machine())
	if err != nil {
		return err
	}
	syms, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("target symbols: %w", err)
	}
	seen := map[uint64]bool{}
	for _, fn := range p.Functions {
		if fn.New || seen[fn.Addr] {
			continue // aliases share one redirect
		}
		seen[fn.Addr] = true
		code, err := f.ReadVirt(fn.Addr, int(fn.Size))
		if err != nil {
			return fmt.Errorf("function %s: %w", fn.Name, err)
		}
		af := arch.Func{Name: fn.Name, Addr: fn.Addr, Code: code, Tail: tail(f, syms, fn.Addr, fn.Addr+fn.Size)}
		dest := fn.Addr + 1<<20
		if pr, ok := a.(arch.PaddedRedirector); ok && fn.Addr >= uint64(pr.PaddingBefore()) {
			if pre, err := f.ReadVirt(fn.Addr-uint64(pr.PaddingBefore()), pr.PaddingBefore()); err == nil {
				if _, ok, _ := pr.PlanPadded(af, pre, dest); ok {
					continue
				}
			}
		}
		if _, err := a.PlanRedirect(af, dest); err != nil {
			return fmt.Errorf("the hot half cannot apply to its target: redirect %s: %w", fn.Name, err)
		}
	}
	return nil
}

// tail is what follows a function up to the next symbol or its section's
// end, at most 32 bytes (the engine's arch.Func.Tail).
func tail(f *elfsym.File, syms *elfsym.Table, start, end uint64) []byte {
	lim, ok := syms.NextAfter(start)
	if !ok || lim <= end {
		lim, ok = f.SectionEnd(start)
	}
	if !ok || lim <= end {
		return nil
	}
	b, _ := f.ReadVirt(end, int(min(lim-end, 32)))
	return b
}
