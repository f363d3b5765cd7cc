// Package procmaps reads the memory map of a process from /proc/PID/maps,
// groups its file-backed mappings into modules (the executable and its shared
// libraries, in the dynamic linker's load order) with their load bias, opens
// the mapped files through /proc/PID/map_files (which keeps working when the
// file on disk was replaced or deleted), and finds free address ranges where
// hotpatch can map patch code close to the code it patches.
//
// It does not use ptrace: reading the target's memory (for the dynamic
// linker's r_debug list) is delegated to a MemReader the caller provides.
package procmaps

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrMalformed: a maps line could not be parsed.
	ErrMalformed = errors.New("malformed /proc/PID/maps line")
	// ErrFileChanged: the file at the module's path is not the one mapped
	// (different inode: replaced on disk) and map_files could not be used.
	ErrFileChanged = errors.New("mapped file was replaced on disk")
	// ErrNotRegular: the mapped file is not a regular file (a device node,
	// for instance), so it is not opened.
	ErrNotRegular = errors.New("mapped file is not a regular file")
)

// Mapping is one line of /proc/PID/maps (see proc(5)).
type Mapping struct {
	Start, End uint64
	// Perms is the permission string, e.g. "r-xp" (p: private, s: shared).
	Perms  string
	Offset uint64
	// Dev is "major:minor" in hex, as the kernel prints it.
	Dev   string
	Inode uint64
	// Path is the mapped file, a pseudo-path such as "[heap]", "[stack]",
	// "[vdso]" or "[anon:name]", or "" for anonymous memory. A " (deleted)"
	// suffix is removed and reported in Deleted.
	Path    string
	Deleted bool
}

// Readable reports whether the mapping is readable.
func (m Mapping) Readable() bool { return len(m.Perms) > 0 && m.Perms[0] == 'r' }

// Writable reports whether the mapping is writable.
func (m Mapping) Writable() bool { return len(m.Perms) > 1 && m.Perms[1] == 'w' }

// Executable reports whether the mapping is executable.
func (m Mapping) Executable() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// Shared reports whether the mapping is shared (MAP_SHARED).
func (m Mapping) Shared() bool { return len(m.Perms) > 3 && m.Perms[3] == 's' }

// Contains reports whether addr is in [Start, End).
func (m Mapping) Contains(addr uint64) bool { return addr >= m.Start && addr < m.End }

// FileBacked reports whether the mapping maps a file (as opposed to anonymous
// memory or a kernel pseudo-mapping such as [vdso]).
func (m Mapping) FileBacked() bool { return m.Inode != 0 && strings.HasPrefix(m.Path, "/") }

// String formats the mapping as a maps line.
func (m Mapping) String() string {
	s := fmt.Sprintf("%x-%x %s %08x %s %d", m.Start, m.End, m.Perms, m.Offset, m.Dev, m.Inode)
	if m.Path != "" {
		s += " " + m.Path
	}
	if m.Deleted {
		s += " (deleted)"
	}
	return s
}

const deletedSuffix = " (deleted)"

// Parse parses the text of /proc/PID/maps. Lines are
//
//	start-end perms offset major:minor inode [path]
//
// with the path starting after the whitespace that pads the inode column; it
// may contain spaces (the kernel escapes only '\n', as "\012"). Blank lines are
// ignored. Parse never panics; malformed input yields an error wrapping
// ErrMalformed.
func Parse(r io.Reader) ([]Mapping, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("parse maps: %w", err)
	}
	return ParseBytes(b)
}

// maxLine bounds a line of maps: a path may be up to PATH_MAX (4096) bytes,
// escaped.
const maxLine = 1 << 20

