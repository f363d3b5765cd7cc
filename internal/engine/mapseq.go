package engine

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/record"
)

// Mapping the patch region: which system calls, in which order.
//
// Two sequences can map a region; both start with memfd_create in the
// target (the region's name in /proc/PID/maps, /memfd:hotpatch:ID, is how
// status and recover find it) and map it MAP_PRIVATE, so that a child the
// target forks later gets its own copy.
//
// seqFinal (preferred) never has a mapping writable and executable and never
// adds PROT_EXEC with mprotect, which is what MemoryDenyWriteExecute= (a
// seccomp filter refusing mprotect(PROT_EXEC) and mmap(PROT_WRITE|PROT_EXEC))
// and PR_SET_MDWE (mm: refuses W+X, and adding X to a mapping without it)
// demand:
//  1. memfd_create(name, MFD_CLOEXEC) in the target;
//  2. from hotpatch, through /proc/PID/fd/N (checked to be that memfd by name
//     and inode): ftruncate to the region's size — no injected call;
//  3. mmap(base, size, PROT_READ, MAP_PRIVATE|MAP_FIXED_NOREPLACE, fd, 0) in
//     the target: the whole range, reserved atomically (EEXIST rather than
//     replace anything mapped there since the maps were read); then, from
//     hotpatch, the header and every segment written into the file at their
//     offsets (the private mapping reads the page cache until a page is
//     copied on write, and nothing writes these pages yet);
//  4. for each segment that is not read-only, mmap(addr, len, final prot,
//     MAP_PRIVATE|MAP_FIXED, fd, addr-base): MAP_FIXED only ever replaces
//     pages of our own mapping from step 3, which nothing can reach yet, and
//     a new mapping of R-X is not "adding" PROT_EXEC (mm's
//     map_deny_write_exec compares a new mapping's flags with themselves);
//  5. close(fd) in the target.
// Later writes of the record (its state) go through /proc/PID/mem, which
// writes read-only private mappings with FOLL_FORCE by copy-on-write.
//
// seqProtect (the older sequence, for a filter that allows it and not the
// first): memfd_create, ftruncate, mmap read-write, close, write through
// /proc/PID/mem, then mprotect the header read-only and each segment to its
// final protection.
//
// Before memfd_create runs, every call of a sequence is judged by the
// target thread's seccomp filters (proc.SeccompCheck) with the arguments it
// will have; the descriptor is predicted as the lowest free one (a
// filter checking descriptor numbers is judged on that prediction, and
// proc checks every call again with its real arguments when it is injected).
// The first sequence every call of which is allowed is used. If none is,
// nothing is done: ErrSeccompBlocked names the blocked calls.

type mapSeq int

const (
	seqFinal mapSeq = iota
	seqProtect
)

var seqNames = [...]string{seqFinal: "map with final protections", seqProtect: "map writable, then mprotect"}

type injCall struct {
	nr   uint64
	args []uint64
}

// seqCalls lists the injected calls of sequence s for region im, with fd
// the descriptor memfd_create is expected to return.
func (pp *prepared) seqCalls(s mapSeq, im *image, fd uint64) []injCall {
	calls := []injCall{{unix.SYS_MEMFD_CREATE, []uint64{0, unix.MFD_CLOEXEC}}}
	switch s {
	case seqFinal:
		calls = append(calls, injCall{unix.SYS_MMAP, []uint64{im.base, pp.size, unix.PROT_READ, unix.MAP_PRIVATE | unix.MAP_FIXED_NOREPLACE, fd, 0}})
		for _, sg := range im.segData {
			if sg.prot != unix.PROT_READ {
				calls = append(calls, injCall{unix.SYS_MMAP, []uint64{sg.addr, roundUp(uint64(len(sg.data)), pageSize), uint64(sg.prot), unix.MAP_PRIVATE | unix.MAP_FIXED, fd, sg.addr - im.base}})
			}
		}
		calls = append(calls, injCall{unix.SYS_CLOSE, []uint64{fd}})
	case seqProtect:
		calls = append(calls,
			injCall{unix.SYS_FTRUNCATE, []uint64{fd, pp.size}},
			injCall{unix.SYS_MMAP, []uint64{im.base, pp.size, unix.PROT_READ | unix.PROT_WRITE, unix.MAP_PRIVATE | unix.MAP_FIXED_NOREPLACE, fd, 0}},
			injCall{unix.SYS_CLOSE, []uint64{fd}},
			injCall{unix.SYS_MPROTECT, []uint64{im.base, pp.hdrSize, unix.PROT_READ}})
		for _, sg := range im.segData {
			if sg.prot != unix.PROT_READ|unix.PROT_WRITE {
				calls = append(calls, injCall{unix.SYS_MPROTECT, []uint64{sg.addr, roundUp(uint64(len(sg.data)), pageSize), uint64(sg.prot)}})
			}
		}
	}
	return calls
}

