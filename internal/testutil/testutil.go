// Package testutil helps tests compile C programs and run them as patch
// targets. It is imported only by tests.
package testutil

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NeedGCC skips the test when no C compiler is installed.
func NeedGCC(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed: these tests compile real C targets")
	}
}

// NeedPtrace skips the test when this process may not ptrace its children:
// it tries PTRACE_SEIZE on a child for real.
func NeedPtrace(t testing.TB) {
	t.Helper()
	ptraceOnce.Do(func() {
		cmd := exec.Command("sleep", "5")
		if err := cmd.Start(); err != nil {
			ptraceErr = err
			return
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		done := make(chan error, 1)
		go func() {
			err := unix.PtraceSeize(cmd.Process.Pid)
			if err == nil {
				unix.PtraceDetach(cmd.Process.Pid)
			}
			done <- err
		}()
		ptraceErr = <-done
	})
	if ptraceErr != nil {
		t.Skipf("ptrace is not available here (PTRACE_SEIZE of a child: %v); these tests patch real processes", ptraceErr)
	}
}

var (
	ptraceOnce sync.Once
	ptraceErr  error
)

// Compile runs gcc with args (sources, flags) writing out, failing the test on error.
func Compile(t testing.TB, out string, args ...string) string {
	t.Helper()
	NeedGCC(t)
	cmd := exec.Command("gcc", append(append([]string{}, args...), "-o", out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// Target is a running test program whose stdout is read line by line.
type Target struct {
	Cmd   *exec.Cmd
	Pid   int
	Lines chan string
	Stdin io.WriteCloser
	errb  *lockedBuffer
	done  chan struct{}
	werr  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs bin; the process is killed when the test ends.
func Start(t testing.TB, bin string, args ...string) *Target {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	tg := &Target{Cmd: cmd, Lines: make(chan string, 1<<16), Stdin: stdin, errb: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = tg.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg.Pid = cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case tg.Lines <- sc.Text():
			default: // drop when nobody reads: keep the target running
			}
		}
		tg.werr = cmd.Wait()
		close(tg.done)
		close(tg.Lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-tg.done
	})
	return tg
}

// Stderr returns what the target wrote to stderr so far.
func (tg *Target) Stderr() string { return tg.errb.String() }

// Exited reports whether the target has exited, and its error.
func (tg *Target) Exited() (bool, error) {
	select {
	case <-tg.done:
		return true, tg.werr
	default:
		return false, nil
	}
}

// Wait waits for the target to exit.
func (tg *Target) Wait(d time.Duration) error {
	select {
	case <-tg.done:
		return tg.werr
	case <-time.After(d):
		return errors.New("timeout waiting for exit")
	}
}

// WaitLine returns the first line for which match is true, within d.
func (tg *Target) WaitLine(t testing.TB, d time.Duration, match func(string) bool) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l, ok := <-tg.Lines:
			if !ok {
				t.Fatalf("target exited (%v) before the expected line; stderr: %s", tg.werr, tg.Stderr())
			}
			if match(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no expected line within %v; stderr: %s", d, tg.Stderr())
		}
	}
}

// Drain discards buffered lines.
func (tg *Target) Drain() {
	for {
		select {
		case <-tg.Lines:
		default:
			return
		}
	}
}

// ThreadStates returns the state letter of every thread (from /proc/PID/task/*/stat).
func ThreadStates(pid int) (map[int]string, error) {
	dir := filepath.Join("/proc", itoa(pid), "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		out[atoi(e.Name())] = s[i+2 : i+3]
	}
	return out, nil
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func itoa(i int) string { return strconv.Itoa(i) }

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
