package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// TestExitCodes: permission errors of any origin exit 5, a process that
// died during the operation 8 (not 3, "no such process"), an internal error
// 1 (issue 11 item 13).
func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("open /proc/1/mem: %w", &fs.PathError{Op: "open", Path: "/proc/1/mem", Err: unix.EACCES}), exitPermission},
		{fmt.Errorf("write: %w", unix.EPERM), exitPermission},
		{fmt.Errorf("attach: %w", proc.ErrPermission), exitPermission},
		{fmt.Errorf("%w during the operation: %w", proc.ErrExited, fmt.Errorf("read: %w", proc.ErrNoProcess)), exitDied},
		{fmt.Errorf("stop: %w", proc.ErrExited), exitDied},
		{fmt.Errorf("%w: process 9", proc.ErrNoProcess), exitNoTarget},
		{fmt.Errorf("%w: apply: panic: x", engine.ErrInternal), exitFailure},
		{usageError{errors.New("bad flag")}, exitUsage},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	// The worker's exit codes as relayed: 2 from the worker is a Go crash.
	for code, want := range map[int]int{workerUsage: exitUsage, exitUsage: exitFailure, -1: exitFailure, exitDied: exitDied, 0: 0} {
		if got := relayCode(code); got != want {
			t.Errorf("relayCode(%d) = %d, want %d", code, got, want)
		}
	}
}

// TestWorkerExitCodes runs the command: a bad command line of a command the
// worker runs still exits 2, through the worker's own code (a Go program
// that crashes exits 2 by itself, which relayCode turns into 1).
func TestWorkerExitCodes(t *testing.T) {
	d := t.TempDir()
	bin := filepath.Join(d, "hotpatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	code := func(cmd *exec.Cmd) int {
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	if got := code(exec.Command(bin, "apply", "x.hp", "--no-such-flag")); got != exitUsage {
		t.Errorf("bad flag through the worker: exit %d, want %d", got, exitUsage)
	}
	w := exec.Command(bin, "apply", "x.hp", "--no-such-flag")
	w.Env = append(os.Environ(), workerEnv+"=1")
	if got := code(w); got != workerUsage {
		t.Errorf("bad flag in the worker itself: exit %d, want %d", got, workerUsage)
	}
}
