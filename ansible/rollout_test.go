// Package rollout_test runs the Ansible collection (ansible_collections/
// hotpatch/live) and the canary playbook (rollout.yml) for real, with
// ansible-playbook, on an inventory of four hosts that are all this machine
// (ansible_connection=local), each owning its own target processes.
package rollout_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// rollout is one test's fleet: the hotpatch binary, the signed patch, the
// targets of each host.
type rollout struct {
	t       *testing.T
	dir     string
	bin     string
	patch   string
	id      string // the patch's id
	key     string
	hosts   []string
	targets map[string][]*testutil.Target
}

// playbook is the ansible-playbook executable, or the test is skipped.
func playbook(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ansible-playbook")
	if err != nil {
		t.Skipf("ansible-playbook is not installed (Debian: apt-get install ansible-core): %v", err)
	}
	return p
}

func newRollout(t *testing.T) *rollout {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	d := t.TempDir()
	r := &rollout{t: t, dir: d, bin: filepath.Join(d, "hotpatch"), targets: map[string][]*testutil.Target{}}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build hotpatch with: %v", err)
		}
	}
	if out, err := exec.Command(gobin, "build", "-o", r.bin, "../cmd/hotpatch").CombinedOutput(); err != nil {
		t.Fatalf("go build hotpatch: %v\n%s", err, out)
	}
	svc := testutil.Compile(t, filepath.Join(d, "svc"), "../cmd/hotpatch/testdata/svc.c", "-O2", "-g", "-flive-patching=inline-clone")
	obj := testutil.Compile(t, filepath.Join(d, "fix.o"), "../cmd/hotpatch/testdata/svc_fix.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	r.key = filepath.Join(d, "team.key")
	r.patch = filepath.Join(d, "fix.hp")
	r.hotpatch("keygen", "-o", r.key)
	r.id = fmt.Sprintf("rollout-%d", os.Getpid())
	r.hotpatch("build", "--target", svc, "--new", obj, "-o", r.patch, "--key", r.key, "--id", r.id)
	for i := 1; i <= 4; i++ {
		h := "host" + strconv.Itoa(i)
		r.hosts = append(r.hosts, h)
		for k := 0; k < 2; k++ {
			r.targets[h] = append(r.targets[h], testutil.Start(t, svc, "loop"))
		}
	}
	for _, h := range r.hosts {
		r.says(h, "v1")
	}
	return r
}

