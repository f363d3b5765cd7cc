package amd64

import (
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// PlanRedirect implements arch.Redirector.
//
// The jump is written at the function entry or, when the function starts with
// endbr64, right after it: the endbr64 stays so that indirect calls (through
// function pointers, the PLT or a vtable) still land on a valid landing pad
// when the process runs with CET indirect branch tracking. It is "jmp rel32"
// when dest is within ±2 GiB of the patch point, "jmp *0(%rip); .quad dest"
// (14 bytes, no register clobbered) otherwise.
//
// The bytes the jump replaces (the window) must be safe to overwrite while
// every thread is stopped outside of them:
//   - no direct branch of the function (jmp, jcc, loop, call, xbegin) may
//     target an address strictly inside the window: after the write it would
//     land in the middle of the jump;
//   - no call may end strictly inside the window: a thread returning from it
//     would resume in the middle of the jump;
//   - the window may run past the end of the function only over alignment
//     padding (nop forms, int3, zero bytes) that nothing executes.
//
// Cutting an instruction in two at the window end is fine: the bytes that
// replace it are written together, and only entry points matter. Threads
// stopped with a pc inside the window are the engine's business
// (arch.Redirect.Contains). Branches from other code into the window, e.g. from
// a GCC "fn.cold" part, are not visible here; callers should Analyze such
// parts and check their targets with Contains.
func (Arch) PlanRedirect(fn arch.Func, dest uint64) (arch.Redirect, error) {
	return planRedirect(fn, dest, false)
}

// planRedirect is PlanRedirect; forceAbs makes it use the 14-byte absolute
// jump even when rel32 reaches (for tests).
func planRedirect(fn arch.Func, dest uint64, forceAbs bool) (arch.Redirect, error) {
	name := fn.Name
	if name == "" {
		name = fmt.Sprintf("function at %#x", fn.Addr)
	}
	refuse := func(format string, args ...any) (arch.Redirect, error) {
		return arch.Redirect{}, fmt.Errorf("%w: %s: %s", arch.ErrNotPatchable, name, fmt.Sprintf(format, args...))
	}
	if len(fn.Code) == 0 {
		return refuse("function has no code (size 0)")
	}
	insns, err := Decode(fn.Code, fn.Addr)
	if err != nil {
		return refuse("cannot decode: %v", err)
	}

	start := 0 // offset of the patch point in fn.Code
	if IsEndbr64(fn.Code) {
		start = len(endbr64)
	}
	at := fn.Addr + uint64(start)

	jump, kind := []byte(nil), "jmp rel32"
	if j, err := EncodeJmpRel32(at, dest); err == nil && !forceAbs {
		jump = j
	} else if forceAbs || errors.Is(err, arch.ErrOutOfRange) {
		jump, kind = EncodeJmpAbs(dest), "jmp abs64"
	} else {
		return arch.Redirect{}, fmt.Errorf("%s: encode jump: %w", name, err)
	}
	need := len(jump)
	end := at + uint64(need) // window is [at, end)

	if why := entryConflict(insns, fn.Addr, at, end); why != "" {
		why = fmt.Sprintf("%s, inside the %d bytes the %s would overwrite at offset %#x", why, need, kind, start)
		return planSlot(fn, insns, start, dest, forceAbs, why)
	}

	orig := make([]byte, 0, need)
	avail := len(fn.Code) - start
	if avail >= need {
		orig = append(orig, fn.Code[start:start+need]...)
	} else {
		// The window runs into the bytes after the function: allowed only over
		// padding, from the function end up to the window end.
		more := need - avail
		if n, why := paddingLen(fn.Tail, more); n < more {
			why = fmt.Sprintf("too short to redirect: it has %d bytes from the patch point at offset %#x plus %d bytes of padding, "+
				"but the %s needs %d; the bytes at function end+%#x are not padding (%s)", avail, start, n, kind, need, n, why)
			return planSlot(fn, insns, start, dest, forceAbs, why)
		}
		orig = append(orig, fn.Code[start:]...)
		orig = append(orig, fn.Tail[:more]...)
	}
	return arch.Redirect{Addr: at, Orig: orig, Jump: jump, Kind: kind}, nil
}

// entryConflict says why the bytes [at, end) of the function at addr cannot
// be overwritten, or "": a direct branch of the function lands strictly
// inside them, or a call returns there.
func entryConflict(insns []Insn, addr, at, end uint64) string {
	for _, in := range insns {
		off := in.PC - addr
		if in.Kind.IsBranch() && in.Target > at && in.Target < end {
			return fmt.Sprintf("the %s at offset %#x targets offset %#x", in.Kind, off, in.Target-addr)
		}
		if (in.Kind == Call || in.Kind == CallIndirect) && in.End() > at && in.End() < end {
			return fmt.Sprintf("the call at offset %#x returns to offset %#x", off, in.End()-addr)
		}
	}
	return ""
}

// PaddingLen returns the length of the alignment padding at the start of b:
// zero bytes, int3 and the NOP forms assemblers emit between functions.
func PaddingLen(b []byte) int {
	n, _ := paddingLen(b, len(b))
	return n
}

// paddingLen returns how many bytes at the start of tail, up to at least want
// if possible, are alignment padding: zero bytes, int3 and the NOP forms
// assemblers emit (90, 66 90, 0f 1f /0 with optional 66 and 2e prefixes, ...).
// A padding instruction that starts before want but ends after it counts
// whole. When fewer than want bytes are padding it also returns why.
func paddingLen(tail []byte, want int) (int, string) {
	n := 0
	for n < want {
		if n >= len(tail) {
			return n, "end of the section or next symbol"
		}
		if tail[n] == 0x00 {
			n++
			continue
		}
		in, _, err := decodeOneSafe(tail[n:], 0)
		if err != nil {
			return n, fmt.Sprintf("bytes %s do not decode", badBytes(tail[n:]))
		}
		if in.Kind != Nop && in.Kind != Int3 {
			return n, fmt.Sprintf("found a %d-byte %s instruction (%s), probably the next function", in.Len, in.Kind, badBytes(tail[n:n+in.Len]))
		}
		n += in.Len
	}
	return n, ""
}