// chooseSeq returns the first sequence the target's filters allow.
func (pp *prepared) chooseSeq(pr *proc.Process, im *image) (mapSeq, error) {
	fd := im.fdGuess // predicted before the stop (place)
	if !im.fdGuessed {
		fd = lowestFreeFD(pr.Pid())
	}
	var first error
	var blocked []string
	for _, s := range []mapSeq{seqFinal, seqProtect} {
		err := checkCalls(pr, pp.seqCalls(s, im, fd))
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, proc.ErrSeccomp) {
			return 0, err // unreadable filters, or the process is gone
		}
		if first == nil {
			first = err
		}
		if msg := err.Error(); len(blocked) == 0 || blocked[len(blocked)-1] != msg {
			blocked = append(blocked, msg)
		}
	}
	if len(blocked) == 1 { // the same call blocks every way
		return 0, fmt.Errorf("%w: %w; every way to map the patch region needs it, nothing was changed", ErrSeccompBlocked, first)
	}
	return 0, fmt.Errorf("%w: no way to map the patch region is allowed, nothing was changed: %w (%s)", ErrSeccompBlocked, first, strings.Join(blocked[1:], "; "))
}

func checkCalls(pr *proc.Process, calls []injCall) error {
	for _, c := range calls {
		if err := pr.SeccompCheck(c.nr, c.args...); err != nil {
			return err
		}
	}
	return nil
}

// lowestFreeFD predicts the descriptor the target's next open returns.
func lowestFreeFD(pid int) uint64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 3
	}
	used := map[uint64]bool{}
	for _, e := range ents {
		var n uint64
		if _, err := fmt.Sscan(e.Name(), &n); err == nil {
			used[n] = true
		}
	}
	fd := uint64(0)
	for used[fd] {
		fd++
	}
	return fd
}

