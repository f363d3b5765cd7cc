package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/hotpatch/hotpatch/internal/shield"
)

// workerEnv marks the process that does the work of apply, revert and recover.
const workerEnv = "HOTPATCH_WORKER"

// runInWorker runs the commands that stop and change a target in a child
// process in its own session, and relays its exit code.
//
// Why: an operation cut short leaves a transition for `hotpatch recover` to
// settle, so it should not die with the command an operator started
// (Ctrl-C, kill -9, a CI timeout): the worker is not in the terminal's
// process group and is not the process the operator holds, so it finishes or
// rolls back its transaction (milliseconds) and exits. It also leaves the
// caller's cgroup and the OOM killer's choices (internal/shield, see main).
// Its output goes to the same stdout and stderr. Killing the worker itself
// cannot harm the target either: injected calls are self-restoring
// (internal/proc, docs/safety.md "If hotpatch is killed").
//
// It returns ok=false when the current process should do the work itself:
// it is the worker, the command does not touch a process, or help is asked.
func runInWorker(args []string) (code int, ok bool) {
	if os.Getenv(workerEnv) != "" || os.Getenv("HOTPATCH_INPROCESS") != "" {
		return 0, false
	}
	sub := ""
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "help" {
			return 0, false
		}
		if sub == "" && !strings.HasPrefix(a, "-") {
			sub = a
		}
	}
	switch sub {
	case "apply", "revert", "recover", "status": // status may free kept regions
	default:
		return 0, false
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, false
	}
	// The worker is born in a cgroup of its own (shield.Cell) when this
	// process may make one; otherwise it moves itself (shield.Protect).
	cell, _ := shield.NewCell()
	start := func(cell *shield.Cell) (*exec.Cmd, error) {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if cell != nil {
			cmd.Env = append(cmd.Env, cell.Env())
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cell.FD()
		}
		return cmd, cmd.Start()
	}
	cmd, err := start(cell)
	if err != nil && cell != nil {
		// A kernel without clone3's CLONE_INTO_CGROUP (before 5.7).
		cell.Remove()
		cell = nil
		cmd, err = start(nil)
	}
	if err != nil {
		return 0, false
	}
	err = cmd.Wait()
	if cell != nil {
		cell.Remove()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return relayCode(ee.ExitCode()), true
	}
	if err != nil {
		return exitFailure, true
	}
	return exitOK, true
}

// relayCode maps the worker's exit code to the command's: the worker says
// "bad command line" with workerUsage, so a 2 from it is a Go crash (exit
// 1); killed by a signal (-1) is a failure too.
func relayCode(code int) int {
	switch {
	case code == workerUsage:
		return exitUsage
	case code == exitUsage || code < 0:
		return exitFailure
	}
	return code
}
