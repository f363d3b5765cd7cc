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

import "errors"

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