func (r *rollout) hotpatch(args ...string) string {
	r.t.Helper()
	out, err := exec.Command(r.bin, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("hotpatch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *rollout) pids(h string) []int {
	var p []int
	for _, tg := range r.targets[h] {
		p = append(p, tg.Pid)
	}
	return p
}

// says waits until every target of host h prints msg (v1: the old code, v2:
// the patched).
func (r *rollout) says(h, msg string) {
	r.t.Helper()
	for _, tg := range r.targets[h] {
		tg.Drain()
		tg.WaitLine(r.t, 5*time.Second, func(l string) bool { return l == msg })
	}
}

// regions returns, for each target of host h, the states of its patch
// regions as hotpatch status lists them (none: the process was never
// touched, or its region was freed).
func (r *rollout) regions(h string) map[int][]string {
	r.t.Helper()
	args := []string{"status", "--json"}
	for _, pid := range r.pids(h) {
		args = append(args, "--pid", strconv.Itoa(pid))
	}
	var doc struct {
		Processes []struct {
			PID     int `json:"pid"`
			Patches []struct {
				State string `json:"state"`
			} `json:"patches"`
		} `json:"processes"`
	}
	out := r.hotpatch(args...)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		r.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	m := map[int][]string{}
	for _, p := range doc.Processes {
		for _, s := range p.Patches {
			m[p.PID] = append(m[p.PID], s.State)
		}
	}
	return m
}

func (r *rollout) patched(h string) {
	r.t.Helper()
	reg := r.regions(h)
	for _, pid := range r.pids(h) {
		if len(reg[pid]) != 1 || reg[pid][0] != "applied" {
			r.t.Errorf("%s: process %d: regions %v, want the patch applied", h, pid, reg[pid])
		}
	}
	r.says(h, "v2")
}

func (r *rollout) notPatched(h string) {
	r.t.Helper()
	for pid, st := range r.regions(h) {
		for _, s := range st {
			if s == "applied" {
				r.t.Errorf("%s: process %d has the patch applied", h, pid)
			}
		}
	}
	r.says(h, "v1")
}

// untouched: no hotpatch command ever worked on host h's processes, and the
// role never ran there (its staging directory does not exist).
func (r *rollout) untouched(h string) {
	r.t.Helper()
	if reg := r.regions(h); len(reg) != 0 {
		r.t.Errorf("%s: patch regions %v, want none", h, reg)
	}
	if _, err := os.Stat(r.stage(h)); !os.IsNotExist(err) {
		r.t.Errorf("%s: the role ran there (%s: %v)", h, r.stage(h), err)
	}
	r.says(h, "v1")
}

func (r *rollout) stage(h string) string { return filepath.Join(r.dir, "stage", h) }

// inventory writes an inventory (YAML's JSON form) in which host unhealthy,
// if any, fails its health check.
func (r *rollout) inventory(unhealthy string) string {
	hosts := map[string]any{}
	for _, h := range r.hosts {
		health := "true"
		if h == unhealthy {
			health = "false"
		}
		hosts[h] = map[string]any{"hotpatch_pids": r.pids(h), "hotpatch_remote_dir": r.stage(h), "hotpatch_health_cmd": health}
	}
	inv := map[string]any{"all": map[string]any{"hosts": hosts, "vars": map[string]any{
		"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}}}
	b, _ := json.Marshal(inv)
	p := filepath.Join(r.dir, "inventory-"+unhealthy+".yml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// env is ansible's environment: its state and temporary files in the
// test's directory, plain output.
func (r *rollout) env() []string {
	tmp := filepath.Join(r.dir, "ansible-tmp")
	return append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "ANSIBLE_HOME="+filepath.Join(r.dir, "ansible-home"),
		"ANSIBLE_LOCAL_TEMP="+tmp, "ANSIBLE_REMOTE_TEMP="+tmp, "ANSIBLE_RETRY_FILES_ENABLED=0", "ANSIBLE_DEPRECATION_WARNINGS=0")
}

// recap is a host's line of the PLAY RECAP.
type recap struct{ ok, changed, failed int }

var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)`)

// play runs rollout.yml and returns the recap of each host that ran, and
// ansible-playbook's exit code.
func (r *rollout) play(ap, inventory string, extra ...string) (map[string]recap, int, string) {
	r.t.Helper()
	vars, _ := json.Marshal(map[string]any{"hotpatch_patch": r.patch, "hotpatch_trust_keys": []string{r.key + ".pub"},
		"hotpatch_bin": r.bin, "hotpatch_health_retries": 1, "hotpatch_health_delay": 0})
	args := append([]string{"-i", inventory, "-e", string(vars), "rollout.yml"}, extra...)
	cmd := exec.Command(ap, args...)
	cmd.Env = r.env()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("ansible-playbook: %v", err)
	}
	r.t.Logf("ansible-playbook %s: exit %d in %v", strings.Join(extra, " "), code, time.Since(start).Round(time.Millisecond))
	got := map[string]recap{}
	for _, m := range recapLine.FindAllStringSubmatch(string(out), -1) {
		ok, _ := strconv.Atoi(m[2])
		ch, _ := strconv.Atoi(m[3])
		f, _ := strconv.Atoi(m[4])
		got[m[1]] = recap{ok, ch, f}
	}
	return got, code, string(out)
}

// TestRollout: check mode changes nothing; an unhealthy canary batch (host
// 2) is reverted and stops the rollout with hosts 3 and 4 untouched; the
// healthy rollout patches every host; a rerun changes nothing.
func TestRollout(t *testing.T) {
	ap := playbook(t)
	r := newRollout(t)

	// Check mode: hotpatch's dry run on every host, nothing changes.
	rc, code, out := r.play(ap, r.inventory(""), "--check", "-v")
	if code != 0 || len(rc) != 4 {
		t.Fatalf("check mode: exit %d, recap %v\n%s", code, rc, out)
	}
	for _, h := range r.hosts {
		if rc[h].failed != 0 {
			t.Errorf("check mode: %s failed", h)
		}
		if reg := r.regions(h); len(reg) != 0 {
			t.Errorf("check mode: %s: patch regions %v, want none", h, reg)
		}
		r.says(h, "v1")
	}
	// Each host's module result lists its two processes as would-apply.
	if n := strings.Count(out, `"state": "would-apply"`); n != 8 || strings.Contains(out, "Revert the patch on this host") {
		t.Errorf("check mode: %d processes would apply, want 8:\n%s", n, out)
	}
	if n := strings.Count(out, `"stall": `); n < 8 { // what each process felt (stall_ns)
		t.Errorf("check mode: %d processes report their stall, want 8:\n%s", n, out)
	}
	os.RemoveAll(filepath.Join(r.dir, "stage")) // staged by check mode; "untouched" below looks for it

	// Host 2 is unhealthy: host 1 (the first batch) stays patched, host 2
	// (the second) is reverted and failed, and the rollout stops there.
	rc, code, out = r.play(ap, r.inventory("host2"))
	if code == 0 || rc["host1"].failed != 0 || rc["host1"].changed == 0 || rc["host2"].failed != 1 {
		t.Fatalf("unhealthy host 2: exit %d, recap %v\n%s", code, rc, out)
	}
	if _, ran := rc["host3"]; ran {
		t.Errorf("unhealthy host 2: host3 ran: %v", rc)
	}
	if !strings.Contains(out, "hotpatch rollout failed on host2 (unhealthy after the apply: false); the patch was reverted on this host") {
		t.Errorf("unhealthy host 2: no failure message\n%s", out)
	}
	r.patched("host1")
	r.notPatched("host2")
	r.untouched("host3")
	r.untouched("host4")

	// Every host healthy: all patched (host 1 already was: no change).
	rc, code, out = r.play(ap, r.inventory(""))
	if code != 0 || len(rc) != 4 || rc["host1"].changed != 0 {
		t.Fatalf("rollout: exit %d, recap %v\n%s", code, rc, out)
	}
	for _, h := range r.hosts {
		if rc[h].failed != 0 || (h != "host1" && rc[h].changed == 0) {
			t.Errorf("rollout: %s: %+v", h, rc[h])
		}
		r.patched(h)
	}

	// hotpatch.live.status: the facts list host 1's two processes.
	adhoc := exec.Command(filepath.Join(filepath.Dir(ap), "ansible"), "host1", "-i", r.inventory(""), "-m", "hotpatch.live.status",
		"-a", "hotpatch_bin="+r.bin+" pids={{ hotpatch_pids }}")
	adhoc.Env = r.env()
	sout, err := adhoc.CombinedOutput()
	var facts struct {
		Facts struct {
			Applied map[string][]int `json:"hotpatch_applied"`
		} `json:"ansible_facts"`
	}
	if i := strings.Index(string(sout), "{"); err != nil || i < 0 || json.Unmarshal(sout[i:], &facts) != nil ||
		fmt.Sprint(facts.Facts.Applied[r.id]) != fmt.Sprint(r.pids("host1")) {
		t.Errorf("hotpatch.live.status on host1: %v, facts %+v\n%s", err, facts, sout)
	}

	// A rerun reports no change anywhere.
	rc, code, out = r.play(ap, r.inventory(""))
	if code != 0 || len(rc) != 4 {
		t.Fatalf("rerun: exit %d, recap %v\n%s", code, rc, out)
	}
	for _, h := range r.hosts {
		if rc[h].changed != 0 || rc[h].failed != 0 {
			t.Errorf("rerun: %s: %+v\n%s", h, rc[h], out)
		}
		r.patched(h)
	}
}
