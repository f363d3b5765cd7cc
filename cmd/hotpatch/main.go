// Command hotpatch live-patches running Linux processes.
//
// This package is the command line only: flags, output and exit codes. The
// work is done by the packages under internal/.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/safefile"
	"github.com/hotpatch/hotpatch/internal/shield"
	"github.com/hotpatch/hotpatch/internal/srcbuild"
)

// Exit codes (documented in README.md; scripts depend on them).
const (
	exitOK         = 0
	exitFailure    = 1 // anything else
	exitUsage      = 2 // bad command line
	exitNoTarget   = 3 // no such process, or it does not run the patch's target
	exitRefused    = 4 // verification or safety check refused the operation; nothing was changed
	exitPermission = 5 // not allowed to trace the process
	exitNotApplied = 6 // revert of a patch that is not applied
	exitBadInput   = 7 // the patch or object file is invalid
	exitDied       = 8 // the process died while hotpatch was working on it
)

// workerUsage is how the worker (worker.go) reports a bad command line to
// the command that started it, which exits with exitUsage: a Go program that
// crashes (a fatal runtime error, SIGQUIT) exits with 2 by itself, and such a
// crash must not read as "bad command line".
const workerUsage = 82

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.Is(err, proc.ErrExited):
		return exitDied
	case errors.Is(err, proc.ErrNoProcess), errors.Is(err, engine.ErrNoTarget):
		return exitNoTarget
	case errors.Is(err, proc.ErrPermission), errors.Is(err, proc.ErrAlreadyTraced), errors.Is(err, fs.ErrPermission),
		errors.Is(err, engine.ErrNoStateDir), errors.Is(err, safefile.ErrInsecure):
		return exitPermission
	case errors.Is(err, engine.ErrNotApplied):
		return exitNotApplied
	case errors.Is(err, patchfile.ErrBadPatch), errors.Is(err, linker.ErrBadObject), errors.Is(err, build.ErrNotELF):
		return exitBadInput
	case bundleExit(err) != 0: // signatures, trust, coldpatch (cold.go)
		return bundleExit(err)
	case errors.Is(err, engine.ErrMismatch), errors.Is(err, engine.ErrBadAddress), errors.Is(err, engine.ErrUnsafe), errors.Is(err, engine.ErrSeccompBlocked), errors.Is(err, engine.ErrStacked), errors.Is(err, engine.ErrResolve), errors.Is(err, debuginfo.ErrMismatch),
		errors.Is(err, build.ErrUnsafeTarget), errors.Is(err, build.ErrNotFound), errors.Is(err, srcbuild.ErrNotReproduced), errors.Is(err, linker.ErrUnresolved),
		errors.Is(err, build.ErrNotReproduced), errors.Is(err, build.ErrLTOTarget),
		errors.Is(err, arch.ErrUnsupportedReloc), errors.Is(err, arch.ErrRelocOverflow), errors.Is(err, arch.ErrNotPatchable):
		return exitRefused
	}
	return exitFailure
}

var errUsage = errors.New("usage")

type usageError struct{ error }

func (u usageError) Unwrap() []error { return []error{u.error, errUsage} }

// globals shared by the subcommands.
var jsonOut bool

func main() {
	tuneGC()
	if code, ok := runInWorker(os.Args[1:]); ok {
		os.Exit(code)
	}
	// The worker (see runInWorker) shields itself from what kills its
	// caller: the OOM killer, a kill of the caller's cgroup.
	var sh *shield.Shield
	if os.Getenv(workerEnv) != "" {
		sh = shield.Protect()
	}
	root := newRoot(os.Stdout, os.Stderr)
	code := report(execute(root), os.Stdout, os.Stderr)
	if code == exitUsage && os.Getenv(workerEnv) != "" {
		code = workerUsage
	}
	if sh != nil {
		sh.Release()
	}
	os.Exit(code)
}

// tuneGC turns the garbage collector off below a soft memory limit, unless
// the user set GOGC or GOMEMLIMIT: a command lives milliseconds and keeps
// little (17 MB peak for an apply to redis-server), and collecting was
// 20-30% of its CPU (perf stat of 8 redis apply/revert cycles: 516-578 ms
// task-clock with the default GOGC=100, 338-474 ms with GC off;
// docs/benchmarks.md). Past the limit (a host-wide apply to thousands of
// processes) the collector runs as usual (runtime/debug.SetMemoryLimit).
func tuneGC() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(gcMemoryLimit)
	}
}

// gcMemoryLimit is tuneGC's soft limit.
const gcMemoryLimit = 256 << 20

// execute runs the command, returning a panic as an error (exit 1, never the
// 2 of a Go crash, which means "bad command line" here). The engine recovers
// its own panics after rolling back; this catches the rest.
func execute(root *cobra.Command) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic: %v", engine.ErrInternal, r)
		}
	}()
	return root.Execute()
}

// report prints err (one line on stderr, and a JSON document on stdout with
// --json) and returns the exit code.
func report(err error, stdout, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintf(stderr, "hotpatch: %s\n", clean(err.Error()))
	if jsonOut {
		writeJSON(stdout, map[string]any{"error": err.Error(), "exit_code": code})
	}
	return code
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "hotpatch",
		Short: "Live-patch running Linux processes",
		Long: `hotpatch replaces functions of running processes without restarting them.

Build a patch from a fixed object file, apply it to a running process, check
its status, and revert it. Exit codes: 0 success, 1 failure, 2 usage,
3 no such process or target not mapped, 4 refused by a safety or verification
check (nothing changed), 5 permission denied, 6 patch not applied, 7 invalid
patch or object file, 8 the process died during the operation.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(cleanWriter{stdout}) // text from targets is escaped (sanitize.go)
	root.SetErr(cleanWriter{stderr})
	root.PersistentFlags().BoolVar(&jsonOut, "json", false, "print one JSON document instead of text")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newBuildCmd(), newApplyCmd(), newRevertCmd(), newStatusCmd())
	root.AddCommand(newKeygenCmd(), newVerifyCmd(), newInspectCmd(), newInspectTargetCmd())
	root.AddCommand(newRecoverCmd())
	return root
}
