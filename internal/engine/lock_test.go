package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// withLockDir points the lock files at a fresh directory for one test.
func withLockDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	old := LockDir
	LockDir = dir
	t.Cleanup(func() { LockDir = old })
	return dir
}

// TestLockExclusiveAndRemoved: many commands (goroutines: flock(2) locks
// belong to open file descriptions, so they exclude each other within one
// process as between processes) lock one process at once; never two are
// inside at the same time, and no lock file is left once all are done,
// although each unlock removes the file others are waiting on.
func TestLockExclusiveAndRemoved(t *testing.T) {
	dir := withLockDir(t)
	pid := os.Getpid()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		inside int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				unlock, err := lockProcess(pid, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside != 1 {
					t.Errorf("%d commands hold the lock of one process", inside)
				}
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				unlock()
			}
		}()
	}
	wg.Wait()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("lock files left: %v", ents)
	}
}

// TestLockSweep: lock files of processes that are gone (a command killed
// while it held one) are removed by the next run's first lock; the lock file
// of a live process that another command holds stays, and stays held.
func TestLockSweep(t *testing.T) {
	dir := withLockDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, strconv.Itoa(c.Process.Pid)+"-1.lock")
	recycled := filepath.Join(dir, strconv.Itoa(os.Getpid())+"-1.lock") // our pid, another start time
	for _, p := range []string{dead, recycled} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A live process's lock, held by "another command".
	live := exec.Command("sleep", "30")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Process.Kill()
	unlock, err := lockProcess(live.Process.Pid, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	start, _ := startTime(live.Process.Pid)
	held := filepath.Join(dir, strconv.Itoa(live.Process.Pid)+"-"+start+".lock")

	lockDirs.mu.Lock()
	d := lockDirs.m[dir]
	lockDirs.mu.Unlock()
	sweepLocks(d)
	for _, p := range []string{dead, recycled} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s (no such process) not swept", filepath.Base(p))
		}
	}
	if _, err := os.Lstat(held); err != nil {
		t.Errorf("the held lock of a live process was swept: %v", err)
	}
	if _, err := lockProcess(live.Process.Pid, 0); err == nil {
		t.Error("the sweep released a held lock")
	}
}
