package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// TestBundlePathNotRegular: a FIFO or /dev/zero given as the bundle to
// verify, inspect, apply or revert, or as a --trust key, fails at once with a
// clear error (a FIFO used to hang the command, /dev/zero to grow its memory
// without bound).
func TestBundlePathNotRegular(t *testing.T) {
	d := t.TempDir()
	fifo := filepath.Join(d, "bundle.hp")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(d, "trusted.d")
	os.Mkdir(empty, 0o755)
	run := func(want int, wantMsg string, args ...string) {
		t.Helper()
		type res struct {
			errs string
			code int
		}
		ch := make(chan res, 1)
		go func() {
			_, errs, code := runCLI(t, args...)
			ch <- res{errs, code}
		}()
		select {
		case r := <-ch:
			if r.code != want || !strings.Contains(r.errs, wantMsg) {
				t.Errorf("hotpatch %s: exit %d (want %d), stderr %q (want %q)", strings.Join(args, " "), r.code, want, r.errs, wantMsg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("hotpatch %s: still running after 10s", strings.Join(args, " "))
		}
	}
	p, err := patchfile.New(patchfile.Manifest{ID: "hp-fifo", Target: patchfile.Target{Path: "/bin/x", BuildID: "0a1b", Machine: "amd64"},
		Functions: []patchfile.Function{{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16}}},
		[]patchfile.NamedData{{Name: "new.o", Kind: patchfile.KindObject, Data: []byte("\x7fELF object")}})
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(d, "ok.hp")
	if err := p.WriteFile(bundle); err != nil {
		t.Fatal(err)
	}
	for path, what := range map[string]string{fifo: "is a FIFO", "/dev/zero": "is a character device"} {
		run(exitBadInput, what, "verify", path, "--trust-dir", empty)
		run(exitBadInput, what, "inspect", path)
		run(exitBadInput, what, "apply", path, "--pid", "1", "--trust-dir", empty)
		run(exitBadInput, what, "revert", path, "--pid", "1", "--state-dir", filepath.Join(d, "state"))
		run(exitFailure, what, "verify", bundle, "--trust", path, "--trust-dir", empty)
	}
}
