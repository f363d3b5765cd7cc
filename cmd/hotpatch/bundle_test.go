package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("hotpatch %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func wantExit(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, errs, code := runCLI(t, args...)
	if code != want {
		t.Fatalf("hotpatch %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errs)
	}
	return errs
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return string(s[:])
}

func runOnce(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	return strings.TrimSpace(string(out))
}

// TestSignedBundleCLI: keygen, build (signed, with a coldpatch), verify,
// inspect, and apply/revert against a real running process and the file on
// disk, including every refusal, through the command line.
func TestSignedBundleCLI(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown of the installed target)")
	}
	d := t.TempDir()
	state := filepath.Join(d, "state")
	noTrust := filepath.Join(d, "trusted.d") // empty: only --trust counts
	os.Mkdir(noTrust, 0o755)
	flags := []string{"-O2", "-g", "-flive-patching=inline-clone", "-Wl,--build-id"}
	build1 := testutil.Compile(t, filepath.Join(d, "svc-v1"), append([]string{"testdata/svc.c"}, flags...)...)
	fixed := testutil.Compile(t, filepath.Join(d, "svc-v2"), append([]string{"testdata/svc.c", "-DFIXED"}, flags...)...)
	other := testutil.Compile(t, filepath.Join(d, "other"), "testdata/other.c")
	obj := testutil.Compile(t, filepath.Join(d, "fix.o"), "testdata/svc_fix.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")

	// Install v1 as a service binary would be: mode 0750, owned by 1234.
	bin := filepath.Join(d, "bin", "svc")
	os.Mkdir(filepath.Dir(bin), 0o755)
	orig, _ := os.ReadFile(build1)
	if err := os.WriteFile(bin, orig, 0o750); err != nil {
		t.Fatal(err)
	}
	os.Chown(bin, 1234, 1234)
	os.Chmod(bin, 0o750)

	// keygen
	key, otherKey := filepath.Join(d, "vendor.key"), filepath.Join(d, "other.key")
	var kg struct {
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "keygen", "-o", key, "--json")), &kg); err != nil || len(kg.KeyID) != 16 {
		t.Fatalf("keygen JSON: %v %+v", err, kg)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st.Mode().Perm())
	}
	mustCLI(t, "keygen", "-o", otherKey)
	wantExit(t, exitFailure, "keygen", "-o", key) // never overwrites

	// build: signed with a coldpatch; unsigned; signed by another key.
	signed, unsigned, byOther := filepath.Join(d, "s.hp"), filepath.Join(d, "u.hp"), filepath.Join(d, "o.hp")
	base := []string{"build", "--target", bin, "--new", obj, "--id", "cli-fix", "--description", "fix the message"}
	var br map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, append(base, "-o", signed, "--cold", fixed, "--key", key, "--json")...)), &br); err != nil {
		t.Fatal(err)
	}
	if br["signed_by"] != kg.KeyID || br["cold"] == nil || br["id"] != "cli-fix" {
		t.Fatalf("build JSON: %v", br)
	}
	mustCLI(t, append(base, "-o", unsigned)...)
	mustCLI(t, append(base, "-o", byOther, "--key", otherKey, "--cold", fixed)...)
	// A coldpatch for another target is refused.
	wantExit(t, exitRefused, append(base, "-o", filepath.Join(d, "bad.hp"), "--cold", other)...)

	// inspect
	var man struct {
		ID        string
		Target    struct{ SHA256 string }
		Cold      *struct{ SHA256 string }
		Signature *struct {
			KeyID string `json:"key_id"`
		}
		Members []struct{ Name, Kind string }
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "inspect", signed, "--json")), &man); err != nil {
		t.Fatal(err)
	}
	if man.ID != "cli-fix" || man.Cold == nil || man.Signature == nil || man.Signature.KeyID != kg.KeyID || len(man.Members) != 2 {
		t.Fatalf("inspect: %+v", man)
	}
	if txt := mustCLI(t, "inspect", signed); !strings.Contains(txt, "coldpatch") || !strings.Contains(txt, "message") {
		t.Fatalf("inspect text:\n%s", txt)
	}

	// verify
	trust := []string{"--trust", key + ".pub", "--trust-dir", noTrust}
	mustCLI(t, append([]string{"verify", signed}, trust...)...)
	wantExit(t, exitRefused, "verify", signed, "--trust-dir", noTrust)          // no trusted key
	wantExit(t, exitRefused, append([]string{"verify", unsigned}, trust...)...) // unsigned
	wantExit(t, exitRefused, append([]string{"verify", byOther}, trust...)...)  // untrusted signer
	// Trust through the directory.
	pub, _ := os.ReadFile(key + ".pub")
	trustDir := filepath.Join(d, "trust-dir")
	os.Mkdir(trustDir, 0o755)
	os.WriteFile(filepath.Join(trustDir, "vendor.pub"), pub, 0o644)
	mustCLI(t, "verify", signed, "--trust-dir", trustDir)
	// Tampered bundles: the manifest (only the signature notices), a
	// member, a truncation.
	good, _ := os.ReadFile(signed)
	for name, b := range map[string][]byte{
		"manifest":  bytes.Replace(good, []byte("fix the message"), []byte("fix the massage"), 1),
		"member":    append(append([]byte(nil), good[:len(good)-10]...), append([]byte{good[len(good)-10] ^ 1}, good[len(good)-9:]...)...),
		"truncated": good[:len(good)/2],
	} {
		f := filepath.Join(d, "tampered-"+name+".hp")
		os.WriteFile(f, b, 0o644)
		wantExit(t, exitBadInput, append([]string{"verify", f}, trust...)...)
		wantExit(t, exitBadInput, append([]string{"apply", f, "--allow-unsigned", "--cold-only", "--state-dir", state}, trust...)...)
	}

	// A process running v1.
	tg := testutil.Start(t, bin, "loop")
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v1" })
	pid := strconv.Itoa(tg.Pid)
	origSum := sha(t, bin)

	// Refusals change nothing.
	errs := wantExit(t, exitRefused, append([]string{"apply", unsigned, "--pid", pid, "--state-dir", state}, trust...)...)
	if !strings.Contains(errs, "not signed") || !strings.Contains(errs, "--allow-unsigned") {
		t.Errorf("unsigned refusal message: %s", errs)
	}
	errs = wantExit(t, exitRefused, append([]string{"apply", byOther, "--pid", pid, "--state-dir", state}, trust...)...)
	if !strings.Contains(errs, "untrusted") {
		t.Errorf("untrusted refusal message: %s", errs)
	}
	wantExit(t, exitUsage, append([]string{"apply", signed, "--pid", pid, "--no-cold", "--cold-only"}, trust...)...)
	if sha(t, bin) != origSum || runOnce(t, bin) != "v1" {
		t.Fatal("a refused apply changed the file")
	}
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v1" })

	// apply: the coldpatch replaces the file, the hotpatch the running code.
	var ar struct {
		PatchID   string `json:"patch_id"`
		Stall     int64  `json:"stall_ns"`
		Functions []any
		Signature struct {
			Trusted bool
			KeyID   string `json:"key_id"`
		}
		Cold struct{ Action, Path string }
	}
	out := mustCLI(t, append([]string{"apply", signed, "--pid", pid, "--state-dir", state, "--json"}, trust...)...)
	if err := json.Unmarshal([]byte(out), &ar); err != nil {
		t.Fatalf("apply JSON: %v\n%s", err, out)
	}
	if ar.PatchID != "cli-fix" || ar.Stall <= 0 || len(ar.Functions) != 1 || !ar.Signature.Trusted || ar.Signature.KeyID != kg.KeyID || ar.Cold.Action != "replaced" {
		t.Fatalf("apply JSON: %s", out)
	}
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v2" }) // hotpatch
	if runOnce(t, bin) != "v2" {                                             // coldpatch: a new process
		t.Fatal("a new process does not run the fixed file")
	}
	if st, _ := os.Stat(bin); st.Mode().Perm() != 0o750 {
		t.Errorf("mode %v after the coldpatch", st.Mode().Perm())
	}
	// Again: both halves are already there.
	out = mustCLI(t, append([]string{"apply", signed, "--pid", pid, "--state-dir", state}, trust...)...)
	if !strings.Contains(out, "already is the fixed file") || !strings.Contains(out, "already applied") {
		t.Fatalf("second apply:\n%s", out)
	}

	// revert: the original file comes back byte for byte, and the code.
	out = mustCLI(t, "revert", "cli-fix", "--pid", pid, "--state-dir", state)
	if !strings.Contains(out, "restored the original") {
		t.Fatalf("revert:\n%s", out)
	}
	if sha(t, bin) != origSum || runOnce(t, bin) != "v1" {
		t.Fatal("revert did not restore the original file")
	}
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v1" })

	// --cold-only needs no process; --allow-unsigned accepts the other key.
	out = mustCLI(t, append([]string{"apply", byOther, "--cold-only", "--allow-unsigned", "--state-dir", state, "--json"}, trust...)...)
	if !strings.Contains(out, `"replaced"`) || !strings.Contains(out, "untrusted") {
		t.Fatalf("cold-only apply: %s", out)
	}
	wantExit(t, exitRefused, append([]string{"apply", unsigned, "--cold-only", "--allow-unsigned", "--state-dir", state}, trust...)...) // no coldpatch
	mustCLI(t, "revert", byOther, "--cold-only", "--state-dir", state)
	wantExit(t, exitNotApplied, "revert", "cli-fix", "--cold-only", "--state-dir", state)
	if sha(t, bin) != origSum {
		t.Fatal("cold-only revert did not restore the file")
	}

	// A file that is neither original nor fixed: refused, unless --force-cold.
	os.WriteFile(bin, append(orig, 0), 0o750)
	wantExit(t, exitRefused, append([]string{"apply", signed, "--cold-only", "--state-dir", state}, trust...)...)
	mustCLI(t, append([]string{"apply", signed, "--cold-only", "--force-cold", "--state-dir", state}, trust...)...)
	if runOnce(t, bin) != "v2" {
		t.Fatal("--force-cold did not replace the file")
	}
	// Revert puts back what was there before, even that.
	mustCLI(t, "revert", "cli-fix", "--cold-only", "--state-dir", state)
	if b, _ := os.ReadFile(bin); !bytes.Equal(b, append(orig, 0)) {
		t.Fatal("revert after --force-cold did not restore the previous file")
	}

	// --no-cold leaves the file alone.
	os.WriteFile(bin, orig, 0o750)
	mustCLI(t, append([]string{"apply", signed, "--pid", pid, "--no-cold", "--state-dir", state}, trust...)...)
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v2" })
	if sha(t, bin) != origSum {
		t.Fatal("--no-cold replaced the file")
	}
}
