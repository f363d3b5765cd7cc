package amd64

import (
	"bytes"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Analyze implements arch.FuncAnalyzer: it decodes code, the bytes of a
// function loaded at addr, and reports its direct calls (destination and
// call-site address), its direct jumps and conditional branches that leave
// [addr, addr+len(code)) (tail calls), and how many indirect calls it makes.
func (Arch) Analyze(code []byte, addr uint64) (arch.FuncInfo, error) {
	insns, err := Decode(code, addr)
	if err != nil {
		return arch.FuncInfo{}, fmt.Errorf("analyze function at %#x: %w", addr, err)
	}
	end := addr + uint64(len(code))
	var fi arch.FuncInfo
	for _, in := range insns {
		switch in.Kind {
		case Call:
			fi.Calls = append(fi.Calls, in.Target)
			fi.CallSites = append(fi.CallSites, in.PC)
		case CallIndirect:
			fi.IndirectCalls++
		case Jmp, Jcc:
			if in.Target < addr || in.Target >= end {
				fi.TailJumps = append(fi.TailJumps, in.Target)
			}
		}
	}
	return fi, nil
}

// FindCallsTo implements the package-level FindCallsTo on Arch.
func (Arch) FindCallsTo(code []byte, addr, target uint64) ([]uint64, error) {
	return FindCallsTo(code, addr, target)
}

// FindCallsTo returns the addresses of the direct call instructions in code
// (loaded at addr) whose destination is target. The code is decoded properly,
// so an e8 byte inside another instruction is never mistaken for a call.
func FindCallsTo(code []byte, addr, target uint64) ([]uint64, error) {
	if bytes.IndexByte(code, 0xe8) < 0 { // no "call rel32" opcode byte anywhere
		return nil, nil
	}
	insns, err := Decode(code, addr)
	if err != nil {
		return nil, fmt.Errorf("find calls to %#x in code at %#x: %w", target, addr, err)
	}
	var sites []uint64
	for _, in := range insns {
		if in.Kind == Call && in.Target == target {
			sites = append(sites, in.PC)
		}
	}
	return sites, nil
}