// ParseBytes is Parse of the whole contents of a maps file. It converts b
// to one string and splits that in place (each Mapping's Perms, Dev and Path
// are substrings of it), without a line buffer or a string per line: a
// fleet apply parses the maps of every process several times, and a 64 KiB
// scanner buffer per parse was most of hotpatch's page faults, a string per
// line most of the allocations left.
func ParseBytes(b []byte) (_ []Mapping, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("parse maps: %w: panic: %v", ErrMalformed, p)
		}
	}()
	s := string(b)
	out := make([]Mapping, 0, strings.Count(s, "\n")+1)
	for n := 1; len(s) > 0; n++ {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if len(line) > maxLine {
			return nil, fmt.Errorf("parse maps line %d: %w: %d bytes", n, ErrMalformed, len(line))
		}
		line = strings.TrimSuffix(line, "\r")
		if len(strings.TrimSpace(line)) == 0 {
			continue
		}
		m, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("parse maps line %d %q: %w", n, line, err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// field cuts the next space-separated field (runs of spaces and tabs
// separate fields) off s.
func field(s string) (f, rest string) {
	i := 0
	for i < len(s) && isBlank(s[i]) {
		i++
	}
	s = s[i:]
	for j := 0; j < len(s); j++ {
		if isBlank(s[j]) {
			return s[:j], s[j:]
		}
	}
	return s, ""
}

func parseLine(line string) (Mapping, error) {
	var m Mapping
	rng, rest := field(line)
	perms, rest := field(rest)
	off, rest := field(rest)
	dev, rest := field(rest)
	ino, rest := field(rest)
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return m, fmt.Errorf("%w: address range %q", ErrMalformed, rng)
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return m, fmt.Errorf("%w: start: %w", ErrMalformed, err)
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return m, fmt.Errorf("%w: end: %w", ErrMalformed, err)
	}
	if m.End < m.Start {
		return m, fmt.Errorf("%w: end %#x before start %#x", ErrMalformed, m.End, m.Start)
	}
	if !isPerms(perms) {
		return m, fmt.Errorf("%w: permissions %q", ErrMalformed, perms)
	}
	m.Perms = perms
	if m.Offset, err = strconv.ParseUint(off, 16, 64); err != nil {
		return m, fmt.Errorf("%w: offset: %w", ErrMalformed, err)
	}
	if maj, min, ok := strings.Cut(dev, ":"); !ok || !isHex(maj) || !isHex(min) {
		return m, fmt.Errorf("%w: device %q", ErrMalformed, dev)
	}
	m.Dev = dev
	if m.Inode, err = strconv.ParseUint(ino, 10, 64); err != nil {
		return m, fmt.Errorf("%w: inode: %w", ErrMalformed, err)
	}
	i := 0
	for i < len(rest) && isBlank(rest[i]) {
		i++
	}
	p := rest[i:]
	if strings.HasSuffix(p, deletedSuffix) {
		p = strings.TrimSuffix(p, deletedSuffix)
		m.Deleted = true
	}
	m.Path = p
	return m, nil
}

// isPerms: four of r, w, x, p, s and -.
func isPerms(s string) bool {
	if len(s) != 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 'r', 'w', 'x', 'p', 's', '-':
		default:
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Read reads and parses /proc/PID/maps. The kernel produces the file a page
// at a time from a consistent snapshot per read(2) (seq_file), so a process
// changing its mappings meanwhile can make lines from before and after the
// change appear together; callers that need an exact map read it while the
// target is stopped.
func Read(pid int) ([]Mapping, error) {
	name := fmt.Sprintf("/proc/%d/maps", pid)
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	ms, err := ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ms, nil
}

// Find returns the mapping containing addr.
func Find(maps []Mapping, addr uint64) (Mapping, bool) {
	if sort.SliceIsSorted(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start }) {
		i := sort.Search(len(maps), func(i int) bool { return maps[i].End > addr })
		if i < len(maps) && maps[i].Contains(addr) {
			return maps[i], true
		}
		return Mapping{}, false
	}
	for _, m := range maps {
		if m.Contains(addr) {
			return m, true
		}
	}
	return Mapping{}, false
}

// pageSize is the host's page size; the target runs on the same kernel.
var pageSize = uint64(os.Getpagesize())

// stackGuardGap is the kernel's default stack_guard_gap (256 pages, see
// mm/mmap.c and the stack_guard_gap= boot parameter): the kernel refuses to
// let a [stack] mapping grow closer than that to the mapping below it, so a
// patch placed there would make the main thread's stack unable to grow.
const stackGuardGap = 256 << 12

// FindHole returns a page-aligned address of a free range of size bytes
// (rounded up to whole pages) inside [lo, hi) that overlaps no mapping and
// keeps at least one unmapped guard page between itself and each neighbouring
// mapping (and stackGuardGap below [stack]). With near == 0 it returns the
// lowest such address; otherwise the one whose start is closest to near. ok is
// false when there is no such range.
func FindHole(maps []Mapping, size, lo, hi, near uint64) (addr uint64, ok bool) {
	if size == 0 {
		return 0, false
	}
	size = alignUp(size)
	if size == 0 {
		return 0, false // overflow
	}
	if lo > -pageSize {
		return 0, false // no whole page at or above lo
	}
	lo = alignUp(lo)
	hi &^= pageSize - 1
	if hi <= lo || hi-lo < size {
		return 0, false
	}
	sorted := append([]Mapping(nil), maps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })

	best, found := uint64(0), false
	consider := func(gs, ge uint64) bool { // free [gs, ge); return true to stop
		gs, ge = max(gs, lo), min(ge, hi)
		if ge <= gs || ge-gs < size {
			return false
		}
		if near == 0 {
			best, found = gs, true
			return true
		}
		a := min(max(near&^(pageSize-1), gs), ge-size)
		if !found || dist(a, near) < dist(best, near) {
			best, found = a, true
		}
		return false
	}
	// Walk the gaps between mappings, shrinking each by the guard pages.
	prevEnd, haveprev := uint64(0), false
	for _, m := range sorted {
		gs := uint64(0)
		if haveprev {
			gs = prevEnd + pageSize
			if gs < prevEnd {
				return best, found // wrapped: no room above
			}
		}
		guard := pageSize
		if m.Path == "[stack]" {
			guard = stackGuardGap
		}
		ge := uint64(0)
		if m.Start >= guard {
			ge = m.Start - guard
		}
		if ge > gs && consider(gs, ge) {
			return best, found
		}
		if !haveprev || alignUp(m.End) > prevEnd {
			prevEnd = alignUp(m.End)
			if prevEnd == 0 && m.End != 0 {
				return best, found // mapping reaches the top of the address space
			}
		}
		haveprev = true
	}
	gs := uint64(0)
	if haveprev {
		gs = prevEnd + pageSize
		if gs < prevEnd {
			return best, found
		}
	}
	consider(gs, hi)
	return best, found
}

func alignUp(x uint64) uint64 { return (x + pageSize - 1) &^ (pageSize - 1) }

func dist(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