// openMemfd opens the target's memfd fd from outside, through
// /proc/PID/fd/N, checks that it is the memfd just created (its name, and
// the same inode through the link and through the open file, still empty)
// and sizes it.
func (pp *prepared) openMemfd(pid, fd int, im *image) (*os.File, error) {
	link := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
	name, err := os.Readlink(link)
	if err != nil {
		return nil, err
	}
	if want := "/memfd:" + record.NamePrefix + im.rec.ID; strings.TrimSuffix(name, " (deleted)") != want {
		return nil, fmt.Errorf("descriptor %d of process %d is %q, not the memfd %q just created", fd, pid, name, want)
	}
	var lst unix.Stat_t
	if err := unix.Stat(link, &lst); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(link, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Dev != lst.Dev || st.Ino != lst.Ino || st.Size != 0 {
		f.Close()
		return nil, fmt.Errorf("descriptor %d of process %d changed while it was opened (%v)", fd, pid, err)
	}
	if err := f.Truncate(int64(pp.size)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// mapFinal is seqFinal after memfd_create (the caller closes fd): the
// whole range is mapped read-only first, so that from then on the region
// is in the maps (status shows it as incomplete until its record is
// written, recover frees it); the contents are written into the file, which
// the private mapping reads through the page cache until a page is copied
// on write; then the segments get their final protections. On failure it
// unmaps what it mapped, except on a simulated crash.
func (pp *prepared) mapFinal(pr *proc.Process, fd int, im *image) (err error) {
	f, err := pp.openMemfd(pr.Pid(), fd, im)
	if err != nil {
		return &stepError{"map", fmt.Errorf("open the region's memfd from outside: %w", err)}
	}
	defer f.Close()
	if err := mmapAt(pr, im.base, pp.size, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_FIXED_NOREPLACE, fd, 0); err != nil {
		return &stepError{"map", err}
	}
	defer func() {
		if err != nil && !errors.Is(err, errSimulatedCrash) {
			pr.Munmap(im.base, pp.size)
		}
	}()
	if err := faultHook("write"); err != nil {
		return &stepError{"write", err}
	}
	if _, err := f.WriteAt(im.hdr, 0); err != nil {
		return &stepError{"write", err}
	}
	for _, sg := range im.segData {
		if _, err := f.WriteAt(sg.data, int64(sg.addr-im.base)); err != nil {
			return &stepError{"write", err}
		}
	}
	if err := faultHook("protect"); err != nil {
		return &stepError{"protect", err}
	}
	for _, sg := range im.segData {
		if sg.prot == unix.PROT_READ {
			continue
		}
		if err := mmapAt(pr, sg.addr, roundUp(uint64(len(sg.data)), pageSize), sg.prot, unix.MAP_PRIVATE|unix.MAP_FIXED, fd, sg.addr-im.base); err != nil {
			return &stepError{"protect", err}
		}
	}
	return nil
}

// mmapAt maps exactly at addr or fails (unmapping a mapping placed elsewhere).
func mmapAt(pr *proc.Process, addr, length uint64, prot, flags, fd int, off uint64) error {
	got, err := pr.Mmap(addr, length, prot, flags, fd, off)
	if err != nil {
		return err
	}
	if got != addr {
		pr.Munmap(got, length)
		return fmt.Errorf("mmap returned %#x instead of %#x (kernel without MAP_FIXED_NOREPLACE?)", got, addr)
	}
	return nil
}

// mapProtect is seqProtect after memfd_create; it closes fd. On failure it
// unmaps what it mapped.
func (pp *prepared) mapProtect(pr *proc.Process, fd int, im *image) (err error) {
	if err := pr.Ftruncate(fd, pp.size); err != nil {
		pr.Close(fd)
		return err
	}
	err = mmapAt(pr, im.base, pp.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED_NOREPLACE, fd, 0)
	pr.Close(fd)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && !errors.Is(err, errSimulatedCrash) {
			pr.Munmap(im.base, pp.size)
		}
	}()
	if err := faultHook("write"); err != nil {
		return &stepError{"write", err}
	}
	if err := pr.WriteMem(im.base, im.hdr); err != nil {
		return &stepError{"write", err}
	}
	for _, s := range im.segData {
		if err := pr.WriteMem(s.addr, s.data); err != nil {
			return &stepError{"write", err}
		}
	}
	if err := faultHook("protect"); err != nil {
		return &stepError{"protect", err}
	}
	// W^X: code becomes read-execute and constants read-only only after they
	// are written; nothing is ever writable and executable at once.
	if err := pr.Mprotect(im.base, pp.hdrSize, unix.PROT_READ); err != nil {
		return &stepError{"protect", err}
	}
	for _, s := range im.segData {
		if s.prot == unix.PROT_READ|unix.PROT_WRITE {
			continue
		}
		if err := pr.Mprotect(s.addr, roundUp(uint64(len(s.data)), pageSize), s.prot); err != nil {
			return &stepError{"protect", err}
		}
	}
	return nil
}

// seccompBlocked marks an error caused by the target's seccomp filters as
// a refusal (ErrSeccompBlocked): the call was not injected, nothing changed.
func seccompBlocked(err error) error {
	if err != nil && errors.Is(err, proc.ErrSeccomp) && !errors.Is(err, ErrSeccompBlocked) {
		return fmt.Errorf("%w: %w", ErrSeccompBlocked, err)
	}
	return err
}

// munmapAllowed returns why the target's filters do not let the region
// [base, base+size) be unmapped, or "" (checked before anything is done to
// free it, such as deregistering its unwind tables).
func munmapAllowed(pr *proc.Process, base, size uint64) string {
	if err := pr.SeccompCheck(unix.SYS_MUNMAP, base, size); err != nil {
		return fmt.Sprintf("it cannot be unmapped: %v", err)
	}
	return ""
}
