package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC: the collector is off below the soft limit, unless the user
// chose with GOGC or GOMEMLIMIT.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneGC()
	if p := debug.SetGCPercent(100); p != -1 {
		t.Errorf("GC percent %d, want off", p)
	}
	if l := debug.SetMemoryLimit(-1); l != gcMemoryLimit {
		t.Errorf("memory limit %d, want %d", l, gcMemoryLimit)
	}
	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	tuneGC()
	if p := debug.SetGCPercent(50); p != 50 {
		t.Errorf("with GOGC=50 set, GC percent %d", p)
	}
}
