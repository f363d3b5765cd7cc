package main

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// The C targets and their fixes are embedded, so the built command runs from
// any directory.
//
//go:embed testdata/*.c
var sources embed.FS

// Flags: the targets are built as the README tells users to build patchable
// services; the patch objects add the two section flags.
var (
	targetFlags = []string{"-O2", "-g", "-pthread", "-flive-patching=inline-clone"}
	objFlags    = []string{"-O2", "-g", "-flive-patching=inline-clone", "-ffunction-sections", "-fdata-sections", "-c"}
)

// ErrTargetExited: a target process exited (crashed, or found a wrong
// result) while it was being measured.
var ErrTargetExited = errors.New("target process exited")

// workdir holds the C sources and everything compiled from them.
type workdir struct {
	dir string
}

// newWorkdir writes the embedded sources into a fresh temporary directory
// (under parent, or the system's when parent is empty).
func newWorkdir(parent string) (*workdir, error) {
	if _, err := exec.LookPath("gcc"); err != nil {
		return nil, fmt.Errorf("gcc is needed to build the benchmark targets: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "hotpatch-bench-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	ents, err := sources.ReadDir("testdata")
	if err != nil {
		return nil, fmt.Errorf("embedded sources: %w", err)
	}
	for _, e := range ents {
		b, err := sources.ReadFile("testdata/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", e.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", e.Name(), err)
		}
	}
	return &workdir{dir: dir}, nil
}

func (w *workdir) remove() { os.RemoveAll(w.dir) }

func (w *workdir) path(name string) string { return filepath.Join(w.dir, name) }

// gcc runs gcc in the work directory.
func (w *workdir) gcc(out string, args ...string) (string, error) {
	cmd := exec.Command("gcc", append(append([]string{}, args...), "-o", out)...)
	cmd.Dir = w.dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return w.path(out), nil
}

// target compiles src.c (with extra flags) into an executable named out.
func (w *workdir) target(out, src string, extra ...string) (string, error) {
	return w.gcc(out, append(append([]string{src}, targetFlags...), extra...)...)
}

// object compiles a patch object.
func (w *workdir) object(out, src string) (string, error) {
	return w.gcc(out, append([]string{src}, objFlags...)...)
}

// patch builds the patch replacing the functions of obj in bin, writes it to
// out, and returns it read back from the file, as the CLI would use it.
func (w *workdir) patch(bin, obj, id, out string) (*patchfile.Patch, error) {
	p, _, err := build.ByName(build.Options{Target: bin, New: []string{obj}, ID: id})
	if err != nil {
		return nil, fmt.Errorf("build patch %s: %w", id, err)
	}
	if err := p.WriteFile(w.path(out)); err != nil {
		return nil, fmt.Errorf("write patch %s: %w", id, err)
	}
	q, err := patchfile.ReadFile(w.path(out))
	if err != nil {
		return nil, fmt.Errorf("read patch %s back: %w", id, err)
	}
	return q, nil
}

// child is a running target whose stdout is read line by line.
type child struct {
	cmd    *exec.Cmd
	pid    int
	lines  chan string
	done   chan struct{}
	stderr *lockedBuffer
	err    error // valid after done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 64<<10 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs bin with args and env (added to ours). Lines nobody reads are
// dropped when the buffer is full, so the target never blocks on stdout.
func start(env []string, bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &child{cmd: cmd, lines: make(chan string, 256), done: make(chan struct{}), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.err = cmd.Wait()
		close(p.done)
		close(p.lines)
	}()
	return p, nil
}

// exited reports whether the target has exited.
func (p *child) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr describes how the target ended.
func (p *child) exitErr() error {
	return fmt.Errorf("%w: pid %d: %v; stderr: %s", ErrTargetExited, p.pid, p.err, strings.TrimSpace(p.stderr.String()))
}

// waitLine returns the first line for which match is true, within d.
func (p *child) waitLine(d time.Duration, match func(string) bool) (string, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", p.exitErr()
			}
			if match(l) {
				return l, nil
			}
		case <-deadline.C:
			return "", fmt.Errorf("target %d: no expected line within %v", p.pid, d)
		}
	}
}

// waitReady waits for the "ready" line every target prints once its threads run.
func (p *child) waitReady() error {
	_, err := p.waitLine(30*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready") })
	return err
}

// drain discards buffered lines.
func (p *child) drain() {
	for {
		select {
		case <-p.lines:
		default:
			return
		}
	}
}

// kill ends the target and waits for it.
func (p *child) kill() {
	p.cmd.Process.Kill()
	<-p.done
}
