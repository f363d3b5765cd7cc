// Package engine applies, reverts and reports hotpatches on live processes.
//
// It ties the other packages together: it finds the patched file in the
// process (procmaps, elfsym), resolves and links the new code (linker), then,
// with every thread stopped (proc), checks that redirecting is safe, maps a
// region for the code, writes it, writes the redirecting jumps (arch) and the
// record (record), and resumes. Every step before the resume can fail; each
// failure rolls back what was done, so a process is either patched completely
// or left exactly as it was.
package engine

import (
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/proc"
)

// Sentinel errors callers (the CLI's exit codes, tests) branch on.
var (
	// ErrNoTarget: the process does not map the file the patch was built for.
	ErrNoTarget = errors.New("process does not run the patch's target")
	// ErrMismatch: the running code is not what the patch was built against.
	ErrMismatch = errors.New("running code does not match the patch")
	// ErrUnsafe: redirecting is not safe right now (a thread is inside the
	// bytes being replaced) and did not become safe before the timeout.
	ErrUnsafe = errors.New("not safe to patch now")
	// ErrNotApplied: no patch of that id is applied in the process.
	ErrNotApplied = errors.New("patch not applied")
	// ErrAlreadyApplied: the patch is already applied (a no-op).
	ErrAlreadyApplied = errors.New("patch already applied")
	// ErrStacked: the patch lies under a newer one that replaced the same
	// function; revert the newer first (last in, first out).
	ErrStacked = errors.New("patch is under a newer patch")
	// ErrBusy: another hotpatch command is working on the process.
	ErrBusy = errors.New("process busy with another hotpatch command")
	// ErrInTransition: the process holds a patch left half-way (by its
	// record: read from the process, so not proof of anything elsewhere).
	ErrInTransition = errors.New("a patch is in transition")
	// ErrResolve: a symbol the patch needs cannot be resolved in the target.
	ErrResolve = errors.New("cannot resolve symbol in target")
	// ErrSeccompBlocked: the target's seccomp filters allow none of the ways
	// to do the operation (the error names the blocked system calls); nothing
	// was injected and nothing changed.
	ErrSeccompBlocked = errors.New("refused by the target's seccomp filter")
)

// ErrBadAddress: an address in the patch's manifest is not what it claims to
// be in the target (not a function's start, mid-instruction, overlapping
// another function, or aliases given different code).
var ErrBadAddress = errors.New("patch address does not match the target")

// ErrInternal: hotpatch itself failed (a panic, i.e. a bug or an input no
// check caught). The operation was rolled back as on any other error.
var ErrInternal = errors.New("internal error")

// recoverPanic, deferred first by each operation, turns a panic into an
// error wrapping ErrInternal. The operation's other deferred steps (roll
// back, resume, detach, unlock) have run by then: a panic unwinds through
// them like a return.
func recoverPanic(err *error, op string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s: panic: %v (what it changed was undone; please report this)", ErrInternal, op, r)
	}
}

// diedDuring, deferred by each operation after it found the process, turns
// the error of an operation during which the process died into one wrapping
// proc.ErrExited: once it is gone, reading its maps or memory fails with
// "no such process" (and writing with a short write), which must not read
// as a wrong pid or a hotpatch failure.
func diedDuring(err *error, found *bool, pid int) {
	if *err != nil && *found && !errors.Is(*err, proc.ErrExited) && proc.Gone(pid) {
		*err = fmt.Errorf("%w during the operation: %w", proc.ErrExited, *err)
	}
}
