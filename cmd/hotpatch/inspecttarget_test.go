package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestInspectTargetCLI: inspect-target on a library built with -g and
// -fpatchable-function-entry, then stripped: with its symbols, with the
// debug file given, without it (the static function then known only by
// FDE), a debug file of another build (exit 4) and a file that is not ELF
// (exit 7), in text and JSON.
func TestInspectTargetCLI(t *testing.T) {
	testutil.NeedGCC(t)
	t.Setenv("DEBUGINFOD_CACHE_PATH", t.TempDir()) // not the host's cache
	d := t.TempDir()
	src := filepath.Join(d, "lib.c")
	os.WriteFile(src, []byte("static __attribute__((noinline)) long scale(long x) { return x * 2; }\nlong api(long x) { return scale(x) + 1; }\n"), 0o644)
	flags := []string{src, "-O2", "-g", "-shared", "-fPIC", "-fpatchable-function-entry=7,5"}
	lib := testutil.Compile(t, filepath.Join(d, "libt.so"), flags...)
	other := testutil.Compile(t, filepath.Join(d, "libo.so"), append(flags, "-g3")...)

	inspect := func(want int, args ...string) build.TargetInfo {
		t.Helper()
		out, errs, code := runCLI(t, append([]string{"inspect-target", "--json"}, args...)...)
		if code != want {
			t.Fatalf("inspect-target %v: exit %d, want %d\n%s%s", args, code, want, out, errs)
		}
		var info build.TargetInfo
		if want == 0 {
			if err := json.Unmarshal([]byte(out), &info); err != nil {
				t.Fatalf("json: %v\n%s", err, out)
			}
		}
		return info
	}
	full := inspect(0, lib)
	if full.SymbolsSource != "file" || full.BuildID == "" || full.Named < 2 || full.FDEOnly != 0 || !strings.Contains(strings.Join(full.PatchReady, ","), "scale") {
		t.Errorf("unstripped: %+v", full)
	}
	dbg := testutil.SplitDebug(t, lib)
	testutil.SplitDebug(t, other)
	moved := filepath.Join(d, "elsewhere.debug")
	if err := os.Rename(dbg, moved); err != nil {
		t.Fatal(err)
	}
	given := inspect(0, "--debug-file", moved, lib)
	if given.SymbolsSource != "explicit" || given.Symbols != moved || given.Named != full.Named || given.FDEOnly != 0 {
		t.Errorf("with --debug-file: %+v", given)
	}
	none := inspect(0, lib)
	if none.SymbolsSource != "none" || none.Debuglink != "libt.so.debug" || none.FDEOnly < 1 || none.Named >= full.Named ||
		!strings.Contains(strings.Join(none.PatchReady, ","), "function at 0x") {
		t.Errorf("stripped, no debug file: %+v", none)
	}
	inspect(exitRefused, "--debug-file", other+".debug", lib)
	inspect(exitBadInput, src)
	text := mustCLI(t, "inspect-target", lib)
	for _, w := range []string{"build-id    " + full.BuildID, "symbols     from " + lib + " (none)", "only by .eh_frame", "patch-ready"} {
		if !strings.Contains(text, w) {
			t.Errorf("text output lacks %q:\n%s", w, text)
		}
	}
}
