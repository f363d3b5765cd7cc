package build

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// TargetInfo is what hotpatch can see of a file it may patch (hotpatch
// inspect-target).
type TargetInfo struct {
	Path    string `json:"path"`
	Machine string `json:"machine"`
	// BuildID is empty when the file has none (patches for it cannot be
	// matched to processes: build refuses it).
	BuildID string `json:"build_id"`
	// Symbols is the file the symbols come from and SymbolsSource how it
	// was found (internal/debuginfo); Debuglink the file's .gnu_debuglink
	// name, if any.
	Symbols       string `json:"symbols_from"`
	SymbolsSource string `json:"symbols_source"`
	Debuglink     string `json:"debuglink,omitempty"`
	// Named: functions known by name (distinct addresses). FDEOnly:
	// .eh_frame function boundaries no symbol starts — functions only
	// run-pre matching (diff mode) can locate.
	Named   int `json:"functions_named"`
	FDEOnly int `json:"functions_fde_only"`
	// PatchReady: the functions built with -fpatchable-function-entry
	// whose padding hotpatch can use (docs/patch-ready.md), by name, or
	// "function at ADDR" for those known only by FDE.
	PatchReady []string `json:"patch_ready"`
}

// ErrNotELF: the file is not an ELF file hotpatch can read.
var ErrNotELF = errors.New("not an ELF file hotpatch can read")

// InspectTarget reports what hotpatch can see of the file at path, its
// symbols looked for as build does (dbg; the zero value searches the host).
func InspectTarget(path string, dbg debuginfo.Options) (*TargetInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	ef, err := elfsym.Open(fh)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrNotELF, path, err)
	}
	defer ef.Close()
	info := &TargetInfo{Path: path, Machine: ef.Machine().String(), PatchReady: []string{}}
	a, aerr := arch.ForMachine(ef.Machine())
	if aerr == nil {
		info.Machine = a.Name()
	}
	if id, err := ef.BuildID(); err == nil {
		info.BuildID = hex.EncodeToString(id)
	}
	if name, _, ok := debuginfo.Debuglink(ef); ok {
		info.Debuglink = name
	}
	syms, fd, err := debuginfo.Symbols(path, ef, dbg)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	info.Symbols, info.SymbolsSource = fd.Path, string(fd.Source)
	named := map[uint64]string{}
	for _, s := range syms.Functions() {
		if s.Value != 0 {
			if _, ok := named[s.Value]; !ok {
				named[s.Value] = s.Name
			}
		}
	}
	info.Named = len(named)
	ranges, err := unwind.FunctionRanges(ef.ELF())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	starts := map[uint64]string{}
	for a, n := range named {
		starts[a] = n
	}
	for _, r := range ranges {
		// The PLT's FDEs describe stubs, not functions.
		if _, ok := named[r.Begin]; !ok && !ef.InPLT(r.Begin) {
			info.FDEOnly++
			starts[r.Begin] = fmt.Sprintf("function at %#x", r.Begin)
		}
	}
	info.PatchReady = patchReady(ef, a, starts)
	return info, nil
}

// patchReady names the functions (by start address) whose patch area
// __patchable_function_entries lists.
func patchReady(ef *elfsym.File, a arch.Arch, starts map[uint64]string) []string {
	out := []string{}
	pr, ok := a.(arch.PaddedRedirector)
	if !ok {
		return out
	}
	entries, err := ef.PatchableEntries()
	if err != nil || len(entries) == 0 {
		return out
	}
	for addr, name := range starts {
		if entries[addr-uint64(pr.PaddingBefore())] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
