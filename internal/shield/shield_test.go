package shield

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestParseCgroup2Mount(t *testing.T) {
	mi := `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
35 22 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
41 35 0:38 /sub /sys/fs/cgroup/bound rw,relatime - cgroup2 cgroup2 rw
42 35 0:38 / /sys/fs/cgroup/uni\040fied rw,relatime shared:5 - cgroup2 cgroup2 rw
`
	got, err := parseCgroup2Mount([]byte(mi))
	if err != nil || got != "/sys/fs/cgroup/uni fied" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := parseCgroup2Mount([]byte("22 1 0:21 / /sys rw - sysfs sysfs rw\n")); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("no cgroup2: %v", err)
	}
}

func FuzzParseCgroup2Mount(f *testing.F) {
	f.Add([]byte("42 35 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseCgroup2Mount(b) })
}

// TestProtect runs Protect in a child process (it changes the process it
// runs in) and checks its oom_score_adj and cgroup, then that Release
// removes the cgroup.
func TestProtect(t *testing.T) {
	if os.Getenv("SHIELD_TEST_CHILD") != "" {
		s := Protect()
		adj, _ := os.ReadFile("/proc/self/oom_score_adj")
		cg, _ := os.ReadFile("/proc/self/cgroup")
		dir := s.Cgroup()
		err := s.Release()
		_, statErr := os.Stat(dir)
		os.Stdout.WriteString("adj=" + strings.TrimSpace(string(adj)) + "\ncgroup=" + dir + "\n" + string(cg) +
			"notes=" + strings.Join(s.Notes, "; ") + "\nrelease=" + errString(err) + "\nremoved=" + strconv.FormatBool(dir == "" || os.IsNotExist(statErr)) + "\n")
		os.Exit(0)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^TestProtect$")
	cmd.Env = append(os.Environ(), "SHIELD_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	t.Log(s)
	if os.Geteuid() != 0 {
		t.Skip("not root: only the notes can be checked")
	}
	switch {
	case hasCapSysResource():
		if !strings.Contains(s, "adj=-1000\n") {
			t.Errorf("oom_score_adj not -1000:\n%s", s)
		}
	case !strings.Contains(s, "notes=oom_score_adj: "):
		t.Errorf("without CAP_SYS_RESOURCE, no note on oom_score_adj:\n%s", s)
	}
	root, err := cgroup2Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skip("no cgroup v2")
	}
	if probe := filepath.Join(root, "hotpatch-shield-probe"); os.Mkdir(probe, 0o755) != nil {
		t.Skip("cgroup v2 not writable")
	} else {
		os.Remove(probe)
	}
	if !strings.Contains(s, "cgroup="+filepath.Join(root, "hotpatch-worker-")) || !strings.Contains(s, "\n0::/hotpatch-worker-") {
		t.Errorf("not moved to its own cgroup:\n%s", s)
	}
	if !strings.Contains(s, "release=\n") || !strings.Contains(s, "removed=true") {
		t.Errorf("cgroup not removed:\n%s", s)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// hasCapSysResource: CAP_SYS_RESOURCE (24) is in this process's effective
// set (a container may withhold it even from root).
func hasCapSysResource() bool {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<24) != 0
		}
	}
	return false
}

// TestCell: a worker started in a Cell is born in that cgroup (never in its
// caller's), Protect recognises it and moves nothing, Release leaves it to
// the caller, and Remove removes it once the worker has exited.
func TestCell(t *testing.T) {
	if os.Getenv("SHIELD_TEST_CELL_CHILD") != "" {
		unified := func() string { // the cgroup v2 line of /proc/self/cgroup
			b, _ := os.ReadFile("/proc/self/cgroup")
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "0::") {
					return l
				}
			}
			return ""
		}
		cg0 := unified() // before Protect
		s := Protect()
		err := s.Release()
		os.Stdout.WriteString("before=" + cg0 + "\nafter=" + unified() + "\ncgroup=" + s.Cgroup() + "\nrelease=" + errString(err) + "\n")
		os.Exit(0)
	}
	c, err := NewCell()
	if err != nil {
		t.Skipf("no writable cgroup v2: %v", err)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^TestCell$")
	cmd.Env = append(os.Environ(), "SHIELD_TEST_CELL_CHILD=1", c.Env())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: c.FD()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.Remove()
		t.Skipf("clone into a cgroup: %v\n%s", err, out)
	}
	s := string(out)
	t.Log(s)
	want := "0::" + c.rel + "\n"
	if !strings.Contains(s, "before="+want) || !strings.Contains(s, "after="+want) {
		t.Errorf("the worker was not in its cell %s from its start to its end:\n%s", c.rel, s)
	}
	if !strings.Contains(s, "cgroup="+c.dir+"\n") || !strings.Contains(s, "release=\n") {
		t.Errorf("Protect did not recognise the cell:\n%s", s)
	}
	if _, err := os.Stat(c.dir); err != nil {
		t.Errorf("the worker's Release removed the cell: %v", err)
	}
	c.Remove()
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("Remove left %s: %v", c.dir, err)
	}
}
