package engine

import "golang.org/x/sys/unix"

func pcOf(r *unix.PtraceRegs) uint64 { return r.Pc }
