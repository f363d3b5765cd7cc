package engine

import (
	"fmt"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/record"
)

// runPre proves, before anything is touched, that the code running in the
// process is the code the patch was built against (Ksplice's "run-pre"
// check): every replaced function's bytes, as recorded in the patch with
// relocated bytes masked out, must equal the bytes in the process. Bytes that
// an applied patch of ours overwrote with its jump are compared against the
// original bytes that patch recorded.
//
// It runs while the process is running: code pages do not change under us
// (other hotpatch commands are serialised by the per-process lock), and the
// entry bytes are checked again with the threads stopped.
func runPre(pp *prepared, applied []PatchStatus) error {
	for _, f := range pp.funcs {
		orig := f.spec.Orig
		if len(orig) == 0 {
			continue
		}
		cur := make([]byte, len(orig))
		if err := proc.ReadMem(pp.t.pid, f.fn.Addr, cur); err != nil {
			return fmt.Errorf("run-pre: read %s at %#x: %w", f.spec.Name, f.fn.Addr, err)
		}
		// Undo our own redirects in the copy: the bottom patch of a stack on
		// this function holds the original bytes (the others hold the jump of
		// the patch below them).
		for _, p := range applied {
			for _, rd := range p.Redirects {
				if rd.Addr >= f.fn.Addr && rd.Addr+uint64(len(rd.Orig)) <= f.fn.Addr+uint64(len(cur)) &&
					jumpOwner(applied, rd.Addr, rd.Orig) == nil {
					copy(cur[rd.Addr-f.fn.Addr:], rd.Orig)
				}
			}
		}
		for i := range orig {
			if len(f.spec.OrigMask) > 0 && f.spec.OrigMask[i] == 0 {
				continue
			}
			if cur[i] != orig[i] {
				return fmt.Errorf("%w: run-pre check failed for %s: byte %d (address %#x) is %#02x in the process, %#02x in the code the patch was built against (built from other sources or with other compiler flags?)",
					ErrMismatch, f.spec.Name, i, f.fn.Addr+uint64(i), cur[i], orig[i])
			}
		}
	}
	return nil
}

// jumpOwner returns the applied patch whose jump at addr is b, if any.
func jumpOwner(applied []PatchStatus, addr uint64, b []byte) *PatchStatus {
	for i := range applied {
		if applied[i].State != record.StateApplied {
			continue
		}
		for _, rd := range applied[i].Redirects {
			if rd.Addr == addr && string(rd.Jump) == string(b) {
				return &applied[i]
			}
		}
	}
	return nil
}
