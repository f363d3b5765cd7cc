//go:build linux

package proc

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// A test-only hook: HOTPATCH_TEST_INJECT_STALL=STAGE[:DURATION] makes the
// tracer announce on stderr, and then wait DURATION (default 30 s), each time
// an injected call reaches STAGE on a thread:
//
//	set       registers set, thread not yet resumed
//	entry     at the syscall-entry-stop of an injected system call
//	exit      at its syscall-exit-stop, registers not yet restored
//	restored  registers restored, thread still in its syscall-exit-stop
//	call      an injected function call is running
//
// The kill tests (here and in cmd/hotpatch) SIGKILL the tracer at the
// announced instant: the worst instants for a tracer to die. The variable is
// read once, at start-up; unset it costs one comparison per stage.
var stallStage, stallFor = parseStall(os.Getenv("HOTPATCH_TEST_INJECT_STALL"))

func parseStall(v string) (string, time.Duration) {
	stage, dur, ok := strings.Cut(v, ":")
	d := 30 * time.Second
	if ok {
		if x, err := time.ParseDuration(dur); err == nil {
			d = x
		}
	}
	return stage, d
}

// StallAnnounce is the line the hook writes before stalling.
const StallAnnounce = "hotpatch-test: stalled at "

func stall(stage string, tid int) {
	if stallStage == "" || stage != stallStage {
		return
	}
	fmt.Fprintf(os.Stderr, "%s%s on thread %d\n", StallAnnounce, stage, tid)
	time.Sleep(stallFor)
}
